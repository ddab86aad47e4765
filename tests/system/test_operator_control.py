"""Operator control through the installed `rotator` command (issue 13): an emergency that
nothing can block, an emergency past promotion that refuses cancel, and cancel that holds
the credential until `rotator resume`."""

from __future__ import annotations

import json
import time

from tests.system.conftest import System, wait_for


def _rows(system: System) -> list[tuple[str, str]]:
    return [(r["trigger"], r["state"]) for r in system.rotation_rows()]


def _move_awscurrent_back_by_hand(system: System) -> None:
    """What an operator does when they "roll back" in the AWS console: AWSCURRENT moves to
    the previous version, behind rotator's back."""
    sm, secret_id = system.world.sm, system.world.secret_ids["analytics"]
    stages = sm.describe_secret(SecretId=secret_id)["VersionIdsToStages"]
    current = next(v for v, labels in stages.items() if "AWSCURRENT" in labels)
    previous = next(v for v, labels in stages.items() if "AWSPREVIOUS" in labels)
    sm.update_secret_version_stage(
        SecretId=secret_id,
        VersionStage="AWSCURRENT",
        MoveToVersionId=previous,
        RemoveFromVersionId=current,
    )


def test_an_emergency_starts_and_completes_although_the_normal_rotation_needs_attention(
    system: System,
) -> None:
    system.credential()
    assert system.rotator("db", "upgrade").code == 0
    assert system.rotator("rotate", "analytics").code == 0  # promoted, draining
    normal = system.rotation_rows()[-1]
    _move_awscurrent_back_by_hand(system)  # AWSCURRENT edited by hand while draining
    time.sleep(2)  # the quiet period (2 s) passes: the next poll retires, and refuses
    stuck = system.rotator("rotate", "analytics", "--wait")
    assert stuck.code == 3 and system.state() == "needs_attention", stuck

    ran = system.rotator(
        "rotate", "analytics", "--emergency", "--reason", "leaked in a log", timeout=90
    )

    assert ran.code == 0, ran
    assert f"rotation {normal['id']} of analytics (needs_attention) abandoned" in ran.out, ran
    assert ran.out.rstrip().endswith("completed"), ran
    assert _rows(system) == [("manual", "abandoned"), ("emergency", "completed")]
    (abandoned,) = [e for e in system.events() if e["kind"] == "abandoned"]
    assert abandoned["detail"]["leaves"] == {"old_uuid": normal["old_uuid"]}
    uuids = system.world.adobe_uuids()
    assert len(uuids) == 1 and uuids[0] not in {normal["old_uuid"], normal["new_uuid"]}
    assert system.world.value()["secret_uuid"] == uuids[0] and system.world.works()


def test_an_emergency_past_promotion_refuses_cancel_even_while_it_needs_attention(
    system: System,
) -> None:
    system.daemon_settings["lease"] = "2s"  # the killed command's lease runs out quickly
    system.credential()
    assert system.rotator("db", "upgrade").code == 0
    hold = system.admin.arm_hold("delete_secret", "before")
    emergency = system.popen("rotate", "analytics", "--emergency", "--reason", "leaked")
    system.admin.wait_held(hold, timeout_s=60)  # promoted; retiring deletes the leaked secret
    emergency.proc.kill()  # the command dies mid-delete
    emergency.proc.wait(timeout=10)
    system.admin.release(hold, drop=True)  # the delete never happens
    _move_awscurrent_back_by_hand(system)
    # Takes over once the dead command's lease ran out; retiring refuses to delete.
    stuck = system.rotator("rotate", "analytics", timeout=60)
    assert stuck.code == 3, stuck
    (row,) = system.rotation_rows()
    assert (row["state"], row["resume_state"]) == ("needs_attention", "retiring"), row
    events_before = len(system.events())

    ran = system.rotator("cancel", "analytics", "--reason", "oops")

    assert ran.code == 1, ran
    assert ran.out == "" and len(ran.err.splitlines()) == 1, ran
    assert "emergency rotation past its promotion" in ran.err, ran
    assert "cannot be cancelled" in ran.err and "leaked secret" in ran.err, ran
    (after,) = system.rotation_rows()
    assert not after["cancel_requested"] and after["state"] == "needs_attention"
    assert len(system.events()) == events_before  # nothing was changed
    status = json.loads(system.rotator("status", "--json").out)
    assert status[0]["hold"] is None


def test_cancel_holds_the_credential_until_resume(system: System) -> None:
    system.credential()  # due
    hold = system.admin.arm_hold("add_secret", "before")
    daemon = system.start_daemon()
    daemon.wait_held(hold)  # the daemon's scheduled rotation is mid-step in creating

    cancel = system.popen("cancel", "analytics", "--reason", "change freeze")
    wait_for(lambda: system.rotation_rows()[-1]["cancel_requested"], 15, "the cancel request")
    system.admin.release(hold)
    cancelled = system.collect(cancel)
    assert cancelled.code == 0, cancelled
    assert "analytics is on hold: no scheduled rotation starts until `rotator resume" in (
        cancelled.out
    )
    assert _rows(system) == [("scheduled", "cancelled")]

    time.sleep(2.5)  # a few ticks: the credential is still due, but on hold
    assert _rows(system) == [("scheduled", "cancelled")]
    status = system.rotator("status", "--json")
    (entry,) = json.loads(status.out)
    assert entry["hold"]["reason"] == "change freeze" and entry["rotation"] is None, status
    assert "on hold since" in system.rotator("status").out

    resumed = system.rotator("resume", "analytics", "--reason", "freeze over")
    assert resumed.code == 0 and "analytics resumed" in resumed.out, resumed
    daemon.wait_until(lambda: len(system.rotation_rows()) == 2, 15, "a new scheduled rotation")
    assert system.rotation_rows()[-1]["trigger"] == "scheduled"
    again = system.rotator("resume", "analytics")
    assert again.code == 0 and "not on hold" in again.out
    kinds = [e["kind"] for e in system.events()]
    assert "cancel_requested" in kinds and kinds.count("resumed") == 1
    assert daemon.stop() == 0, daemon.output()
