"""Operator requests acted on by the driver: cancel, emergency pre-emption, retry of
needs_attention. Each returns an Outcome like a step does; `successor` names the emergency
that follows a rotation it pre-empted (the driver and `follow` both go on with it).

Precedence, decided by `request_for` at every step boundary: an emergency outranks
everything (a cancel included); a cancel outranks the step due next, except where
stopping would break a promise (a normal rotation already retiring, or an emergency past
its promotion: both finish, because finishing is what deletes the old or leaked secret).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from rotator.domain import machine, outlook
from rotator.domain.events import EventKind
from rotator.domain.model import Rotation, State
from rotator.engine.context import StepContext
from rotator.engine.outcome import Outcome
from rotator.engine.steps import STEPS
from rotator.ports import RotationStore


def retry_attention(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    """Try the step that needed a person again: the cause may have gone away."""
    resume = rotation.resume_state or State.PLANNED
    outcome = STEPS[resume](step, rotation.evolve(state=resume), now)
    if outcome.state is resume and outcome.wait_until is not None:
        return outcome.still_asking(resume)  # still blocked: keep asking, keep watching
    if outcome.state is not State.NEEDS_ATTENTION:
        return outcome.with_defaults(resume_state=None, last_error=None)
    return outcome.with_defaults(resume_state=None)


def cancel(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    """Before promotion: roll back (an emergency that follows an abandoned rotation also
    gives back what that one left). After: stop draining and leave both secrets valid."""
    effective = (
        rotation.resume_state if rotation.state is State.NEEDS_ATTENTION else (rotation.state)
    )
    if effective is not None and effective.promoted:
        return Outcome.finish(
            State.CANCELLED,
            EventKind.CANCELLED,
            detail={"kept": [rotation.old_uuid, rotation.new_uuid]},
        )
    if effective in {None, State.PLANNED} and not machine.has_leftovers(rotation):
        return Outcome.finish(State.CANCELLED, EventKind.CANCELLED, detail={})
    changes: dict[str, object] = {"last_error": "cancelled by an operator", "resume_state": None}
    adding = effective is State.CREATING and not rotation.new_uuid
    if adding or (machine.has_leftovers(rotation) and not rotation.detail.get("inherits")):
        # An add (this rotation's, or the one it abandoned) may have taken effect with its
        # answer lost: that uuid is nowhere but in Adobe's lists, so the rollback looks
        # longer before it calls the slate clean.
        changes["detail"] = {**rotation.detail, "add_unaccounted": True}
    return Outcome.advance(State.ROLLING_BACK, EventKind.CANCEL_ROLLBACK, changes=changes)


def request_for(rotation: Rotation) -> Literal["abandon", "cancel"] | None:
    """Which operator request the driver acts on now, if any (see the module's precedence).
    The rule lives in the domain, so `rotator plan` tells the same."""
    return outlook.operator_request(rotation)


def abandon(rotation: Rotation, now: datetime) -> Outcome:
    """An emergency arrived for a credential mid-rotation: stop this one where it stands.

    No rollback and no retirement: either could need a person (AWSCURRENT edited by hand,
    an Adobe that refuses) and so block the emergency, which nothing may. What it leaves
    behind is named in its audit event; the emergency, started by the same save (see
    Store.save), deletes every other secret once its own is promoted and moves AWSPENDING
    to its own version when it stages.
    """
    return Outcome.finish(
        State.ABANDONED,
        EventKind.ABANDONED,
        changes={"resume_state": None},
        detail={"for": "emergency", "leaves": machine.leftovers(rotation)},
    )


def successor(store: RotationStore, ended: Rotation) -> Rotation | None:
    """The emergency that starts where `ended` was abandoned for it (the same save started
    it), if that is what follows: whoever drove the one goes on with the other at once."""
    if not ended.state.terminal:
        return None
    follow = store.active(ended.credential)
    if follow is not None and follow.detail.get("follows") == ended.id:
        return follow
    return None
