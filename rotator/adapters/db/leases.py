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

import structlog
from sqlalchemy import Connection, and_, case, func, or_, select, update

from rotator import redaction
from rotator.adapters.db.core import SAVE_ATTEMPTS, StoreCore, free, timed_out
from rotator.adapters.db.rows import owned_columns, to_rotation
from rotator.adapters.db.tables import credentials, events, rotations
from rotator.domain.errors import LeaseLost
from rotator.domain.model import Rotation, State, Trigger
from rotator.ports import Claim

log = structlog.get_logger("rotator.engine")

log = structlog.get_logger("rotator.store")


@dataclass(frozen=True)
class LeaseInfo:
    owner: str | None
    expires_at: datetime | None


class Leases(StoreCore):
    def claim(
        self,
        owner: str,
        lease: timedelta,
        *,
        rotation_id: int | None = None,
        limit: int = 1,
        due_only: bool = True,
    ) -> list[Claim]:
        """Take the lease of due, unowned rotations (or of one given rotation), bumping fences."""
        with self._tx() as conn:
            now = self._db_now(conn)
            conditions = [rotations.c.finished_at.is_(None), free(now)]
            if due_only:
                conditions.append(_due(now))
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
            rows = (
                conn.execute(
                    update(rotations)
                    .where(rotations.c.id.in_(ids))
                    .values(
                        lease_owner=owner, lease_expires_at=now + lease, fence=rotations.c.fence + 1
                    )
                    .returning(rotations)
                )
                .mappings()
                .all()
            )
            # Act only on what a verified writer asked for (issue 27): a row its own events
            # do not back is refused here, before any step reads it.
            backed = [r for r in rows if self._backed(conn, r, now)]
        return [Claim(to_rotation(r), owner, r["fence"]) for r in backed]

    def _backed(self, conn: Connection, row: Any, now: datetime) -> bool:
        """True if the rotation row and its credential row agree with their newest valid
        events; else refuse the rotation (needs_attention, an alert) and return False."""
        problems, trusted = self.audit.rotation_problems(conn, row)
        cred_problems, cred_trusted = self.audit.credential_problems(conn, row["credential"])
        if not problems and not cred_problems:
            return True
        self._refuse(conn, row, problems + cred_problems, trusted, cred_trusted, now)
        return False

    def _refuse(
        self,
        conn: Connection,
        row: Any,
        problems: list[str],
        trusted: dict[str, Any] | None,
        cred_trusted: dict[str, Any] | None,
        now: datetime,
    ) -> None:
        """Refuse an unbacked rotation: put back what its newest valid events recorded
        (when there is such a record), hold it in needs_attention for a person, and append
        one `refused` event, whose needs_attention notice is the alert. Nothing is acted
        on: the claim that found it returns without it."""
        log.error(
            "rotation refused: not backed by its signed audit events",
            rotation_id=row["id"],
            credential=row["credential"],
            problems=problems,
        )
        wait = {
            "lease_owner": None,
            "lease_expires_at": None,
            "next_attempt_at": now + REFUSED_RECHECK,
        }
        newest = conn.execute(
            select(events.c.kind)
            .where(events.c.rotation_id == row["id"])
            .order_by(events.c.seq.desc())
            .limit(1)
        ).scalar()
        if trusted is None and newest == "refused":
            # Refused before and still unbacked: nothing to put back; one alert is enough.
            conn.execute(update(rotations).where(rotations.c.id == row["id"]).values(**wait))
            return
        values: dict[str, Any] = dict(wait)
        if trusted is not None:
            values.update(_columns(trusted, rotations.c))
        state = values.get("state", row["state"])
        if not State(state).terminal:
            values["resume_state"] = (
                values.get("resume_state", row["resume_state"])
                if state == State.NEEDS_ATTENTION.value
                else (state if trusted is not None else None)
            )
            values["state"] = State.NEEDS_ATTENTION.value
        values["last_error"] = redaction.redact(f"refused: {problems[0]}")[:500]
        if values["state"] != row["state"]:
            values["state_since"] = now
        conn.execute(update(rotations).where(rotations.c.id == row["id"]).values(**values))
        if cred_trusted is not None:
            conn.execute(
                update(credentials)
                .where(credentials.c.name == row["credential"])
                .values(**_columns(cred_trusted, credentials.c), updated_at=now)
            )
        self._append(
            conn,
            rotation_id=row["id"],
            credential=row["credential"],
            actor="rotator",
            kind="refused",
            from_state=row["state"],
            to_state=values["state"],
            detail={"problems": problems[:10], "restored": trusted is not None},
            at=now,
        )

    def refuse_unbacked_credential(self, name: str) -> list[str]:
        """Before a scheduled start: the credential row (its hold above all) must agree with
        its newest valid event. If not, put back what that event recorded, append one
        `refused` event (a needs_attention notice: the alert) and return the problems."""
        with self._tx() as conn:
            problems, trusted = self.audit.credential_problems(conn, name)
            if not problems:
                return []
            now = self._db_now(conn)
            log.error(
                "credential refused: not backed by its signed audit events",
                credential=name,
                problems=problems,
            )
            if trusted is not None:
                conn.execute(
                    update(credentials)
                    .where(credentials.c.name == name)
                    .values(**_columns(trusted, credentials.c), updated_at=now)
                )
            self._append(
                conn,
                rotation_id=None,
                credential=name,
                actor="rotator",
                kind="refused",
                from_state=None,
                to_state=State.NEEDS_ATTENTION.value,
                detail={"problems": problems[:10], "restored": trusted is not None},
                at=now,
            )
        return problems

    def claimable(self) -> int:
        """How many rotations a claim would take now (cheap: the daemon asks every second
        or two, so a rotation whose holder died is taken over soon after its lease ends)."""
        with self._tx() as conn:
            now = self._db_now(conn)
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(rotations)
                    .where(rotations.c.finished_at.is_(None), free(now), _due(now))
                ).scalar_one()
            )

    def lease(self, rotation_id: int) -> LeaseInfo:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(rotations.c.lease_owner, rotations.c.lease_expires_at).where(
                    rotations.c.id == rotation_id
                )
            ).one()
        return LeaseInfo(owner=row[0], expires_at=row[1])

    def renew(self, claim: Claim, lease: timedelta) -> None:
        with self._tx() as conn:
            now = self._db_now(conn)
            result = conn.execute(
                update(rotations).where(*_guard(claim)).values(lease_expires_at=now + lease)
            )
            if result.rowcount != 1:
                raise LeaseLost(f"rotation {claim.rotation.id}: lease lost to another worker")

    def release(self, claim: Claim) -> None:
        with self._tx() as conn:
            conn.execute(
                update(rotations)
                .where(*_guard(claim))
                .values(lease_owner=None, lease_expires_at=None)
            )

    def save(
        self,
        claim: Claim,
        new: Rotation,
        *,
        kind: str,
        actor: str,
        detail: dict[str, Any] | None = None,
        keep_lease: timedelta | None = None,
        credential_update: dict[str, Any] | None = None,
    ) -> Claim:
        """Write `new` under the lease and append its audit event, in one transaction.

        When `new` ends a rotation that an emergency was requested for, the emergency
        rotation starts in the same transaction, so the request is never lost in between.
        A lock or statement timeout (another session holding a row this save needs, such
        as the audit chain's head) rolls it back whole; it is tried again, at most
        SAVE_ATTEMPTS times, then the error ends the step (its work is retried later).
        """
        for attempt in range(1, SAVE_ATTEMPTS + 1):
            try:
                return self._save_once(
                    claim, new, kind, actor, detail, keep_lease, credential_update
                )
            except Exception as exc:
                if attempt == SAVE_ATTEMPTS or not timed_out(exc):
                    raise
                log.warning(
                    "save cut short by a database timeout; trying again",
                    rotation_id=claim.rotation.id,
                    attempt=attempt,
                    error=str(exc).splitlines()[0][:200],
                )
        raise AssertionError("unreachable")

    def _save_once(
        self,
        claim: Claim,
        new: Rotation,
        kind: str,
        actor: str,
        detail: dict[str, Any] | None,
        keep_lease: timedelta | None,
        credential_update: dict[str, Any] | None,
    ) -> Claim:
        old = claim.rotation
        values = owned_columns(new)
        with self._tx() as conn:
            now = self._db_now(conn)
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
            if credential_update:  # before the event, which records the row after it
                conn.execute(
                    update(credentials)
                    .where(credentials.c.name == old.credential)
                    .values(**credential_update, updated_at=now)
                )
            self._append(
                conn,
                rotation_id=old.id,
                credential=old.credential,
                actor=actor,
                kind=kind,
                from_state=old.state.value,
                to_state=new.state.value,
                detail=detail or {},
                at=now,
            )
            emergency_waiting = result[0] and result[1] != Trigger.EMERGENCY.value
            if new.state.terminal and emergency_waiting:
                by, reason = self._last_request(conn, old.id, "emergency_requested")
                self._insert_emergency_after(conn, new, actor=by, reason=reason)
            saved = self._load(conn, old.id)
        return Claim(saved, claim.owner, claim.fence)

    def _last_request(self, conn: Connection, rotation_id: int, kind: str) -> tuple[str, str]:
        """(actor, reason) of the newest request of `kind` on a rotation."""
        row = conn.execute(
            select(events.c.actor, events.c.detail)
            .where(events.c.rotation_id == rotation_id, events.c.kind == kind)
            .order_by(events.c.id.desc())
            .limit(1)
        ).first()
        return (row[0], str(row[1].get("reason", ""))) if row else ("rotator", "")


