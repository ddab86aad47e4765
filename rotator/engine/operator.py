"""Operator requests acted on by the driver: cancel, emergency pre-emption, retry of
needs_attention. Each returns an Outcome like a step does."""

from __future__ import annotations

from datetime import datetime

from rotator.domain.model import Rotation, State
from rotator.engine.context import StepContext
from rotator.engine.outcome import Outcome
from rotator.engine.steps import STEPS


def retry_attention(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    """Try the step that needed a person again: the cause may have gone away."""
    resume = rotation.resume_state or State.PLANNED
    outcome = STEPS[resume](step, rotation.evolve(state=resume), now)
    if outcome.state is resume and outcome.wait_until is not None:
        outcome.state = State.NEEDS_ATTENTION  # still blocked: keep asking, keep watching
        outcome.changes.setdefault("resume_state", resume)
    else:
        outcome.changes.setdefault("resume_state", None)
        if outcome.state is not State.NEEDS_ATTENTION:
            outcome.changes.setdefault("last_error", None)
    return outcome


def cancel(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    """Before promotion: roll back. After: stop draining and leave both secrets valid."""
    effective = (
        rotation.resume_state if rotation.state is State.NEEDS_ATTENTION else (rotation.state)
    )
    if effective is not None and effective.promoted:
        return Outcome(
            State.CANCELLED,
            kind="cancelled",
            detail={"kept": [rotation.old_uuid, rotation.new_uuid]},
        )
    if effective in {None, State.PLANNED}:
        return Outcome(State.CANCELLED, kind="cancelled", detail={})
    return Outcome(
        State.ROLLING_BACK,
        kind="cancel_rollback",
        changes={"last_error": "cancelled by an operator"},
    )


def preempt(rotation: Rotation, now: datetime) -> Outcome:
    """An emergency arrived for a credential mid-rotation: end this one fast and safely.

    Before promotion it rolls back; after, it retires the old secret at once. The save
    that ends it starts the emergency rotation (see Store.save).
    """
    effective = rotation.resume_state if rotation.state is State.NEEDS_ATTENTION else rotation.state
    detail = {**rotation.detail, "preempted": True}
    if effective is not None and effective.promoted:
        return Outcome(State.RETIRING, kind="preempted", changes={"detail": detail})
    if effective in {None, State.PLANNED}:
        return Outcome(State.CANCELLED, kind="preempted", changes={"detail": detail})
    return Outcome(
        State.ROLLING_BACK,
        kind="preempted",
        changes={"detail": detail, "last_error": "superseded by an emergency"},
    )
