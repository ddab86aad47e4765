"""What a step did, as one value the driver saves: state, changed fields, audit detail."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from rotator.domain import machine
from rotator.domain.errors import StepError
from rotator.domain.model import Rotation, State

log = structlog.get_logger("rotator.engine")


@dataclass
class Outcome:
    """What a step did: the next state, the fields it changed, and whether to go on now."""

    state: State
    changes: dict[str, Any] = field(default_factory=dict)
    kind: str = "transition"
    detail: dict[str, Any] = field(default_factory=dict)
    wait_until: datetime | None = None  # set: release the lease and come back then
    credential_update: dict[str, Any] | None = None

    @classmethod
    def attention(
        cls, why: str, *, resume: State, wait_until: datetime, detail: dict[str, Any] | None = None
    ) -> Outcome:
        """Stop for a person, keep watching: the step is retried at `wait_until`."""
        return cls(
            State.NEEDS_ATTENTION,
            kind="needs_attention",
            changes={"last_error": why, "resume_state": resume},
            detail={**(detail or {}), "why": why},
            wait_until=wait_until,
        )


def failed(rotation: Rotation, error: StepError, now: datetime) -> Outcome:
    """A failed step, recorded as `machine.on_step_error` decides (retry, roll back, ask)."""
    failure = machine.on_step_error(rotation, error, now)
    log.warning(
        "step failed",
        step=rotation.state.value,
        error=str(error),
        transient=error.transient,
        next_state=failure.state.value,
    )
    changes: dict[str, Any] = {
        "last_error": failure.message,
        "resume_state": failure.resume_state,
    }
    if failure.state is rotation.state:
        changes["attempts"] = rotation.attempts + 1
    kind = (
        "retry"
        if error.transient
        else ("needs_attention" if failure.state is State.NEEDS_ATTENTION else "error")
    )
    return Outcome(
        failure.state,
        changes=changes,
        kind=kind,
        detail={"error": failure.message, **error.deleted},
        wait_until=failure.next_attempt_at,
    )