# Emergencies first, a rotation flagged for one included, whatever its next attempt time:
# a leaked secret must not wait behind routine work.
_URGENT_FIRST = case(
    (or_(rotations.c.trigger == Trigger.EMERGENCY.value, rotations.c.emergency_requested), 0),
    else_=1,
)


REFUSED_RECHECK = timedelta(hours=1)  # an unbacked rotation is looked at again, quietly
_TIMES = frozenset(
    {"created_at", "promoted_at", "finished_at", "secret_created_at", "last_rotated_at", "held_at"}
)


def _columns(snapshot: dict[str, Any], columns: Any) -> dict[str, Any]:
    """A snapshot recorded in an event, as column values to write back."""
    values: dict[str, Any] = {}
    for name, value in snapshot.items():
        if name not in columns:
            continue  # "detail.inherits" and the like: carried inside `detail`
        if name in _TIMES and isinstance(value, str):
            value = datetime.fromisoformat(value)
        values[name] = value
    return values


def _due(now: datetime) -> Any:
    """Work to do now: its next attempt has come, or an operator asked for something."""
    return or_(
        rotations.c.next_attempt_at.is_(None),
        rotations.c.next_attempt_at <= now,
        rotations.c.emergency_requested,
        rotations.c.cancel_requested,
    )


def _guard(claim: Claim) -> Sequence[Any]:
    return (
        rotations.c.id == claim.rotation.id,
        rotations.c.lease_owner == claim.owner,
        rotations.c.fence == claim.fence,
    )
