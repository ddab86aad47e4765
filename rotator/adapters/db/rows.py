"""Rows and the domain: a rotation row read as a `Rotation`, a `Rotation` written as columns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rotator.domain.model import Evidence, Rotation, State, Trigger

# Columns the lease owner writes. Request flags are written by others and never by the owner,
# so an owner's save cannot wipe out an emergency or cancel request that arrived meanwhile.
OWNED = (
    "state",
    "old_uuid",
    "new_uuid",
    "known_uuids",
    "request_token",
    "previous_version",
    "attempts",
    "next_attempt_at",
    "last_error",
    "resume_state",
    "evidence",
    "detail",
    "state_since",
    "promoted_at",
    "finished_at",
    "trigger",
    "reason",
)


@dataclass(frozen=True)
class CredentialRow:
    name: str
    config_hash: str
    current_uuid: str | None
    current_version: str | None
    secret_created_at: datetime | None
    last_rotated_at: datetime | None
    last_failed_at: datetime | None
    surveyed_at: datetime | None
    last_error: str | None
    held_at: datetime | None = None  # on hold (cancelled) since; None: not held
    held_by: str | None = None
    hold_reason: str | None = None


def credential_row(row: Any) -> CredentialRow:
    """A `credentials` row (a mapping) as the fields rotator reads."""
    return CredentialRow(**{k: row[k] for k in CredentialRow.__dataclass_fields__})


def owned_columns(rotation: Rotation) -> dict[str, Any]:
    """The columns a lease owner's save writes, as the database stores them."""
    return {column: _column_value(getattr(rotation, column)) for column in OWNED}


def _column_value(value: Any) -> Any:
    if isinstance(value, State | Trigger):
        return value.value
    if isinstance(value, Evidence):
        return value.as_dict()
    if isinstance(value, tuple):
        return list(value)
    return value


def to_rotation(row: Any) -> Rotation:
    """A `rotations` row (a mapping) as the domain's `Rotation`. Evidence from 0.1 holds
    only the record's first three keys; `Evidence.from_dict` reads both."""
    evidence = row["evidence"]
    return Rotation(
        id=row["id"],
        credential=row["credential"],
        trigger=Trigger(row["trigger"]),
        state=State(row["state"]),
        created_at=row["created_at"],
        actor=row["actor"],
        reason=row["reason"] or "",
        old_uuid=row["old_uuid"],
        new_uuid=row["new_uuid"],
        known_uuids=tuple(row["known_uuids"] or ()),
        request_token=row["request_token"],
        previous_version=row["previous_version"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        state_since=row["state_since"],
        promoted_at=row["promoted_at"],
        finished_at=row["finished_at"],
        resume_state=State(row["resume_state"]) if row["resume_state"] else None,
        evidence=Evidence.from_dict(evidence) if evidence else None,
        emergency_requested=bool(row["emergency_requested"]),
        cancel_requested=bool(row["cancel_requested"]),
        detail=dict(row["detail"] or {}),
    )
