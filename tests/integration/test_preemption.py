"""An emergency that finds a normal rotation mid-step: its holder (or whoever claims it next)
abandons it at the step boundary, and the same worker drives the emergency at once."""

from __future__ import annotations

from rotator.domain.model import State, Trigger
from tests.world import World


def test_a_flagged_rotation_is_abandoned_and_its_emergency_driven_in_one_claim(
    world: World,
) -> None:
    world.credential()
    app = world.app
    normal = app.engine.request("analytics", Trigger.MANUAL, actor="test")
    claim = app.engine.claim(normal.id)  # a worker is mid-step
    assert claim is not None
    claim = app.engine.step(claim)  # planned -> creating
    assert claim is not None
    claim = app.engine.step(claim)  # creating -> staged: a new secret and AWSPENDING exist
    assert claim is not None and claim.rotation.state is State.STAGED
    flagged = app.engine.request("analytics", Trigger.EMERGENCY, actor="ops", reason="leak")
    assert flagged.id == normal.id and flagged.emergency_requested  # the lease is held
    app.store.release(claim)  # the step boundary

    assert app.engine.run_due(limit=1) == 1

    abandoned = app.store.get(normal.id)
    assert abandoned.state is State.ABANDONED and abandoned.finished_at is not None
    (event,) = [e for e in app.store.events(rotation_id=normal.id) if e.kind == "abandoned"]
    assert event.detail["leaves"] == {
        "new_uuid": normal_new_uuid(app, normal.id),
        "aws_pending_version": abandoned.request_token,
    }
    emergency = app.store.recent("analytics", limit=1)[0]
    assert emergency.emergency and emergency.detail["follows"] == normal.id
    assert emergency.detail["inherits"]["uuid"] == abandoned.new_uuid
    # Driven by the same worker in the same claim (its first step saved; it may then wait
    # for Adobe to show which secret AWSCURRENT is before it deletes anything).
    stepped = [e for e in app.store.events(rotation_id=emergency.id) if e.kind != "started"]
    assert stepped and {e.actor for e in stepped} == {app.engine.owner}
    final = world.rotate()  # follows the emergency to its end
    assert final.id == emergency.id and final.state is State.COMPLETED
    uuids = world.adobe_uuids()
    assert uuids == [final.new_uuid] and world.works()
    assert not any("AWSPENDING" in labels for labels in world.labels().values())


def normal_new_uuid(app: object, rotation_id: int) -> str | None:
    return app.store.get(rotation_id).new_uuid  # type: ignore[attr-defined,no-any-return]
