"""Values the rotation machine reasons about. Frozen, so a step can only produce a new one."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

# The grow-only record lives in evidence.py; importable from here as before.
from rotator.domain.evidence import Evidence as Evidence
from rotator.domain.evidence import effective_usage_lag


class State(enum.StrEnum):
    """Where one rotation stands. The order of the happy path is the order below."""

    PLANNED = "planned"
    CREATING = "creating"
    STAGED = "staged"
    VERIFIED = "verified"
    PROMOTED = "promoted"
    DRAINING = "draining"
    RETIRING = "retiring"
    COMPLETED = "completed"
    ROLLING_BACK = "rolling_back"
    FAILED = "failed"
    CANCELLED = "cancelled"
    NEEDS_ATTENTION = "needs_attention"
    # Ended where it stood, without rollback or retirement, because an emergency rotation of
    # the same credential must start now; the emergency's own retirement cleans up after it.
    ABANDONED = "abandoned"

    @property
    def terminal(self) -> bool:
        """An ending: the rotation is over (see ENDINGS)."""
        return self in TERMINAL

    @property
    def promoted(self) -> bool:
        """True once AWSCURRENT holds the new secret: from here on, rolling back is wrong."""
        return self in {State.PROMOTED, State.DRAINING, State.RETIRING, State.COMPLETED}


# The endings: the states in which a rotation is over, in State's order. The one place
# they are named; metrics, notices and the webhook config read them from here.
ENDINGS: tuple[State, ...] = (State.COMPLETED, State.FAILED, State.CANCELLED, State.ABANDONED)
TERMINAL = frozenset(ENDINGS)


class Trigger(enum.StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    EMERGENCY = "emergency"


_HEX = frozenset("0123456789abcdef")


def canonical_uuid(value: str) -> str:
    """One spelling of an Adobe secret uuid wherever it comes from (Adobe's answers, an
    AWS value, an operator's `adopt`): Adobe's own, 32 lower-case hex digits without
    hyphens, so `11EDE399-B68B-...` and `11ede399b68b...` are the same secret. Anything
    that is not a uuid in some spelling is returned stripped and otherwise unchanged (it
    then matches nothing, as before)."""
    text = value.strip()
    compact = text.replace("-", "").lower()
    if len(compact) == 32 and set(compact) <= _HEX:
        return compact
    return text


@dataclass(frozen=True)
class AdobeSecret:
    """One client secret as Adobe lists it (never with its value)."""

    uuid: str
    created_at: datetime
    last_used_at: datetime | None = None


@dataclass(frozen=True)
class Policy:
    """Per-credential timing rules, already merged from [defaults] and the credential's own keys."""

    max_age: timedelta = timedelta(days=90)
    quiet_period: timedelta = timedelta(hours=25)
    max_drain: timedelta = timedelta(days=14)
    verify_timeout: timedelta = timedelta(minutes=5)
    poll_interval: timedelta = timedelta(minutes=15)
    prune_strays: bool = True
    failure_cooldown: timedelta = timedelta(hours=6)
    # A bound on how late Adobe reports a use; None: see evidence.effective_usage_lag.
    usage_lag: timedelta | None = None

    @property
    def lag(self) -> timedelta:
        """The usage lag the quiet rule adds (the configured one, or the default)."""
        return effective_usage_lag(self.usage_lag, self.quiet_period)


@dataclass(frozen=True)
class Rotation:
    """One rotation of one credential, exactly as persisted (secret values are never part of it)."""

    id: int
    credential: str
    trigger: Trigger
    state: State
    created_at: datetime
    actor: str = "rotator"
    reason: str = ""
    old_uuid: str | None = None
    new_uuid: str | None = None
    known_uuids: tuple[str, ...] = ()
    request_token: str | None = None
    previous_version: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    state_since: datetime | None = None
    promoted_at: datetime | None = None
    finished_at: datetime | None = None
    resume_state: State | None = None
    evidence: Evidence | None = None
    emergency_requested: bool = False
    cancel_requested: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def emergency(self) -> bool:
        return self.trigger is Trigger.EMERGENCY

    def evolve(self, **changes: Any) -> Rotation:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class CredentialUpdate:
    """Facts about a credential that a step's save writes with it, in the same transaction.

    `binding` (uuid, AWS version) is written as a pair, a None uuid included: it replaces
    AWSCURRENT's binding whole (I12), never half of it.
    """

    binding: tuple[str | None, str] | None = None
    last_rotated_at: datetime | None = None
    secret_created_at: datetime | None = None
    last_failed_at: datetime | None = None
    clears_error: bool = False

    @classmethod
    def bound(cls, uuid: str, version: str) -> CredentialUpdate:
        """AWSCURRENT's version is known to hold `uuid` (a plan proved it)."""
        return cls(binding=(uuid, version))

    @classmethod
    def promoted(
        cls, uuid: str | None, version: str, *, at: datetime, secret_created_at: datetime
    ) -> CredentialUpdate:
        """A promotion: AWSCURRENT now holds this rotation's own secret, created then."""
        return cls(
            binding=(uuid, version),
            last_rotated_at=at,
            secret_created_at=secret_created_at,
            clears_error=True,
        )

    def failed_at(self, at: datetime) -> CredentialUpdate:
        """The same update, and the rotation failed at `at` (the failure cooldown starts)."""
        return dataclasses.replace(self, last_failed_at=at)

    def columns(self) -> dict[str, Any]:
        """The `credentials` columns to write, and only those."""
        values: dict[str, Any] = {}
        if self.binding is not None:
            values["current_uuid"], values["current_version"] = self.binding
        for name in ("last_rotated_at", "secret_created_at", "last_failed_at"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        if self.clears_error:
            values["last_error"] = None
        return values
