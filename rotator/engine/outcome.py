"""What a step did, as one value the driver saves: state, changed fields, audit detail."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rotator.domain.model import State


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
