"""Operator requests: an emergency nothing can block, a cancel that puts the credential on
hold, and the resume that lifts it. Requests are flags the lease owner never writes, so a
worker's save cannot wipe out a request that arrived while it was mid-step."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from rotator.adapters.db.core import StoreCore, free
from rotator.adapters.db.rows import CredentialRow, credential_row
from rotator.adapters.db.tables import credentials, rotations
from rotator.domain import machine
from rotator.domain.errors import RequestRefused
from rotator.domain.model import Rotation, State, Trigger


class OperatorRequests(StoreCore):
    def request_emergency(self, credential: str, *, actor: str, reason: str) -> Rotation:
        """Start an emergency rotation now, abandoning the unfinished normal one if need be.

        Nothing may block an emergency: a normal rotation in its way is ABANDONED where it
        stands (no rollback, no retirement, which could need a person), with an audit event
        naming what it leaves behind, and the emergency starts in the same transaction. If a
        worker holds that rotation's lease (it is mid-step), the rotation is flagged instead:
        the holder abandons it at its step boundary, or whoever claims it after the holder's
        lease ran out does; that save starts the emergency (see `Leases.save`). Returns the
        emergency rotation, or the flagged rotation when the emergency waits for its holder.
        """
        for _ in range(3):
            try:
                with self._tx() as conn:
                    now = self._db_now(conn)
                    active = self._active(conn, credential, lock=True)
                    if active is not None and active.emergency:
                        return active
                    self._require_backed(conn, credential, active.id if active else None)
                    if active is not None and self._abandon(
                        conn, active, now, actor=actor, reason=reason
                    ):
                        return self._insert_emergency_after(
                            conn, active, actor=actor, reason=reason
                        )
                    if active is not None and active.emergency_requested:
                        return active
                    if active is not None:
                        flagged = self._flag(
                            conn, active, "emergency_requested", actor=actor, reason=reason
                        )
                        if flagged is not None:
                            return flagged
                        continue  # it finished meanwhile: look again
                    return self._insert(
                        conn, credential, Trigger.EMERGENCY, actor=actor, reason=reason, detail={}
                    )
            except IntegrityError:
                continue  # a follow-up emergency was inserted meanwhile: look again
        raise RuntimeError(f"could not request an emergency rotation of {credential!r}")

    def _abandon(
        self, conn: Connection, active: Rotation, now: datetime, *, actor: str, reason: str
    ) -> bool:
        """End `active` as ABANDONED if no worker holds its lease; False if one does.

        The fence moves on, so a worker that stalled past its lease cannot write to it.
        """
        result = conn.execute(
            update(rotations)
            .where(rotations.c.id == active.id, rotations.c.finished_at.is_(None), free(now))
            .values(
                state=State.ABANDONED.value,
                finished_at=now,
                state_since=now,
                resume_state=None,
                emergency_requested=True,
                lease_owner=None,
                lease_expires_at=None,
                fence=rotations.c.fence + 1,
            )
        )
        if result.rowcount != 1:
            return False
        self._append(
            conn,
            rotation_id=active.id,
            credential=active.credential,
            actor=actor,
            kind="abandoned",
            from_state=active.state.value,
            to_state=State.ABANDONED.value,
            detail={"reason": reason, "for": "emergency", "leaves": machine.leftovers(active)},
            at=now,
        )
        return True

    def request_cancel(self, credential: str, *, actor: str, reason: str) -> Rotation | None:
        """Flag the unfinished rotation to be cancelled and put the credential on hold.

        The hold (no scheduled rotation starts until `resume`) is written with the flag,
        and the one audit event carries the hold's fields, so the credential row can be
        replayed from the events. An emergency past its promotion is refused: finishing it
        is what deletes the leaked secret.
        """
        try:
            with self._tx() as conn:
                active = self._active(conn, credential, lock=True)
                if active is None:
                    return None
                unbacked = self._unbacked(conn, active)
                if unbacked:
                    return self._close_unbacked(conn, active, unbacked, actor=actor, reason=reason)
                self._require_backed(conn, credential, active.id)
                if active.emergency and machine.past_promotion(active):
                    raise RequestRefused(
                        f"rotation {active.id} of {credential} is an emergency rotation past "
                        f"its promotion ({active.state.value}): it cannot be cancelled, because "
                        f"finishing it is what deletes the leaked secret"
                    )
                now = self._db_now(conn)
                hold = {"held_at": now, "held_by": actor, "hold_reason": reason}
                # The hold first: the event appended next records the credential row as it
                # now stands (the audit replay compares the two).
                conn.execute(
                    update(credentials)
                    .where(credentials.c.name == credential)
                    .values(**hold, updated_at=now)
                )
                flagged = self._flag(
                    conn,
                    active,
                    "cancel_requested",
                    actor=actor,
                    reason=reason,
                    extra={**hold, "held_at": now.isoformat()},
                )
                if flagged is None:
                    raise _NothingToCancel  # it finished meanwhile: no hold without its event
                return flagged
        except _NothingToCancel:
            return None

    def resume(self, credential: str, *, actor: str, reason: str) -> CredentialRow | None:
        """Lift a credential's hold; None if it was not on hold. Audited (kind `resumed`)."""
        with self._tx() as conn:
            row = (
                conn.execute(
                    select(credentials).where(
                        credentials.c.name == credential, credentials.c.held_at.is_not(None)
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            self._require_backed(conn, credential)
            now = self._db_now(conn)
            conn.execute(
                update(credentials)
                .where(credentials.c.name == credential)
                .values(held_at=None, held_by=None, hold_reason=None, updated_at=now)
            )
            self._append(
                conn,
                rotation_id=None,
                credential=credential,
                actor=actor,
                kind="resumed",
                from_state=None,
                to_state=None,
                detail={
                    "reason": reason,
                    "held_at": None,
                    "held_by": None,
                    "hold_reason": None,
                    "was_held_since": row["held_at"].isoformat(),
                },
                at=now,
            )
        return credential_row(row)

    def _unbacked(self, conn: Connection, active: Rotation) -> list[str]:
        """Why a rotation's own events back nothing of it (empty: they do, or they back
        an earlier state the engine can put back)."""
        row = conn.execute(select(rotations).where(rotations.c.id == active.id)).mappings().one()
        problems, trusted = self.audit.rotation_problems(conn, row)
        return problems if problems and trusted is None else []

    def _close_unbacked(
        self, conn: Connection, active: Rotation, problems: list[str], *, actor: str, reason: str
    ) -> Rotation:
        """Close a rotation no valid event backs (one inserted by hand): cancelled at once,
        nothing done at Adobe or AWS (its fields are not to be trusted, so no rollback
        either), the fence moved on, one operator-signed event saying so."""
        now = self._db_now(conn)
        conn.execute(
            update(rotations)
            .where(rotations.c.id == active.id)
            .values(
                state=State.CANCELLED.value,
                finished_at=now,
                state_since=now,
                resume_state=None,
                cancel_requested=True,
                last_error="closed by an operator: not backed by its audit events; nothing done",
                lease_owner=None,
                lease_expires_at=None,
                fence=rotations.c.fence + 1,
            )
        )
        self._append(
            conn,
            rotation_id=active.id,
            credential=active.credential,
            actor=actor,
            kind="cancelled",
            from_state=active.state.value,
            to_state=State.CANCELLED.value,
            detail={"reason": reason, "unbacked": True, "problems": problems[:10]},
            at=now,
        )
        return self._load(conn, active.id)

    def _flag(
        self,
        conn: Connection,
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
        result = conn.execute(
            update(rotations)
            .where(rotations.c.id == active.id, rotations.c.finished_at.is_(None))
            .values({flag: True})
        )
        if result.rowcount != 1:
            return None
        self._append(
            conn,
            rotation_id=active.id,
            credential=active.credential,
            actor=actor,
            kind=flag,
            from_state=active.state.value,
            to_state=active.state.value,
            detail={"reason": reason, **(extra or {})},
            at=self._db_now(conn),
        )
        return self._load(conn, active.id)


class _NothingToCancel(Exception):
    """Rolls a cancel's transaction back (hold included) when its rotation ended meanwhile."""
