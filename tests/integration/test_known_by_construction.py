"""Destroy only what is known by construction (I12); no delete on an answer that
contradicts what was seen, however long it lasts (I13). Each scenario runs the real
engine against the sandbox over HTTP; the sandbox's admin view is the truth (every real
secret, whatever the list answers say)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from rotator.app import App
from rotator.domain.model import Rotation, State, Trigger
from tests.world import World

# Contradictions last "until removed" (count=None): longer than usage_lag, max_drain or
# any other bound the engine might assume.
FOREVER = None


def _drive(
    app: App, rotation_id: int, until: Callable[[Rotation], bool], *, seconds: float = 6.0
) -> Rotation:
    """Step the rotation when due until `until` holds or `seconds` pass; return it."""
    deadline = time.monotonic() + seconds
    while True:
        rotation = app.store.get(rotation_id)
        if until(rotation) or rotation.state.terminal or time.monotonic() > deadline:
            return rotation
        if rotation.next_attempt_at is not None:
            wait = (rotation.next_attempt_at - app.engine.clock()).total_seconds()
            time.sleep(min(max(0.0, wait), 0.25))
        claim = app.engine.claim(rotation_id, due_only=True)
        if claim is not None:
            app.engine.drive(claim)


def _kinds(app: App, rotation_id: int) -> list[str]:
    return [e.kind for e in app.store.events(rotation_id=rotation_id)]


@pytest.mark.parametrize("hostile", ["null", "stale"])
def test_an_emergency_at_the_two_secret_limit_with_no_binding_asks_at_once_and_deletes_nothing(
    sqlite_world: World, hostile: str
) -> None:
    # The AWS value records no uuid, a consumer is busy on the other secret, and Adobe
    # hides AWSCURRENT's use (null, or an hour stale): a usage-time inference named the
    # busy secret and deleted AWSCURRENT's (issue 26, findings 1 and 2; a skewed clock
    # hides it the same way). Nothing is inferred now, whatever the answers say.
    world = sqlite_world
    cred = world.credential(record_uuid=False)
    current = cred.secret.uuid  # type: ignore[union-attr]
    other = world.admin.add_secret(cred.credential_id).uuid
    world.admin.regress_usages(hostile, uuid=current, stale_ms=3_600_000, count=FOREVER)  # type: ignore[arg-type]
    app = world.app
    rotation = app.engine.request("analytics", Trigger.EMERGENCY, actor="test", reason="leak")
    tokens = world.admin.count("token")

    def busy(_: Rotation) -> bool:
        world.admin.consume(cred.credential_id, other)  # the other secret's consumer
        return False

    asked = _drive(app, rotation.id, lambda r: busy(r) or r.state is State.NEEDS_ATTENTION)

    assert asked.state is State.NEEDS_ATTENTION
    assert sorted(world.adobe_uuids()) == sorted([current, other])  # nothing deleted
    assert world.works()
    assert "rotator adopt analytics --uuid <uuid>" in (asked.last_error or "")
    assert current in (asked.last_error or "") and other in (asked.last_error or "")
    assert world.admin.count("token") - tokens <= 1  # no test tokens: no guessing

    app.engine.adopt("analytics", current, actor="ops")  # the person confirms
    final = _drive(app, rotation.id, lambda r: r.state is State.COMPLETED)
    assert final.state is State.COMPLETED
    assert current not in world.adobe_uuids() and other not in world.adobe_uuids()
    assert world.works()


def test_an_emergency_with_a_free_slot_needs_no_identity(sqlite_world: World) -> None:
    world = sqlite_world
    cred = world.credential(record_uuid=False)
    leaked = cred.secret.uuid  # type: ignore[union-attr]

    final = world.rotate(emergency=True)

    assert final.state is State.COMPLETED
    assert leaked not in world.adobe_uuids() and len(world.adobe_uuids()) == 1
    assert world.works()


def test_a_person_s_new_secret_after_a_throttled_add_is_not_deleted_as_an_orphan(
    sqlite_world: World,
) -> None:
    # Finding 3: the add is throttled (429: Adobe did nothing); a person creates a secret
    # in the Console and a consumer uses it, which Adobe shows late. No add of ours could
    # have made it, so it is no orphan.
    world = sqlite_world
    world.defaults["usage_lag"] = "15m"  # covers the sandbox's reporting delay below
    cred = world.credential()
    app = world.app
    app.engine.adopt("analytics", cred.secret.uuid, actor="ops")  # type: ignore[union-attr]
    world.admin.fail_next("add_secret", count=10, status=429, retry_after_s=3600)
    rotation = app.engine.request("analytics", Trigger.MANUAL, actor="test")
    claim = app.engine.claim(rotation.id)
    assert claim is not None
    app.engine.drive(claim)  # planned -> creating -> the add, refused: retry in an hour
    assert "add" in (app.store.get(rotation.id).last_error or "")
    world.admin.clear_faults()
    world.admin.set_timing(usage_lag_ms=600_000)  # its use shows late
    persons = world.admin.add_secret(cred.credential_id).uuid
    world.admin.consume(cred.credential_id, persons)

    for _ in range(3):  # the next attempts, whenever they come
        claim = app.engine.claim(rotation.id)
        assert claim is not None
        app.engine.drive(claim)

    assert persons in world.adobe_uuids()
    assert world.admin.consume(cred.credential_id, persons).status_code == 200
    assert "orphans_deleted" not in json.dumps(
        [e.detail for e in app.store.events(rotation_id=rotation.id) if persons in str(e.detail)]
    )


def test_a_stray_seen_in_use_is_not_deleted_on_null_answers_later(sqlite_world: World) -> None:
    # Finding 4: strays kept no evidence between polls; two null answers a moment apart
    # made a stray used 30 minutes before look unused since its creation.
    world = sqlite_world
    world.defaults["quiet_period"] = "25h"
    cred = world.credential(poll_interval="200ms")
    stray = world.admin.add_secret(cred.credential_id).uuid
    world.admin.set_secret_times(
        cred.credential_id, stray, created_ago_s=40 * 3600, last_used_ago_s=1800
    )
    app = world.app
    app.engine.adopt("analytics", cred.secret.uuid, actor="ops")  # type: ignore[union-attr]
    rotation = app.engine.request("analytics", Trigger.MANUAL, actor="test")
    claim = app.engine.claim(rotation.id)
    assert claim is not None
    app.engine.drive(claim)  # one answer, with the use
    world.admin.regress_usages("null", uuid=stray, count=FOREVER)

    for _ in range(3):
        claim = app.engine.claim(rotation.id)
        assert claim is not None
        app.engine.drive(claim)
        time.sleep(0.2)

    assert stray in world.adobe_uuids()
    assert app.store.get(rotation.id).state in {State.PLANNED, State.NEEDS_ATTENTION}


def _to_draining(world: World) -> tuple[App, Rotation, str]:
    cred = world.credential()
    old = cred.secret.uuid  # type: ignore[union-attr]
    app = world.app
    rotation = app.engine.request("analytics", Trigger.MANUAL, actor="test")
    drained = _drive(app, rotation.id, lambda r: r.state is State.DRAINING)
    assert drained.state is State.DRAINING
    world.admin.consume(cred.credential_id, old)  # a consumer still on the old secret
    seen = _drive(app, rotation.id, lambda r: bool(r.evidence and r.evidence.old_last_used_at))
    assert seen.evidence is not None and seen.evidence.old_last_used_at is not None
    return app, seen, old


@pytest.mark.parametrize("answer", ["null", "stale", "left out"])
def test_a_draining_old_secret_is_not_deleted_while_answers_contradict_what_was_seen(
    sqlite_world: World, answer: str
) -> None:
    # Finding 5: after usage_lag the rule decided on a null answer, and at the deadline
    # the old secret was deleted by uuid on a view that did not show it at all.
    world = sqlite_world
    world.defaults["max_drain"] = "2s"
    app, rotation, old = _to_draining(world)
    cred = world.creds["analytics"]
    if answer == "left out":
        world.admin.omit_secret(uuid=old, count=FOREVER)
    else:
        world.admin.regress_usages(answer, uuid=old, stale_ms=3_600_000, count=FOREVER)  # type: ignore[arg-type]
    world.admin.consume(cred.credential_id, old)  # still used; the answers hide it

    final = _drive(app, rotation.id, lambda r: False, seconds=3.0)  # well past lag and deadline

    assert old in world.adobe_uuids()
    assert world.admin.consume(cred.credential_id, old).status_code == 200
    assert "completed" not in _kinds(app, rotation.id) or answer == "left out"
    if answer != "left out":
        assert final.state is State.NEEDS_ATTENTION  # max_drain: a person is told what Adobe says
        assert "keeps answering" in (final.last_error or "")


def test_a_benign_hand_edit_of_awscurrent_does_not_block_retirement(sqlite_world: World) -> None:
    # Same client secret in a new AWS version (a person added a key): the binding follows
    # the value, so the old secret is still retired.
    world = sqlite_world
    cred = world.credential()
    old = cred.secret.uuid  # type: ignore[union-attr]
    app = world.app
    rotation = app.engine.request("analytics", Trigger.MANUAL, actor="test")
    assert _drive(app, rotation.id, lambda r: r.state is State.DRAINING).state is State.DRAINING
    edited = {**world.value(), "added_by_hand": "yes"}
    secret_id = world.secret_ids["analytics"]
    put = world.sm.put_secret_value(
        SecretId=secret_id, SecretString=json.dumps(edited), VersionStages=["BY_HAND"]
    )
    draining = app.store.get(rotation.id)
    world.sm.update_secret_version_stage(
        SecretId=secret_id,
        VersionStage="AWSCURRENT",
        MoveToVersionId=put["VersionId"],
        RemoveFromVersionId=draining.request_token,
    )
    assert world.labels()[put["VersionId"]] == ["AWSCURRENT", "BY_HAND"]

    final = _drive(app, rotation.id, lambda r: False)

    assert final.state is State.COMPLETED, final.last_error
    assert old not in world.adobe_uuids() and world.works()


def test_one_list_that_leaves_awscurrent_s_secret_out_is_not_taken_for_the_old_secret(
    sqlite_world: World,
) -> None:
    # No uuid in AWS, two secrets, one list leaves AWSCURRENT's out: the one listed is a
    # guess that the add at the two-secret limit disproves; nothing is built on it.
    world = sqlite_world
    cred = world.credential(record_uuid=False)
    current = cred.secret.uuid  # type: ignore[union-attr]
    other = world.admin.add_secret(cred.credential_id).uuid
    world.admin.omit_secret(uuid=current, count=1)
    app = world.app
    rotation = app.engine.request("analytics", Trigger.MANUAL, actor="test")

    asked = _drive(app, rotation.id, lambda r: r.state is State.NEEDS_ATTENTION)

    assert asked.state is State.NEEDS_ATTENTION
    assert asked.old_uuid != other
    assert "two-secret limit" in (asked.last_error or "")
    assert "rotator adopt analytics --uuid <uuid>" in (asked.last_error or "")
    assert sorted(world.adobe_uuids()) == sorted([current, other])


def test_a_binding_survives_a_survey_answer_that_leaves_the_secret_out(
    sqlite_world: World,
) -> None:
    world = sqlite_world
    cred = world.credential()
    app = world.app
    app.engine.adopt("analytics", cred.secret.uuid, actor="ops")  # type: ignore[union-attr]
    world.admin.omit_secret(uuid=cred.secret.uuid, count=1)  # type: ignore[union-attr]

    app.engine.survey("analytics")

    row = app.store.credential_rows()["analytics"]
    assert row.current_uuid == cred.secret.uuid  # type: ignore[union-attr]
    assert row.current_version is not None  # the binding is kept


def test_the_old_secret_a_cancel_kept_is_drained_by_the_next_rotation(
    sqlite_world: World,
) -> None:
    # Issue 28: a cancel past promotion keeps the old secret; the next rotation knows it as
    # its own old secret (drained with its evidence), not as a stranger to ask about.
    world = sqlite_world
    cred = world.credential()
    kept = cred.secret.uuid  # type: ignore[union-attr]
    app = world.app
    first = app.engine.request("analytics", Trigger.MANUAL, actor="test")
    assert _drive(app, first.id, lambda r: r.state is State.DRAINING).state is State.DRAINING
    app.store.request_cancel("analytics", actor="ops", reason="not today")
    cancelled = _drive(app, first.id, lambda r: r.state.terminal)
    assert cancelled.state is State.CANCELLED and kept in world.adobe_uuids()
    world.admin.consume(cred.credential_id, kept)  # still used a moment ago

    second = app.engine.request("analytics", Trigger.MANUAL, actor="test")
    final = _drive(app, second.id, lambda r: False, seconds=10)

    assert final.state is State.COMPLETED, final.last_error
    kinds = _kinds(app, second.id)
    assert "needs_attention" not in kinds and "strays_wait" in kinds
    assert kept not in world.adobe_uuids() and world.works()
