"""The operator's commands, run as the installed `rotator` program, with no daemon."""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, func, select, update

from rotator.adapters.db.tables import events
from tests.system.conftest import ROTATOR, System, WebhookReceiver, to_toml

STEPS = ["planned", "creating", "staged", "verified", "promoted", "draining"]


def _states(out: str) -> list[str]:
    """The state at the end of each `rotation N (...) of NAME: STATE — ...` line."""
    return [line.split(": ", 1)[1].split(" — ")[0] for line in out.splitlines() if ") of " in line]


def _event_count(system: System) -> int:
    engine = create_engine(system.world.db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())
    finally:
        engine.dispose()


def test_help_lists_the_exit_codes(system: System) -> None:
    ran = system.rotator("--help", config=False)

    assert ran.code == 0
    for line in (
        "0  success",
        "1  the operation failed",
        "2  usage or configuration error",
        "3  needs attention",
    ):
        assert line in ran.out
    for command in ("run", "rotate", "status", "history", "audit", "check", "adopt", "cancel"):
        assert f"  {command} " in ran.out


def test_bad_input_is_one_line_exit_2_and_changes_nothing(system: System, tmp_path: Path) -> None:
    uuid = system.credential().secret.uuid  # type: ignore[union-attr]
    labels = system.world.labels()
    assert system.rotator("db", "upgrade").code == 0
    bad_key = tmp_path / "typo.toml"
    config = system.config()
    bad_key.write_text(to_toml({**config, "daemon": {**config["daemon"], "tik": "1s"}}))
    bad_duration = tmp_path / "duration.toml"
    bad_duration.write_text(to_toml({**config, "defaults": {"quiet_period": "soon"}}))

    cases = {
        ("rotate", "nope"): "unknown credential 'nope' (known: analytics)",
        ("history", "nope"): "unknown credential 'nope'",
        ("status", "nope"): "unknown credential 'nope' (known: analytics)",
        ("--config", str(bad_key), "rotate", "analytics"): "daemon.tik: unknown key",
        ("--config", str(bad_duration), "run"): "defaults.quiet_period: invalid duration 'soon'",
        ("--config", str(tmp_path / "missing.toml"), "status"): "no such config file",
        ("adopt", "analytics", "--uuid", "f00"): f"no secret f00 for analytics (it has: {uuid})",
    }
    taken = socket.socket()
    taken.bind(("127.0.0.1", int(system.listen.rpartition(":")[2])))
    taken.listen()
    cases[("run",)] = f"daemon.listen: cannot listen on {system.listen}"
    for args, message in cases.items():
        ran = system.rotator(*args)
        assert ran.code == 2, ran
        assert ran.out == "" and len(ran.err.splitlines()) == 1, ran
        assert ran.err.startswith("error: ") and message in ran.err, ran
    taken.close()

    for args in (("rotate",), ("history", "--limit", "0")):
        ran = system.rotator(*args)
        assert ran.code == 2 and "Usage: rotator" in ran.err, ran

    # Nothing changed anywhere: no Adobe write, no AWS write, no audit event.
    assert system.admin.count("add_secret") == system.admin.count("delete_secret") == 0
    assert system.world.labels() == labels
    assert _event_count(system) == 0


