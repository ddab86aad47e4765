"""Fenced leases: a worker owns a rotation through `lease_owner` + `fence`.

A claim bumps the fence; every write is guarded by `WHERE id = :id AND lease_owner = :me
AND fence = :fence`, and zero rows updated means the lease was taken over, so the worker
stops (LeaseLost) without writing. Lease expiry is judged on the store's clock, the
database's on PostgreSQL, so replicas' clocks need not agree (I10).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select, update

from rotator import redaction
from rotator.adapters.db.rows import owned_columns
from rotator.adapters.db.tables import rotations
from rotator.domain.errors import LeaseLost
from rotator.domain.model import Rotation, Trigger
from rotator.ports import Claim


@dataclass(frozen=True)
class LeaseInfo:
    owner: str | None
    expires_at: datetime | None


def take(
    conn: Connection,
    owner: str,
    lease: timedelta,
    now: datetime,
    *,
    rotation_id: int | None,
    limit: int,
    due_only: bool,
) -> Sequence[Any]:
    """Take the lease of due, unowned rotations (or of one given rotation), bumping
    fences; the rows as they are now (not yet checked against their events)."""
    conditions = [rotations.c.finished_at.is_(None), free(now)]
    if due_only:
        conditions.append(due(now))
    if rotation_id is not None:
        conditions.append(rotations.c.id == rotation_id)
    candidates = (
        select(rotations.c.id)
        .where(and_(*conditions))
        .order_by(_URGENT_FIRST, rotations.c.next_attempt_at, rotations.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [r[0] for r in conn.execute(candidates).all()]
    if not ids:
        return []
    return (
        conn.execute(
            update(rotations)
            .where(rotations.c.id.in_(ids))
            .values(lease_owner=owner, lease_expires_at=now + lease, fence=rotations.c.fence + 1)
            .returning(rotations)
        )
        .mappings()
        .all()
    )


def claimable(conn: Connection, now: datetime) -> int:
    """How many rotations a claim would take now."""
    return int(
        conn.execute(
            select(func.count())
            .select_from(rotations)
            .where(rotations.c.finished_at.is_(None), free(now), due(now))
        ).scalar_one()
    )


def info(conn: Connection, rotation_id: int) -> LeaseInfo:
    row = conn.execute(
        select(rotations.c.lease_owner, rotations.c.lease_expires_at).where(
            rotations.c.id == rotation_id
        )
    ).one()
    return LeaseInfo(owner=row[0], expires_at=row[1])


def renew(conn: Connection, claim: Claim, until: datetime) -> None:
    result = conn.execute(update(rotations).where(*_guard(claim)).values(lease_expires_at=until))
    if result.rowcount != 1:
        raise LeaseLost(f"rotation {claim.rotation.id}: lease lost to another worker")


def release(conn: Connection, claim: Claim) -> None:
    conn.execute(
        update(rotations).where(*_guard(claim)).values(lease_owner=None, lease_expires_at=None)
    )


def write_owned(
    conn: Connection, claim: Claim, new: Rotation, now: datetime, keep_lease: timedelta | None
) -> bool:
    """The owner's fenced write of `new` (LeaseLost, nothing written, when the fence is
    stale); True when an emergency was requested of this non-emergency rotation."""
    old = claim.rotation
    values = owned_columns(new)
    if keep_lease is None:
        values.update(lease_owner=None, lease_expires_at=None)
    else:
        values.update(lease_expires_at=now + keep_lease)
    if new.state.terminal and new.finished_at is None:
        values["finished_at"] = now
    if new.state is not old.state:
        values["state_since"] = now
    values["last_error"] = redaction.redact(values["last_error"] or "") or None
    result = conn.execute(
        update(rotations)
        .where(*_guard(claim))
        .values(**values)
        .returning(rotations.c.emergency_requested, rotations.c.trigger)
    ).first()
    if result is None:
        raise LeaseLost(
            f"rotation {old.id} of {old.credential!r}: lease lost to another worker "
            f"(fence {claim.fence} is stale); stopping without writing"
        )
    return bool(result[0] and result[1] != Trigger.EMERGENCY.value)


def free(now: datetime) -> Any:
    """No live lease. A lease held by anyone, this process included, is not free: worker
    threads share one owner id, and two of them must never drive the same rotation."""
    return or_(rotations.c.lease_expires_at.is_(None), rotations.c.lease_expires_at < now)


def due(now: datetime) -> Any:
    """Work to do now: its next attempt has come, or an operator asked for something."""
    return or_(
        rotations.c.next_attempt_at.is_(None),
        rotations.c.next_attempt_at <= now,
        rotations.c.emergency_requested,
        rotations.c.cancel_requested,
    )


# Emergencies first, a rotation flagged for one included, whatever its next attempt time:
# a leaked secret must not wait behind routine work.
_URGENT_FIRST = case(
    (or_(rotations.c.trigger == Trigger.EMERGENCY.value, rotations.c.emergency_requested), 0),
    else_=1,
)


def _guard(claim: Claim) -> Sequence[Any]:
    return (
        rotations.c.id == claim.rotation.id,
        rotations.c.lease_owner == claim.owner,
        rotations.c.fence == claim.fence,
    )
