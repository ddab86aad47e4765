"""What a step did, as one value the driver saves: state, changed fields, audit detail.

An Outcome is made only by its named constructors, each one of the few shapes a step can
end in (go on now, wait, finish, roll back, ask a person, a failure as the domain decides),
so a wrong combination of fields (a wait on an ending, an ending that goes on) cannot be
written. It is frozen: a changed outcome is a new one (`with_changes`, `with_defaults`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from rotator.domain import machine
from rotator.domain.errors import InvariantError, StepError
from rotator.domain.events import EventKind
from rotator.domain.model import CredentialUpdate, Rotation, State

log = structlog.get_logger("rotator.engine")

Fields = Mapping[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What a step did: the next state, the fields it changed, and whether to go on now."""

    state: State
    kind: EventKind
    changes: Fields = field(default_factory=dict)
    detail: Fields = field(default_factory=dict)
    wait_until: datetime | None = None  # set: release the lease and come back then
    credential_update: CredentialUpdate | None = None

    def __post_init__(self) -> None:
        if self.state.terminal and self.wait_until is not None:
            raise InvariantError(f"an ending ({self.state}) has nothing to wait for")
        if self.state is State.NEEDS_ATTENTION and self.wait_until is None:
            raise InvariantError("needs_attention keeps watching: it needs a time to look again")

    # --- the shapes a step ends in --------------------------------------------------------

    @classmethod
    def advance(
        cls,
        state: State,
        kind: EventKind,
        *,
        changes: Fields | None = None,
        detail: Fields | None = None,
        credential_update: CredentialUpdate | None = None,
    ) -> Outcome:
        """Move to `state` (perhaps the same) and go on at once, keeping the lease."""
        if state.terminal or state is State.NEEDS_ATTENTION:
            raise InvariantError(f"{state} is not a step to go on with")
        return cls(state, kind, dict(changes or {}), dict(detail or {}), None, credential_update)

    @classmethod
    def wait(
        cls,
        state: State,
        kind: EventKind,
        *,
        until: datetime,
        changes: Fields | None = None,
        detail: Fields | None = None,
    ) -> Outcome:
        """Move to `state` (perhaps the same), let the lease go, and come back at `until`."""
        return cls(state, kind, dict(changes or {}), dict(detail or {}), until)

    @classmethod
    def finish(
        cls, state: State, kind: EventKind, *, changes: Fields | None = None, detail: Fields
    ) -> Outcome:
        """End the rotation in `state` (completed, failed, cancelled, abandoned)."""
        if not state.terminal:
            raise InvariantError(f"{state} is not an ending")
        return cls(state, kind, dict(changes or {}), dict(detail))

    @classmethod
    def roll_back(cls, why: str, kind: EventKind) -> Outcome:
        """Give back what this rotation created, now: AWSCURRENT still works (before promotion)."""
        return cls(State.ROLLING_BACK, kind, {"last_error": why}, {"error": why})

    @classmethod
    def retry(
        cls, state: State, kind: EventKind, *, why: str, attempts: int, at: datetime
    ) -> Outcome:
        """The same step again at `at`, counted as attempt number `attempts`."""
        return cls(
            state, kind, {"attempts": attempts, "last_error": why}, {"attempt": attempts}, at
        )

    @classmethod
    def attention(
        cls, why: str, *, resume: State, wait_until: datetime, detail: Fields | None = None
    ) -> Outcome:
        """Stop for a person, keep watching: the step is retried at `wait_until`."""
        return cls(
            State.NEEDS_ATTENTION,
            EventKind.NEEDS_ATTENTION,
            {"last_error": why, "resume_state": resume},
            {**(detail or {}), "why": why},
            wait_until,
        )

    @classmethod
    def failure(cls, rotation: Rotation, error: StepError, decided: machine.Failure) -> Outcome:
        """A failed step, recorded as the domain decided (`machine.on_step_error`)."""
        changes: dict[str, Any] = {
            "last_error": decided.message,
            "resume_state": decided.resume_state,
        }
        if decided.state is rotation.state:
            changes["attempts"] = rotation.attempts + 1
        kind = (
            EventKind.RETRY
            if error.transient
            else (
                EventKind.NEEDS_ATTENTION
                if decided.state is State.NEEDS_ATTENTION
                else EventKind.ERROR
            )
        )
        detail = {"error": decided.message, **error.deleted}
        return cls(decided.state, kind, changes, detail, decided.next_attempt_at)

    # --- a new outcome from this one -----------------------------------------------------

    def with_changes(self, **changes: Any) -> Outcome:
        """This outcome, also changing `changes` (they win over its own)."""
        return dataclasses.replace(self, changes={**self.changes, **changes})

    def with_defaults(self, **changes: Any) -> Outcome:
        """This outcome, also changing `changes` where it changes nothing of its own."""
        return dataclasses.replace(self, changes={**changes, **self.changes})

    def still_asking(self, resume: State) -> Outcome:
        """A retried step that is still blocked: stay in needs_attention, keep watching."""
        return dataclasses.replace(
            self, state=State.NEEDS_ATTENTION, changes={"resume_state": resume, **self.changes}
        )


def failed(rotation: Rotation, error: StepError, now: datetime) -> Outcome:
    """A failed step, recorded as `machine.on_step_error` decides (retry, roll back, ask)."""
    decided = machine.on_step_error(rotation, error, now)
    log.warning(
        "step failed",
        step=rotation.state.value,
        error=str(error),
        transient=error.transient,
        next_state=decided.state.value,
    )
    return Outcome.failure(rotation, error, decided)
