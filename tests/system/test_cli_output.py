"""A CLI that shows what it knows: --json everywhere, a table or lines for status, history
with draining polls folded, and `rotate --wait` as a live line on a terminal.

Terminal modes run the installed command on a pseudo-terminal, as a person sees it; piped
modes through subprocess pipes, as a script or a log sees it.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time

from tests.system.conftest import ROTATOR, Ran, System

# Each draining poll is 500 ms apart (FAST_POLICY) and the old secret is deleted after a
# quiet period of 2 s: a rotation with --wait leaves several polls behind.


def _on_a_terminal(
    system: System, *args: str, timeout: float = 60, columns: int = 160
) -> tuple[int, str, str]:
    """Run `rotator ARGS` with stdout and stderr on a pty: the exit code, what a person
    saw (without colours and cursor moves), and the raw bytes as text."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(ROTATOR), "--config", str(system.write_config()), *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**system.env(), "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm-256color"},
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the process ended and the pty is drained
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    seen = b"".join(chunks).decode(errors="replace")
    system.transcript.append(seen)
    return code, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen), seen


def _json(ran: Ran) -> object:
    assert ran.err == "" or ran.code != 0, ran
    return json.loads(ran.out)


def test_every_reporting_command_speaks_json(system: System) -> None:
    system.credential()
    assert system.rotator("db", "upgrade").code == 0

    checks = system.rotator("check", "--json")
    assert checks.code == 0, checks
    results = _json(checks)
    assert isinstance(results, list) and all(c["ok"] for c in results)
    assert {"name", "ok", "detail"} <= set(results[0])

    rotated = system.rotator("rotate", "analytics", "--json")
    assert rotated.code == 0, rotated
    rotation = _json(rotated)
    assert isinstance(rotation, dict)
    assert rotation["state"] == "draining" and rotation["credential"] == "analytics"
    assert rotation["new_uuid"] and rotation["evidence"] is not None

    cancelled = system.rotator("cancel", "analytics", "--json")
    assert cancelled.code == 0, cancelled
    outcome = _json(cancelled)
    assert isinstance(outcome, dict) and outcome["rotation"]["state"] == "cancelled"

    uuid = system.world.value()["secret_uuid"]
    adopted = system.rotator("adopt", "analytics", "--uuid", uuid, "--json")
    assert _json(adopted) == {"credential": "analytics", "current_uuid": uuid, "changed": False}

    verified = system.rotator("audit", "verify", "--json")
    assert verified.code == 0 and isinstance(_json(verified), dict), verified
    history = _json(system.rotator("history", "--json"))
    assert isinstance(history, list) and {e["kind"] for e in history} >= {"started", "cancelled"}
    status = _json(system.rotator("status", "--json"))
    assert isinstance(status, list) and status[0]["name"] == "analytics"


def test_status_is_a_table_on_a_terminal_and_lines_in_a_pipe(system: System) -> None:
    system.credential("analytics")
    system.credential("reports")
    assert system.rotator("db", "upgrade").code == 0
    assert system.rotator("rotate", "analytics").code == 0  # left draining

    piped = system.rotator("status")
    code, seen, _ = _on_a_terminal(system, "status")

    assert piped.code == code == 0
    lines = piped.out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["analytics", "reports"]
    assert "rotation 1 draining" in lines[0] and "\x1b" not in piped.out
    header = next(line for line in seen.splitlines() if "credential" in line)
    assert header.split() == ["credential", "secret", "age", "due", "rotation", "notes"]
    assert "1 draining" in seen and "old last used" in seen
    assert "analytics:" not in seen  # the table, not the piped lines


def test_history_folds_draining_polls_unless_all(system: System) -> None:
    system.credential()
    assert system.rotator("db", "upgrade").code == 0
    assert system.rotator("rotate", "analytics", "--wait").code == 0

    events = _json(system.rotator("history", "--json"))
    assert isinstance(events, list)
    polls = [e for e in events if e["kind"] == "poll"]
    assert len(polls) >= 2, [e["kind"] for e in events]
    folded = system.rotator("history").out.splitlines()
    every = system.rotator("history", "--all").out.splitlines()

    assert len(every) == len(events)
    assert sum(" poll " in line for line in every) == len(polls)
    (fold,) = [line for line in folded if " poll " in line]
    assert f"polled {len(polls)} times" in fold and "last use seen: old secret" in fold
    assert len(folded) == len(events) - len(polls) + 1
    limited = system.rotator("history", "--limit", "3").out.splitlines()
    assert limited == folded[:3]


def test_rotate_wait_in_a_pipe_tells_each_step_and_the_drain_deadline(system: System) -> None:
    system.credential()
    assert system.rotator("db", "upgrade").code == 0

    ran = system.rotator("rotate", "analytics", "--wait")

    assert ran.code == 0, ran
    deadline = [line for line in ran.out.splitlines() if "old secret deleted at" in line]
    assert deadline and "if unused until then (alert at" in deadline[0]
    assert "\x1b" not in ran.out and ran.out.splitlines()[-1].endswith(": completed")
    assert len(ran.out.splitlines()) < 20  # lines for steps and new evidence, not each poll


def test_rotate_wait_on_a_terminal_shows_a_live_line(system: System) -> None:
    system.credential()
    assert system.rotator("db", "upgrade").code == 0

    code, seen, raw = _on_a_terminal(system, "rotate", "analytics", "--wait")

    assert code == 0, seen
    assert "analytics: draining · old last used" in seen  # the live line
    assert "old secret deleted at" in seen and "alert at" in seen
    steps = [line for line in seen.splitlines() if ") of analytics: " in line]
    assert steps and steps[-1].rstrip().endswith("completed"), seen[-2000:]
    states = [line.rstrip().rsplit(": ", 1)[1] for line in steps]
    assert len(states) == len(set(states)), steps  # one line per step, not one per poll
    assert "\x1b[2K" in raw  # the live line is erased and redrawn in place