def test_rotate_then_status_history_and_audit_verify_tell_what_happened(system: System) -> None:
    system.credential()
    first = system.rotator("db", "upgrade")
    again = system.rotator("db", "upgrade")
    assert first.code == again.code == 0
    assert "(was empty)" in first.out and again.out.strip() == first.out.split(" (was")[0]

    ran = system.rotator("rotate", "analytics", "--reason", "quarterly")
    assert ran.code == 0, ran
    assert _states(ran.out) == STEPS  # step by step, returning at draining
    status = json.loads(system.rotator("status", "--json").out)
    assert status[0]["rotation"]["state"] == "draining"
    new_uuid = status[0]["rotation"]["new_uuid"]

    waited = system.rotator("rotate", "analytics", "--wait")
    assert waited.code == 0, waited
    assert waited.out.startswith("analytics already has rotation 1 (draining); following it")
    assert _states(waited.out)[-1] == "completed"
    system.world.assert_i4()

    status_run = system.rotator("status", "--json")
    assert status_run.code == 0
    (row,) = json.loads(status_run.out)
    assert row["current_uuid"] == new_uuid and row["rotation"] is None
    assert row["last_rotated_at"] and row["secret_age_days"] == 0
    text = system.rotator("status")
    assert text.out.startswith(f"analytics: secret {new_uuid}, age 0.0d")
    one = system.rotator("status", "analytics")  # what the alerts and the runbook tell
    assert one.code == 0 and one.out == text.out, one

    history = json.loads(system.rotator("history", "--json").out)
    ids = [e["id"] for e in history]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert [e["kind"] for e in (history[0], history[-1])] == ["completed", "started"]
    assert history[-1]["detail"] == {"reason": "quarterly", "trigger": "manual"}
    assert all(e["credential"] == "analytics" and e["rotation_id"] == 1 for e in history)
    limited = system.rotator("history", "analytics", "--limit", "2")
    assert [line.split()[2] for line in limited.out.splitlines()] == [f"#{ids[0]}", f"#{ids[1]}"]

    intact = system.rotator("audit", "verify")
    assert intact.code == 0 and f"audit chain intact: {len(ids)} events verified" in intact.out

    engine = create_engine(system.world.db_url)
    with engine.begin() as conn:  # someone rewrites history
        conn.execute(update(events).where(events.c.id == 3).values(actor="mallory"))
    engine.dispose()
    broken = system.rotator("audit", "verify")
    assert broken.code == 1, broken
    assert broken.err.strip() == (
        "error: audit verify failed: event 3: its content was changed (2 events verified before it)"
    )
    assert "scope: not proven: event 3: its content was changed" in broken.out
    assert "was changed, removed or re-ordered" not in broken.out
    # The report is still written (the auditor reads why), but a script notices: exit 1.
    report = system.rotator("report", "--format", "json")
    assert report.code == 1, report
    assert json.loads(report.out)["verification"]["ok"] is False
    assert "audit verify failed: event 3" in report.err


def test_a_recently_used_stray_exits_3_and_the_webhook_says_why(
    system: System, receiver: WebhookReceiver
) -> None:
    cred = system.credential(quiet_period="1h")
    stray = system.admin.add_secret(cred.credential_id)
    system.admin.set_secret_times(cred.credential_id, stray.uuid, last_used_ago_s=60)
    system.webhooks.append({"url": receiver.url})
    assert system.rotator("db", "upgrade").code == 0

    ran = system.rotator("rotate", "analytics")
    again = system.rotator("rotate", "analytics")  # tries the blocked step again
    status = system.rotator("status")

    assert ran.code == again.code == status.code == 3, (ran, again, status)
    assert _states(ran.out) == ["planned", "needs_attention"]
    assert stray.uuid in ran.out.splitlines()[-1]
    assert "needs_attention" in status.out and stray.uuid in status.out
    assert system.admin.count("add_secret") == 0
    assert system.world.works()
    # One alert per process that saw it blocked (the daemon test shows once per daemon).
    assert {e["event"] for e in receiver.events()} == {"needs_attention"}
    assert all(stray.uuid in e["reason"] for e in receiver.events())


def test_a_failed_verification_exits_1_rolls_back_and_the_webhook_says_so(
    system: System, receiver: WebhookReceiver
) -> None:
    system.credential(verify_timeout="1s")
    before = system.world.adobe_uuids()
    system.admin.set_timing(accept_delay_ms=600_000)  # Adobe never accepts the new secret
    system.webhooks.append({"url": receiver.url, "events": ["failed"]})
    assert system.rotator("db", "upgrade").code == 0

    ran = system.rotator("rotate", "analytics", "--wait")

    assert ran.code == 1, ran
    assert _states(ran.out)[-2:] == ["rolling_back", "failed"]
    assert "verify_timeout" in ran.out.splitlines()[-1]
    assert system.world.adobe_uuids() == before
    system.admin.set_timing(accept_delay_ms=0)
    assert system.world.works()
    (failed,) = receiver.events()
    assert failed["event"] == "failed" and "verify_timeout" in failed["reason"]
    needles = system.admin.secret_values() + system.admin.token_values()
    assert not [n for n in needles if n in receiver.bodies[0]]


