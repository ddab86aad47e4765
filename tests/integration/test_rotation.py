"""The engine against the real sandbox, moto's server and a real database (both kinds)."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from sqlalchemy import text, update

from rotator import logs
from rotator.adapters.db.tables import metadata, rotations
from rotator.domain.model import State, Trigger
from tests.world import World


def test_normal_rotation_ends_with_one_new_secret_current_and_old_previous(world: World) -> None:
    world.credential()
    old_uuid = world.adobe_uuids()[0]
    old_value = world.value()["client_secret"]

    final = world.rotate()

    assert final.state is State.COMPLETED, final.last_error
    world.assert_i4()
    assert world.adobe_uuids() != [old_uuid]
    assert world.value("analytics", "AWSPREVIOUS")["client_secret"] == old_value
    assert world.works()
    assert world.app.store.verify_chain()[1] is None


def test_one_management_token_and_one_verification_token_serve_a_rotation(world: World) -> None:
    world.credential()
    world.admin.reset_counters()

    world.rotate()

    counts = world.admin.counters()["endpoints"]
    assert counts["token"]["requests"] == 2  # management (old secret) + verification (new)
    assert counts["add_secret"]["requests"] == 1
    assert counts["delete_secret"]["requests"] == 1


def test_emergency_rotation_leaves_only_the_new_secret_and_kills_our_old_tokens(
    world: World,
) -> None:
    world.credential()
    old_uuid = world.adobe_uuids()[0]

    final = world.rotate(emergency=True)

    assert final.state is State.COMPLETED
    assert final.trigger is Trigger.EMERGENCY
    uuids = world.adobe_uuids()
    assert len(uuids) == 1 and uuids[0] != old_uuid
    assert world.value()["secret_uuid"] == uuids[0]
    assert world.works()
    assert world.admin.count("invalidate") >= 1
    old_tokens = [
        t
        for t in world.admin.tokens(world.creds["analytics"].client_id)
        if t.get("secret_uuid") == old_uuid
    ]
    assert old_tokens and all(t["status"] != "active" for t in old_tokens)


def _expire_lease(world: World, rotation_id: int) -> None:
    """What a crashed worker leaves behind, once its lease has run out."""
    with world.app.store.engine.begin() as conn:
        conn.execute(
            update(rotations).where(rotations.c.id == rotation_id).values(lease_expires_at=None)
        )


@pytest.mark.parametrize("steps_before_crash", range(0, 7))
def test_a_rotation_interrupted_after_any_step_resumes_to_the_same_end(
    world: World, steps_before_crash: int
) -> None:
    world.credential()
    first = world.fresh_app()
    rotation = first.engine.request("analytics", Trigger.MANUAL, actor="test")
    claim = first.engine.claim(rotation.id)
    for _ in range(steps_before_crash):
        if claim is None:
            break
        claim = first.engine.step(claim)
    first.close()  # the process is gone: its token cache and in-memory values with it
    _expire_lease(world, rotation.id)

    final = world.rotate()

    assert final.id == rotation.id and final.state is State.COMPLETED, final.last_error
    world.assert_i4()
    assert world.admin.count("add_secret") == 1


def test_an_orphan_left_by_a_crash_between_adobe_and_aws_is_deleted(world: World) -> None:
    cred = world.credential()
    app = world.app
    app.engine.adopt("analytics", cred.secret.uuid, actor="test")  # type: ignore[union-attr]
    rotation = app.engine.request("analytics", Trigger.MANUAL, actor="test")
    claim = app.engine.claim(rotation.id)
    assert claim is not None
    claim = app.engine.step(claim)  # planned -> creating: uuids seen, the add's intent recorded
    assert claim is not None and claim.rotation.state is State.CREATING
    orphan = world.admin.add_secret(cred.credential_id)  # Adobe made it; its value was lost
    app.store.release(claim)  # the worker died in the POST: the next lease finds the orphan

    final = world.rotate()

    assert final.state is State.COMPLETED
    assert orphan.uuid not in world.adobe_uuids()
    world.assert_i4()
    orphan_events = [
        e
        for e in app.store.events(rotation_id=rotation.id)
        if orphan.uuid in e.detail.get("orphans_deleted", [])
    ]
    assert len(orphan_events) == 1


def test_a_stray_watched_unused_for_the_quiet_period_is_deleted_first(world: World) -> None:
    # A stray goes only once rotator itself has watched it unused for quiet_period +
    # usage_lag (its own clock), and AWSCURRENT's secret is known by construction (adopt).
    cred = world.credential()
    stray = world.admin.add_secret(cred.credential_id)
    world.admin.set_secret_times(
        cred.credential_id, stray.uuid, created_ago_s=40 * 3600, last_used_ago_s=30 * 3600
    )
    app = world.app
    app.engine.adopt("analytics", cred.secret.uuid, actor="test")  # type: ignore[union-attr]
    rotation = app.engine.request("analytics", Trigger.MANUAL, actor="test")
    _step_while_planned(world, rotation.id)

    after = app.store.get(rotation.id)
    assert after.state is State.CREATING
    assert stray.uuid not in world.adobe_uuids()
    events = app.store.events(rotation_id=rotation.id)
    assert "strays_wait" in [e.kind for e in events]  # watched first, not judged on one answer
    deleted = [u for e in events for u in e.detail.get("strays_deleted", [])]
    assert deleted == [stray.uuid]


def test_a_recently_used_stray_stops_the_rotation_with_a_sentence_naming_it(world: World) -> None:
    world.defaults["quiet_period"] = "25h"
    cred = world.credential()
    stray = world.admin.add_secret(cred.credential_id)
    world.admin.set_secret_times(cred.credential_id, stray.uuid, last_used_ago_s=3600)

    final = world.rotate()

    assert final.state is State.NEEDS_ATTENTION
    assert final.last_error and stray.uuid in final.last_error
    assert "last used" in final.last_error
    assert sorted(world.adobe_uuids()) == sorted([cred.secret.uuid, stray.uuid])  # type: ignore[union-attr]
    assert world.works()
    assert world.admin.count("add_secret") == 0


def test_prune_strays_false_keeps_even_an_old_stray(world: World) -> None:
    cred = world.credential(prune_strays=False)
    stray = world.admin.add_secret(cred.credential_id)
    world.admin.set_secret_times(
        cred.credential_id, stray.uuid, created_ago_s=90 * 86400, never_used=True
    )
    world.app.engine.adopt("analytics", cred.secret.uuid, actor="test")  # type: ignore[union-attr]

    final = world.rotate()

    assert final.state is State.NEEDS_ATTENTION
    assert "prune_strays is false" in (final.last_error or "")
    assert stray.uuid in world.adobe_uuids()


def test_failed_verification_rolls_back_and_leaves_awscurrent_working(world: World) -> None:
    world.defaults["verify_timeout"] = "1s"
    world.credential()
    before_uuids = world.adobe_uuids()
    before_labels = world.labels()
    world.admin.set_timing(accept_delay_ms=600_000)  # Adobe never accepts the new secret

    final = world.rotate(timeout=20)

    assert final.state is State.FAILED
    assert final.last_error and "verify_timeout" in final.last_error
    assert world.adobe_uuids() == before_uuids
    assert world.labels() == before_labels  # AWSCURRENT untouched, no AWSPENDING left
    world.admin.set_timing(accept_delay_ms=0)
    assert world.works()


def test_a_new_secret_accepted_late_is_verified_within_verify_timeout(world: World) -> None:
    world.defaults["verify_timeout"] = "20s"
    world.credential()
    world.admin.set_timing(accept_delay_ms=1500)

    final = world.rotate()

    assert final.state is State.COMPLETED
    world.assert_i4()


def test_bootstrap_takes_the_only_secret_when_aws_records_no_uuid(world: World) -> None:
    cred = world.credential(record_uuid=False)

    final = world.rotate()

    assert final.old_uuid == cred.secret.uuid  # type: ignore[union-attr]
    assert final.state is State.COMPLETED
    world.assert_i4()


def test_two_secrets_and_no_binding_ask_at_once_and_adopt_unblocks(world: World) -> None:
    # Usage times only suggest (I12): no test tokens, no wait; the sentence says what was
    # seen and the exact command, and after it the rotation goes on.
    world.defaults["quiet_period"] = "25h"
    cred = world.credential(poll_interval="1s")
    other = world.admin.add_secret(cred.credential_id)
    app = world.app
    rotation = app.engine.request("analytics", Trigger.MANUAL, actor="test")
    claim = app.engine.claim(rotation.id)
    assert claim is not None
    app.engine.step(claim)

    asked = app.store.get(rotation.id)
    assert asked.state is State.NEEDS_ATTENTION
    command = f"rotator adopt analytics --uuid {cred.secret.uuid}"  # type: ignore[union-attr]
    assert command in (asked.last_error or "") and other.uuid in (asked.last_error or "")
    assert world.admin.count("token") <= 2  # no test tokens were minted to guess
    assert sorted(world.adobe_uuids()) == sorted([cred.secret.uuid, other.uuid])  # type: ignore[union-attr]


def test_two_unrecorded_secrets_that_cannot_be_told_apart_ask_for_adopt(world: World) -> None:
    cred = world.credential(record_uuid=False)
    world.admin.add_secret(cred.credential_id)
    world.admin.set_timing(usage_lag_ms=600_000)  # uses never show: nothing moves

    final = world.rotate()

    assert final.state is State.NEEDS_ATTENTION
    assert "rotator adopt analytics --uuid" in (final.last_error or "")


def test_cancel_before_promotion_rolls_back(world: World) -> None:
    world.credential()
    before = world.adobe_uuids()
    app = world.app
    rotation = app.engine.request("analytics", Trigger.MANUAL, actor="test")
    claim = app.engine.claim(rotation.id)
    for _ in range(2):  # planned -> creating (the add's intent recorded) -> staged
        assert claim is not None
        claim = app.engine.step(claim)
    assert claim is not None and claim.rotation.state is State.STAGED
    app.store.release(claim)
    app.store.request_cancel("analytics", actor="test", reason="changed my mind")

    final = world.rotate()

    assert final.id == rotation.id and final.state is State.CANCELLED
    assert world.adobe_uuids() == before
    assert not any("AWSPENDING" in ls for ls in world.labels().values())
    assert world.works()


def test_cancel_while_draining_keeps_both_secrets_valid(world: World) -> None:
    world.defaults["quiet_period"] = "1h"
    world.credential()
    draining = world.rotate(wait=False)
    assert draining.state is State.DRAINING
    world.app.store.request_cancel("analytics", actor="test", reason="consumer stuck")

    final = world.rotate()

    assert final.id == draining.id and final.state is State.CANCELLED
    assert len(world.adobe_uuids()) == 2
    assert world.works("analytics", "AWSCURRENT") and world.works("analytics", "AWSPREVIOUS")


def test_emergency_preempts_a_draining_rotation_and_ends_with_one_secret(world: World) -> None:
    world.defaults["quiet_period"] = "1h"
    world.credential()
    draining = world.rotate(wait=False)
    assert draining.state is State.DRAINING

    final = world.rotate(emergency=True)

    assert final.trigger is Trigger.EMERGENCY and final.state is State.COMPLETED
    assert world.app.store.get(draining.id).state is State.ABANDONED
    uuids = world.adobe_uuids()
    assert len(uuids) == 1
    assert uuids[0] not in {draining.old_uuid, draining.new_uuid}
    assert world.value()["secret_uuid"] == uuids[0] and world.works()


def test_draining_waits_while_the_old_secret_is_still_used(world: World) -> None:
    world.defaults.update(quiet_period="1s", poll_interval="100ms")
    cred = world.credential()
    draining = world.rotate(wait=False)
    for _ in range(3):
        world.admin.consume(cred.credential_id, draining.old_uuid or "")
        claim = world.app.engine.claim(draining.id)
        assert claim is not None
        world.app.engine.drive(claim)
        assert world.app.store.get(draining.id).state is State.DRAINING
    polls = [e for e in world.app.store.events(rotation_id=draining.id) if e.kind == "poll"]
    assert polls and polls[0].detail["evidence"]["old_last_used_at"]

    final = world.rotate()
    assert final.state is State.COMPLETED
    world.assert_i4()


def test_max_drain_asks_for_attention_and_never_deletes_a_used_secret(world: World) -> None:
    world.defaults.update(quiet_period="1h", max_drain="1s", poll_interval="100ms")
    cred = world.credential()
    draining = world.rotate(wait=False)

    time.sleep(1.1)
    world.admin.consume(cred.credential_id, draining.old_uuid or "")
    final = world.rotate()

    assert final.state is State.NEEDS_ATTENTION
    assert "last used at" in (final.last_error or "")
    assert draining.old_uuid in world.adobe_uuids()


def test_no_secret_value_reaches_the_database_or_the_logs(world: World) -> None:
    stream = io.StringIO()
    logs.configure("DEBUG", json=True, stream=stream)
    try:
        world.credential()
        world.rotate()
        world.rotate(emergency=True)
        logging.getLogger("rotator.test").debug("end of scenario")
    finally:
        logs.configure("WARNING", json=True)
    needles = world.admin.secret_values() + world.admin.token_values()
    assert len(needles) >= 5
    dump = [stream.getvalue()]
    with world.app.store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(text(f"SELECT * FROM {table.name}")):
                dump.append(json.dumps([str(v) for v in row]))
    haystack = "\n".join(dump)
    assert "rotation step" in haystack  # the logs were really captured
    hits = [n[:4] + "…" for n in needles if n in haystack]

    assert hits == []


def _step_while_planned(world: World, rotation_id: int, *, steps: int = 10) -> None:
    """Step the plan when it is due until it is done: proof by observation takes two test
    tokens a pause (poll_interval) apart, so two steps or more."""
    app = world.app
    for _ in range(steps):
        rotation = app.store.get(rotation_id)
        if rotation.state is not State.PLANNED:
            return
        if rotation.next_attempt_at is not None:
            time.sleep(max(0.0, (rotation.next_attempt_at - app.engine.clock()).total_seconds()))
        claim = app.engine.claim(rotation_id)
        assert claim is not None
        app.engine.step(claim)
    raise AssertionError(f"still planned after {steps} steps")
