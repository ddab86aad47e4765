"""`rotator run` as a real process: it rotates what is due, serves health and metrics, sends
webhooks, stops at a step boundary on the first signal and at once on the second."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter

from tests.system.conftest import (
    System,
    WebhookReceiver,
    boto_client,
    consumer_token,
    wait_for,
)


class Consumer(threading.Thread):
    """A consumer that reads AWSCURRENT and mints a token with it, again and again."""

    def __init__(self, system: System, name: str = "analytics") -> None:
        super().__init__(daemon=True)
        self.sm = boto_client(system.world.aws)
        self.secret_id = system.world.secret_ids[name]
        self.client_id = system.world.creds[name].client_id
        self.sandbox_url = system.world.sandbox.url
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (uuid, "ok" | error) -> count
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            answer = self.sm.get_secret_value(SecretId=self.secret_id, VersionStage="AWSCURRENT")
            value = json.loads(answer["SecretString"])
            response = consumer_token(self.sandbox_url, self.client_id, value["client_secret"])
            verdict = "ok" if response.status_code == 200 else response.json().get("error", "?")
            self.outcomes[(value["secret_uuid"], verdict)] += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)


def test_daemon_rotates_a_due_credential_and_a_consumer_never_notices(
    any_db_system: System, receiver: WebhookReceiver
) -> None:
    system = any_db_system
    cred = system.credential()  # its secret is 60 days old: due under max_age 30d
    old_uuid = cred.secret.uuid  # type: ignore[union-attr]
    system.admin.fail_next("add_secret", status=503)  # a failed step, retried when due
    system.webhooks.append({"url": receiver.url})
    consumer = Consumer(system)
    consumer.start()
    try:
        wait_for(lambda: sum(consumer.outcomes.values()) > 5, 10, "the consumer to start")
        daemon = system.start_daemon()
        system.wait_state("completed")
        time.sleep(0.5)  # the consumer keeps going on the new secret
    finally:
        consumer.stop()
    # The daemon delivers the notice from its outbox on its own thread: wait while it runs (a
    # notice still owed at shutdown stays in the outbox for the next daemon).
    wait_for(lambda: "completed" in receiver.kinds(), 10, "the completed webhook")
    assert daemon.stop() == 0, daemon.output()

    # I8: before, during and after the rotation, every token request succeeded.
    errors = {k: n for k, n in consumer.outcomes.items() if k[1] != "ok"}
    assert errors == {}, errors
    new_uuid = system.world.adobe_uuids()[0]
    assert new_uuid != old_uuid
    used = {uuid for uuid, _ in consumer.outcomes}
    assert used == {old_uuid, new_uuid}  # it switched, without noticing
    system.world.assert_i4()

    row = system.rotation_rows()[-1]
    assert (row["trigger"], row["actor"], row["old_uuid"], row["new_uuid"]) == (
        "scheduled",
        "scheduler",
        old_uuid,
        new_uuid,
    )
    kinds = [e["kind"] for e in system.events()]
    assert kinds.count("retry") == 1 and system.admin.count("add_secret") == 2, kinds
    # Every engine log line names the credential and the rotation.
    lines = [line for line in daemon.logs() if line["logger"] == "rotator.engine"]
    assert {line.get("to_state") for line in lines} >= {"staged", "promoted", "completed"}
    assert any(line["event"] == "step failed" for line in lines)
    assert all(
        (line["credential"], line["rotation_id"]) == ("analytics", row["id"]) for line in lines
    ), lines

    (completed,) = [e for e in receiver.events() if e["event"] == "completed"]
    assert completed["credential"] == "analytics"
    assert (completed["old_uuid"], completed["new_uuid"]) == (old_uuid, new_uuid)
    assert completed["rotation_id"] == row["id"]
    _assert_no_values_in(system, receiver.bodies)


def test_metrics_and_health_while_the_daemon_runs(
    system: System, receiver: WebhookReceiver
) -> None:
    system.credential("analytics")
    blocked = system.credential("blocked", quiet_period="1h")  # its stray is never quiet
    stray = system.admin.add_secret(blocked.credential_id)
    system.admin.set_secret_times(blocked.credential_id, stray.uuid, last_used_ago_s=10)
    system.webhooks.append({"url": receiver.url, "events": ["completed", "needs_attention"]})
    daemon = system.start_daemon()
    daemon.wait_ready()
    assert daemon.get("/healthz").status_code == 200

    daemon.wait_until(
        lambda: (
            daemon.metric("rotator_rotations_total", outcome="completed", trigger="scheduled") == 1
            and daemon.metric("rotator_credentials_needing_attention") == 1
        ),
        40,
        "one completed rotation and one credential needing attention",
    )
    time.sleep(1.5)  # a few more polls of the blocked rotation: it must be reported once

    assert daemon.get("/readyz").status_code == 200
    assert daemon.get("/readyz").json()["ready"] is True
    m = daemon.metric
    assert m("rotator_rotations_unfinished", state="needs_attention") == 1
    assert m("rotator_rotations_total", outcome="failed", trigger="scheduled") == 0
    assert m("rotator_credential_needs_attention", credential="blocked") == 1
    assert m("rotator_credential_needs_attention", credential="analytics") == 0
    for state in ("planned", "creating", "staged", "verified", "promoted", "draining", "retiring"):
        count = m("rotator_step_seconds_count", state=state)
        assert count is not None and count >= 1, state
    fresh_age = m("rotator_secret_age_seconds", credential="analytics")
    assert fresh_age is not None and 0 <= fresh_age < 60  # the new secret
    old_age = m("rotator_secret_age_seconds", credential="blocked")
    assert old_age is not None and old_age > 59 * 86400  # still the old one
    last_tick = m("rotator_last_successful_tick_timestamp_seconds")
    assert last_tick is not None and time.time() - last_tick < 5
    assert m("rotator_rotations_unfinished", state="draining") == 0
    assert m("rotator_ready") == 1
    assert "_created" not in daemon.get("/metrics").text
    system.transcript.append(daemon.get("/metrics").text)  # scanned for secrets at the end
    # Notices leave the outbox on the daemon's own thread: wait for both while it runs.
    wait_for(lambda: {"completed", "needs_attention"} <= set(receiver.kinds()), 10, "both notices")
    assert daemon.stop() == 0, daemon.output()

    kinds = receiver.kinds()
    assert sorted(kinds) == ["completed", "needs_attention"], kinds
    (attention,) = [e for e in receiver.events() if e["event"] == "needs_attention"]
    assert attention["credential"] == "blocked" and stray.uuid in attention["reason"]
    _assert_no_values_in(system, receiver.bodies)


def test_emergency_rotate_while_the_daemon_drains_ends_with_one_secret(system: System) -> None:
    system.world.defaults["quiet_period"] = "1h"  # the normal rotation would drain for an hour
    system.credential()
    daemon = system.start_daemon()
    system.wait_state("draining")
    draining = system.rotation_rows()[-1]

    ran = system.rotator("rotate", "analytics", "--emergency", "--reason", "leaked in a log")

    assert ran.code == 0, ran
    # Between polls nobody holds a draining rotation's lease: it is abandoned at once; if the
    # daemon is polling right then, it is abandoned at that step's boundary. Either way the
    # rows below show it abandoned and the emergency completed.
    assert (
        "rotation 1 of analytics (draining) abandoned for the emergency" in ran.out
        or "rotation 1 of analytics is mid-step (draining): it is abandoned at its step boundary"
        in ran.out
    ), ran
    assert ran.out.rstrip().endswith("completed"), ran
    rows = system.rotation_rows()
    assert [(r["trigger"], r["state"]) for r in rows] == [
        ("scheduled", "abandoned"),
        ("emergency", "completed"),
    ]
    uuids = system.world.adobe_uuids()
    assert len(uuids) == 1
    assert uuids[0] not in {draining["old_uuid"], draining["new_uuid"]}
    assert system.world.value()["secret_uuid"] == uuids[0] and system.world.works()
    assert daemon.stop() == 0, daemon.output()


def test_sigterm_finishes_the_step_in_flight_and_a_restart_completes(system: System) -> None:
    system.credential()
    hold = system.admin.arm_hold("add_secret", "after")  # Adobe has made the secret...
    daemon = system.start_daemon()
    daemon.wait_held(hold)  # ...and the daemon waits for the answer

    daemon.signal(signal.SIGTERM)
    time.sleep(1)
    assert daemon.alive(), "the first signal must let the step in flight finish"
    system.admin.release(hold)
    assert daemon.wait(timeout=15) == 0, daemon.output()

    # The step was saved, and the lease given back: nothing to wait for on restart.
    (row,) = system.rotation_rows()
    assert row["state"] == "staged" and row["lease_owner"] is None
    assert row["new_uuid"] in system.world.adobe_uuids()

    restarted = system.start_daemon()
    system.wait_state("completed")
    assert restarted.stop() == 0, restarted.output()
    assert system.admin.count("add_secret") == 1  # exactly one secret made, none orphaned
    assert system.world.adobe_uuids() == [row["new_uuid"]]
    system.world.assert_i4()


def test_a_second_signal_exits_at_once_and_the_restart_deletes_the_orphan(
    system: System,
) -> None:
    system.daemon_settings["lease"] = "2s"  # the killed daemon's lease runs out quickly
    cred = system.credential()
    assert cred.secret is not None  # the orphan is deleted once AWSCURRENT is known (I12)
    assert system.rotator("db", "upgrade").code == 0
    assert system.rotator("adopt", "analytics", "--uuid", cred.secret.uuid).code == 0
    consumer = Consumer(system)  # I8 holds across the crash too
    consumer.start()
    hold = system.admin.arm_hold("add_secret", "after")
    daemon = system.start_daemon()
    daemon.wait_held(hold)

    daemon.signal(signal.SIGTERM)
    time.sleep(0.3)
    daemon.signal(signal.SIGINT)
    assert daemon.wait(timeout=3) == 128 + signal.SIGINT, daemon.output()
    system.admin.release(hold)  # Adobe's answer, with the plaintext, reaches nobody

    (row,) = system.rotation_rows()
    assert row["state"] == "creating"  # the step in flight was not saved
    orphan = next(u for u in system.world.adobe_uuids() if u != cred.secret.uuid)  # type: ignore[union-attr]

    restarted = system.start_daemon()
    try:
        system.wait_state("completed")
    finally:
        consumer.stop()
    assert restarted.stop() == 0, restarted.output()

    assert {verdict for _, verdict in consumer.outcomes} == {"ok"}, consumer.outcomes
    new_uuid = system.rotation_rows()[-1]["new_uuid"]
    assert system.world.adobe_uuids() == [new_uuid] and new_uuid != orphan
    assert {uuid for uuid, _ in consumer.outcomes} == {cred.secret.uuid, new_uuid}  # type: ignore[union-attr]
    assert system.admin.count("add_secret") == 2  # the lost one, and the one that survived
    system.world.assert_i4()
    history = system.rotator("history", "analytics", "--json")
    found = [e for e in json.loads(history.out) if orphan in e["detail"].get("orphans_deleted", [])]
    assert len(found) == 1, history


def test_rotate_while_the_daemon_holds_the_lease_says_so_and_watches(system: System) -> None:
    system.world.defaults["quiet_period"] = "1h"  # the rotation stays in draining
    system.credential()
    hold = system.admin.arm_hold("add_secret", "before")
    daemon = system.start_daemon()
    daemon.wait_held(hold)  # the daemon holds the lease, mid-step
    (owner,) = [line["owner"] for line in daemon.logs() if line["event"] == "daemon started"]

    cli = system.popen("rotate", "analytics")
    wait_for(lambda: "watching" in cli.out(), 15, "the CLI to say it watches")
    assert cli.proc.poll() is None  # it keeps watching while the daemon works
    system.admin.release(hold)
    ran = system.collect(cli)

    assert ran.code == 0, ran
    lines = ran.out.splitlines()
    assert lines[0] == "analytics already has rotation 1 (creating); following it", ran
    assert f"rotation 1 is being worked on by {owner}; watching" in lines, ran
    assert lines[-1].startswith("rotation 1 (scheduled) of analytics: draining"), ran
    assert daemon.stop() == 0, daemon.output()
    assert system.admin.count("add_secret") == 1


def _assert_no_values_in(system: System, bodies: list[str]) -> None:
    needles = system.admin.secret_values() + system.admin.token_values()
    assert bodies and not [n[:6] for n in needles if any(n in b for b in bodies)]