def test_check_is_read_only_and_adopt_settles_an_unknown_uuid(system: System) -> None:
    system.credential("good")
    system.credential("missing", secret_id="adobe/no-such-secret")
    unknown = system.credential("unknown", record_uuid=False)
    other = system.admin.add_secret(unknown.credential_id)
    db_file = Path(system.world.db_url.removeprefix("sqlite:///"))
    before = {n: system.world.labels(n) for n in ("good", "unknown")}

    ran = system.rotator("check")

    assert ran.code == 1, ran
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in ran.out.splitlines()[1:]}
    assert rows["(database)"][0] == "ok" and "does not exist yet" in rows["(database)"][1]
    assert rows["good"][0] == "ok" and "(AWS), 60.0 days old" in rows["good"][1]
    assert rows["missing"][0] == "FAIL" and "adobe/no-such-secret" in rows["missing"][1]
    assert rows["unknown"][0] == "FAIL"
    assert "rotator adopt unknown --uuid <uuid>" in rows["unknown"][1]
    assert not db_file.exists()  # read-only: not even an empty database file
    assert system.admin.count("add_secret") == system.admin.count("delete_secret") == 0
    assert {n: system.world.labels(n) for n in ("good", "unknown")} == before

    assert system.rotator("db", "upgrade").code == 0
    # Typed the way a person might copy it (issue 26: one spelling for every uuid).
    typed = unknown.secret.uuid.upper()  # type: ignore[union-attr]
    adopted = system.rotator("adopt", "unknown", "--uuid", typed)
    assert adopted.code == 0, adopted
    assert other.uuid not in adopted.out
    after = system.rotator("check")
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in after.out.splitlines()[1:]}
    assert rows["unknown"][0] == "ok" and "(adopted)" in rows["unknown"][1]
    assert rows["(database)"] == ["ok", f"schema current ({_head()})"]


def test_cancel_while_draining_keeps_both_secrets_valid(system: System) -> None:
    system.credential(quiet_period="1h")
    assert system.rotator("db", "upgrade").code == 0
    assert system.rotator("rotate", "analytics").code == 0

    ran = system.rotator("cancel", "analytics", "--reason", "a consumer is stuck")

    assert ran.code == 0, ran
    assert _states(ran.out)[-1] == "cancelled"
    assert len(system.world.adobe_uuids()) == 2
    assert system.world.works("analytics", "AWSCURRENT")
    assert system.world.works("analytics", "AWSPREVIOUS")
    nothing = system.rotator("cancel", "analytics")
    assert nothing.code == 0 and "nothing to cancel" in nothing.out


def test_debug_logs_are_json_lines_with_context_and_no_secret(system: System) -> None:
    system.credential(quiet_period="1s")
    assert system.rotator("db", "upgrade").code == 0

    normal = system.rotator("--log-level", "DEBUG", "rotate", "analytics", "--wait")
    emergency = system.rotator(
        "--log-level", "DEBUG", "rotate", "analytics", "--emergency", "--reason", "test"
    )

    assert normal.code == emergency.code == 0, (normal, emergency)
    lines = [json.loads(line) for line in (normal.err + emergency.err).splitlines()]
    steps = [line for line in lines if line["event"] == "rotation step"]
    assert len(steps) >= 10
    assert all({"credential", "rotation_id", "timestamp", "level"} <= set(s) for s in steps)
    # The standard library's loggers go through the same pipeline, with the same context:
    # the credential always (the pre-flight runs before any rotation exists), and the
    # rotation id once there is one.
    calls = [line for line in lines if line["logger"] == "httpx"]
    assert calls and all("credential" in c for c in calls)
    for run in (normal, emergency):
        own = [json.loads(line) for line in run.err.splitlines()]
        first = next(i for i, line in enumerate(own) if line["event"] == "rotation step")
        in_rotation = [line for line in own[first:] if line["logger"] == "httpx"]
        assert in_rotation and all("rotation_id" in c for c in in_rotation)
    needles = system.admin.secret_values() + system.admin.token_values()
    assert len(needles) >= 4
    assert [n[:6] for n in needles if n in normal.err + normal.out + emergency.err] == []


def _head() -> str:
    from rotator.adapters.db import migrate

    return str(migrate.head())


def test_logs_on_a_terminal_are_console_lines(system: System) -> None:
    system.credential(quiet_period="1h")
    assert system.rotator("db", "upgrade").code == 0
    argv = [str(ROTATOR), "--config", str(system.config_path), "--log-level", "INFO", "rotate"]
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [*argv, "analytics"],
            stdout=subprocess.PIPE,
            stderr=follower,
            env=system.env(),
            timeout=30,
        )
        os.close(follower)
        err = _read_all(leader)
    finally:
        os.close(leader)
    system.transcript.append(err)

    assert proc.returncode == 0
    text = re.sub(r"\x1b\[[0-9;]*m", "", err)  # colours off, to read it
    steps = [line for line in text.splitlines() if "rotation step" in line]
    assert len(steps) == 5 and not any(line.lstrip().startswith("{") for line in steps)
    assert all("credential=analytics" in line and "rotation_id=1" in line for line in steps)


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")
