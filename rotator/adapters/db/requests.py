"""Operator requests: an emergency nothing can block, a cancel that puts the credential on
hold, and the resume that lifts it. Requests are flags the lease owner never writes, so a
worker's save cannot wipe out a request that arrived while it was mid-step.

Each function runs inside one transaction the `Store` opened (`Tx`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from rotator.adapters.db import rotations as rotation_rows
from rotator.adapters.db.audit import NewEvent
from rotator.adapters.db.backing import require_backed
from rotator.adapters.db.leases import free
from rotator.adapters.db.rows import CredentialRow, credential_row
from rotator.adapters.db.tables import credentials, rotations
from rotator.adapters.db.tx import Tx
from rotator.domain import machine
from rotator.domain.errors import RequestRefused
from rotator.domain.events import EventKind
from rotator.domain.model import Rotation, State, Trigger


class NothingToCancel(Exception):
    """Rolls a cancel's transaction back (hold included) when its rotation ended meanwhile."""


def emergency(tx: Tx, credential: str, *, actor: str, reason: str) -> Rotation | None:
    """One try at starting an emergency rotation now (see `Store.request_emergency`): the
    emergency, or the rotation flagged for it; None when the rotation in its way finished
    meanwhile (look again)."""
    now = tx.now()
    active = rotation_rows.active(tx.conn, credential, lock=True)
    if active is not None and active.emergency:
        return active
    require_backed(tx, credential, active.id if active else None)
    if active is not None and _abandon(tx, active, now, actor=actor, reason=reason):
        return rotation_rows.start_emergency_after(tx, active, actor=actor, reason=reason)
    if active is not None and active.emergency_requested:
        return active
    if active is not None:
        return _flag(tx, active, "emergency_requested", actor=actor, reason=reason)
    return rotation_rows.start(
        tx, credential, Trigger.EMERGENCY, actor=actor, reason=reason, detail={}
    )


def _abandon(tx: Tx, active: Rotation, now: datetime, *, actor: str, reason: str) -> bool:
    """End `active` as ABANDONED if no worker holds its lease; False if one does.

    The fence moves on, so a worker that stalled past its lease cannot write to it.
    """
    result = tx.conn.execute(
        update(rotations)
        .where(rotations.c.id == active.id, rotations.c.finished_at.is_(None), free(now))
        .values(**_ended(State.ABANDONED, now), emergency_requested=True)
    )
    if result.rowcount != 1:
        return False
    leaves = machine.leftovers(active)
    tx.record(
        NewEvent.of(
            active,
            State.ABANDONED,
            kind=EventKind.ABANDONED,
            actor=actor,
            detail={"reason": reason, "for": "emergency", "leaves": leaves},
            at=now,
        )
    )
    return True


def cancel(tx: Tx, credential: str, *, actor: str, reason: str) -> Rotation | None:
    """Flag the unfinished rotation to be cancelled and put the credential on hold
    (see `Store.request_cancel`); NothingToCancel when it finished meanwhile."""
    active = rotation_rows.active(tx.conn, credential, lock=True)
    if active is None:
        return None
    unbacked = _unbacked(tx, active)
    if unbacked:
        return _close_unbacked(tx, active, unbacked, actor=actor, reason=reason)
    require_backed(tx, credential, active.id)
    if active.emergency and machine.past_promotion(active):
        raise RequestRefused(
            f"rotation {active.id} of {credential} is an emergency rotation past "
            f"its promotion ({active.state.value}): it cannot be cancelled, because "
            f"finishing it is what deletes the leaked secret"
        )
    now = tx.now()
    hold = {"held_at": now, "held_by": actor, "hold_reason": reason}
    # The hold first: the event appended next records the credential row as it
    # now stands (the audit replay compares the two).
    tx.conn.execute(
        update(credentials).where(credentials.c.name == credential).values(**hold, updated_at=now)
    )
    flagged = _flag(
        tx,
        active,
        "cancel_requested",
        actor=actor,
        reason=reason,
        extra={**hold, "held_at": now.isoformat()},
    )
    if flagged is None:
        raise NothingToCancel  # it finished meanwhile: no hold without its event
    return flagged


def resume(tx: Tx, credential: str, *, actor: str, reason: str) -> CredentialRow | None:
    """Lift a credential's hold; None if it was not on hold. Audited (kind `resumed`)."""
    row = (
        tx.conn.execute(
            select(credentials).where(
                credentials.c.name == credential, credentials.c.held_at.is_not(None)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    require_backed(tx, credential)
    now = tx.now()
    tx.conn.execute(
        update(credentials)
        .where(credentials.c.name == credential)
        .values(held_at=None, held_by=None, hold_reason=None, updated_at=now)
    )
    tx.record(
        NewEvent(
            credential=credential,
            actor=actor,
            kind=EventKind.RESUMED,
            detail={
                "reason": reason,
                "held_at": None,
                "held_by": None,
                "hold_reason": None,
                "was_held_since": row["held_at"].isoformat(),
            },
            at=now,
        )
    )
    return credential_row(row)


def _unbacked(tx: Tx, active: Rotation) -> list[str]:
    """Why a rotation's own events back nothing of it (empty: they do, or they back
    an earlier state the engine can put back)."""
    row = tx.conn.execute(select(rotations).where(rotations.c.id == active.id)).mappings().one()
    problems, trusted = tx.audit.rotation_problems(tx.conn, row)
    return problems if problems and trusted is None else []


def _close_unbacked(
    tx: Tx, active: Rotation, problems: list[str], *, actor: str, reason: str
) -> Rotation:
    """Close a rotation no valid event backs (one inserted by hand): cancelled at once,
    nothing done at Adobe or AWS (its fields are not to be trusted, so no rollback
    either), the fence moved on, one operator-signed event saying so."""
    now = tx.now()
    tx.conn.execute(
        update(rotations)
        .where(rotations.c.id == active.id)
        .values(
            **_ended(State.CANCELLED, now),
            cancel_requested=True,
            last_error="closed by an operator: not backed by its audit events; nothing done",
        )
    )
    tx.record(
        NewEvent.of(
            active,
            State.CANCELLED,
            kind=EventKind.CANCELLED,
            actor=actor,
            detail={"reason": reason, "unbacked": True, "problems": problems[:10]},
            at=now,
        )
    )
    return rotation_rows.load(tx.conn, active.id)


def _flag(
    tx: Tx,
    active: Rotation,
    flag: str,
    *,
    actor: str,
    reason: str,
    extra: dict[str, Any] | None = None,
) -> Rotation | None:
    """Raise a request flag (a column the lease owner never writes) and audit it.

    None if the rotation finished in the meantime (the flag would land on a dead row).
    """
    result = tx.conn.execute(
        update(rotations)
        .where(rotations.c.id == active.id, rotations.c.finished_at.is_(None))
        .values({flag: True})
    )
    if result.rowcount != 1:
        return None
    tx.record(
        NewEvent.of(
            active,
            active.state,
            kind=flag,
            actor=actor,
            detail={"reason": reason, **(extra or {})},
            at=tx.now(),
        )
    )
    return rotation_rows.load(tx.conn, active.id)


def _ended(state: State, now: datetime) -> dict[str, Any]:
    """The columns of a rotation an operator's request ends now, outside any lease: its
    lease dropped and its fence moved on, so a worker that stalled cannot write to it."""
    return {
        "state": state.value,
        "finished_at": now,
        "state_since": now,
        "resume_state": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "fence": rotations.c.fence + 1,
    }
