"""Regressions for the hard cases: stale leases, lost requests, refused retries, and a
promotion that took effect before the state did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from rotator.adapters.db.tables import rotations
from rotator.app import App
from rotator.domain.errors import PermanentError
from rotator.domain.model import State, Trigger
from tests.world import World


def _step_to(app: App, name: str, state: State) -> Any:
    rotation = app.engine.request(name, Trigger.MANUAL, actor="test")
    claim = app.engine.claim(rotation.id)
    while claim is not None and claim.rotation.state is not state:
        claim = app.engine.step(claim)
    assert claim is not None, f"never reached {state}"
    return claim


def _expire(app: App, rotation_id: int) -> None:
    with app.store.engine.begin() as conn:
        conn.execute(
            update(rotations)
            .where(rotations.c.id == rotation_id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_a_worker_that_lost_its_lease_moves_no_label(world: World) -> None:
    world.credential()
    stalled = world.fresh_app(owner="stalled")
    claim = _step_to(stalled, "analytics", State.VERIFIED)
    labels = world.labels()
    _expire(stalled, claim.rotation.id)
    other = world.fresh_app(owner="other")
    assert other.engine.claim(claim.rotation.id) is not None  # takes over, fence moves on

    assert stalled.engine.step(claim) is None  # wakes up inside promotion: stops

    assert world.labels() == labels  # AWSCURRENT was not moved by the stale worker
    stalled.close()
    other.close()


def test_an_emergency_during_a_rollback_still_happens(sqlite_world: World) -> None:
    world = sqlite_world
    world.credential()
    app = world.app
    claim = _step_to(app, "analytics", State.STAGED)
    app.store.release(claim)
    app.store.request_cancel("analytics", actor="ops", reason="wrong day")
    claim = app.engine.claim(claim.rotation.id)
    assert claim is not None
    claim = app.engine.step(claim)  # staged -> rolling_back (the cancel)
    assert claim is not None and claim.rotation.state is State.ROLLING_BACK
    app.store.release(claim)
    app.store.request_emergency("analytics", actor="ops", reason="leaked")

    final = world.rotate()

    assert final.emergency and final.state is State.COMPLETED
    assert len(world.adobe_uuids()) == 1 and world.works()


def test_an_emergency_outranks_a_cancel(sqlite_world: World) -> None:
    world = sqlite_world
    world.credential()
    old = world.adobe_uuids()[0]
    app = world.app
    claim = _step_to(app, "analytics", State.STAGED)
    app.store.release(claim)
    app.store.request_cancel("analytics", actor="ops", reason="x")
    app.store.request_emergency("analytics", actor="ops", reason="leaked")

    final = world.rotate()

    assert final.emergency and final.state is State.COMPLETED
    assert old not in world.adobe_uuids() and len(world.adobe_uuids()) == 1


def test_a_refused_retry_of_a_label_move_that_took_effect_completes_the_rotation(
    world: World,
) -> None:
    world.credential()
    app = world.app
    real_move = app.aws.move_stage
    refused = []

    def move_then_refuse(*args: Any, **kwargs: Any) -> None:
        real_move(*args, **kwargs)  # the first try took effect; the SDK's retry is refused
        if not refused:
            refused.append(args)
            raise PermanentError("AWS InvalidParameterException: not on that version")

    app.aws.move_stage = move_then_refuse  # type: ignore[method-assign]

    final = world.rotate()

    assert refused and final.state is State.COMPLETED
    world.assert_i4()


def test_a_promotion_that_took_effect_before_a_crash_is_finished_not_rolled_back(
    world: World,
) -> None:
    world.credential()
    app = world.app
    claim = _step_to(app, "analytics", State.VERIFIED)
    rotation = claim.rotation
    app.store.release(claim)
    # AWSCURRENT moved, then the process died before saving "promoted".
    world.sm.update_secret_version_stage(
        SecretId=world.secret_ids["analytics"],
        VersionStage="AWSCURRENT",
        MoveToVersionId=rotation.request_token,
        RemoveFromVersionId=rotation.previous_version,
    )
    app.store.request_emergency("analytics", actor="ops", reason="leaked meanwhile")

    final = world.rotate()

    assert final.emergency and final.state is State.COMPLETED
    assert app.store.get(rotation.id).state is State.ABANDONED  # the emergency cleaned up
    uuids = world.adobe_uuids()
    assert len(uuids) == 1 and rotation.new_uuid not in uuids
    assert not any("AWSPENDING" in labels for labels in world.labels().values())
    assert world.works()


def test_a_rotation_of_a_credential_gone_from_the_config_is_parked_not_spun(
    world: World,
) -> None:
    world.credential("kept")
    world.credential("dropped")
    app = world.app
    stale = app.engine.request("dropped", Trigger.MANUAL, actor="test")
    del world.creds["dropped"]
    app = world.fresh_app()

    assert app.engine.run_due(limit=1) == 1
    parked = app.store.get(stale.id)
    assert parked.state is State.PLANNED
    assert "not in the configuration" in (parked.last_error or "")
    assert parked.next_attempt_at is not None
    assert parked.next_attempt_at > datetime.now(UTC) + timedelta(minutes=30)
    assert world.rotate("kept", app=app).state is State.COMPLETED
    app.close()
