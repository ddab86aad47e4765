"""What every store operation stands on: one transaction per change, the one clock, the
audit event appended in that transaction (I6), and reading and inserting rotation rows."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, or_, select

from rotator.adapters.db import outbox
from rotator.adapters.db.audit import AuditLog
from rotator.adapters.db.clock import db_now
from rotator.adapters.db.rows import to_rotation
from rotator.adapters.db.tables import rotations
from rotator.audit.chain import Checkpoint
from rotator.domain.errors import InvariantError, RequestRefused
from rotator.domain.model import Rotation, State, Trigger

# Entering one of these is an outcome: its event's checkpoint is published on commit.
_OUTCOMES = frozenset(s.value for s in State if s.terminal or s is State.NEEDS_ATTENTION)
_OUTCOME_CHECKPOINT = "rotator_audit_checkpoint"
# When this transaction took the audit chain's head row (monotonic seconds): its hold time,
# from the lock to commit or rollback, is measured (rotator_audit_chain_hold_seconds).
_CHAIN_LOCKED = "rotator_chain_locked_at"
# How many times one step's save is tried when a lock or statement timeout cut it short.
SAVE_ATTEMPTS = 3


def timed_out(exc: BaseException) -> bool:
    """A wait the bounds ended ([database] lock_timeout / statement_timeout, SQLite's busy
    timeout): the transaction rolled back whole, so trying it again is safe."""
    from sqlalchemy.exc import OperationalError

    if not isinstance(exc, OperationalError):
        return False
    code = getattr(exc.orig, "sqlstate", None)
    if code in ("55P03", "57014", "40P01", "40001"):  # lock / statement timeout, deadlock
        return True
    return "database is locked" in str(exc.orig)


class StoreCore:
    def __init__(
        self,
        engine: Engine,
        *,
        now: Any = None,
        receivers: Sequence[outbox.Receiver] = (),
        audit: AuditLog | None = None,
    ) -> None:
        self.engine = engine
        self.audit = audit or AuditLog()  # keyed chain, verified identity, checkpoints
        self._now = now or (lambda: datetime.now(UTC))
        self._pg = engine.dialect.name == "postgresql"
        self.receivers = tuple(receivers)  # webhooks owed a notice of each event (outbox)
        # Told how long each transaction held the audit chain's head (the daemon's metrics).
        self.chain_hold_observer: Any = None

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One transaction; an outcome's audit checkpoint is published once it committed."""
        info: dict[Any, Any] = {}  # the connection's own, kept: it is closed on the way out
        try:
            with self.engine.begin() as conn:
                info = conn.info
                yield conn
        except BaseException:
            info.pop(_OUTCOME_CHECKPOINT, None)
            self._chain_released(info)
            raise
        self._chain_released(info)
        checkpoint = info.pop(_OUTCOME_CHECKPOINT, None)
        if checkpoint is not None:
            self.audit.publish(checkpoint)  # the head leaves the database

    def _chain_released(self, info: dict[Any, Any]) -> None:
        locked = info.pop(_CHAIN_LOCKED, None)
        if locked is not None and self.chain_hold_observer is not None:
            self.chain_hold_observer(time.monotonic() - locked)

    def _db_now(self, conn: Connection) -> datetime:
        """PostgreSQL's clock where replicas meet; the host clock for one-host SQLite."""
        return db_now(conn, self._now)

    def now(self) -> datetime:
        """The one clock every comparison with a stored time uses (I10): the engine's too."""
        if not self._pg:  # no transaction: on SQLite it would take the write lock for nothing
            now = self._now()
            if not isinstance(now, datetime):
                raise InvariantError(f"the clock gave {type(now).__name__}")
            return now
        with self._tx() as conn:
            return self._db_now(conn)

    def _require_backed(
        self, conn: Connection, credential: str, rotation_id: int | None = None
    ) -> None:
        """Before a write whose event would snapshot these rows: refuse (RequestRefused,
        nothing written) when the credential row, or the rotation row, does not agree
        with its newest valid signed event. Otherwise rotator's own signed event would
        copy a forged field into a valid record. Only with a public keyring: without one
        nothing is signed, and the claim's own check is all there is."""
        if not self.audit.keyring().signed:
            return
        problems, _ = self.audit.credential_problems(conn, credential)
        if rotation_id is not None:
            row = conn.execute(select(rotations).where(rotations.c.id == rotation_id))
            found = row.mappings().first()
            if found is not None:
                problems += self.audit.rotation_problems(conn, found)[0]
        if problems:
            raise RequestRefused(
                f"{problems[0]}; refused: the rows are not backed by their signed audit "
                "events (run `rotator audit verify`)"
            )

    def _append(
        self,
        conn: Connection,
        *,
        rotation_id: int | None,
        credential: str,
        actor: str,
        kind: str,
        from_state: str | None,
        to_state: str | None,
        detail: dict[str, Any],
        at: datetime,
    ) -> Checkpoint:
        """Append the event recording a change made just before, in the same transaction
        (I6); the event snapshots the rows' audited fields as they are now."""
        conn.info.setdefault(_CHAIN_LOCKED, time.monotonic())  # the head row is locked next
        event_id, checkpoint = self.audit.append(
            conn,
            rotation_id=rotation_id,
            credential=credential,
            actor=actor,
            kind=kind,
            from_state=from_state,
            to_state=to_state,
            detail=detail,
            at=at,
        )
        outbox.enqueue(
            conn,
            self.receivers,
            event_id=event_id,
            rotation_id=rotation_id,
            credential=credential,
            kind=kind,
            from_state=from_state,
            to_state=to_state,
            actor=actor,
            at=at,
        )
        if to_state in _OUTCOMES and to_state != from_state:
            conn.info[_OUTCOME_CHECKPOINT] = checkpoint
        return checkpoint

    def _load(self, conn: Connection, rotation_id: int) -> Rotation:
        row = conn.execute(select(rotations).where(rotations.c.id == rotation_id)).mappings().one()
        return to_rotation(row)

    def _active(self, conn: Connection, credential: str, *, lock: bool = False) -> Rotation | None:
        """The credential's unfinished rotation. `lock`: hold its row until commit, so a
        request written next records the state the row has then, not one a worker's save
        committed over meanwhile (PostgreSQL; SQLite's writers are serial anyway)."""
        query = select(rotations).where(
            rotations.c.credential == credential, rotations.c.finished_at.is_(None)
        )
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        return to_rotation(row) if row else None

    def _insert(
        self,
        conn: Connection,
        credential: str,
        trigger: Trigger,
        *,
        actor: str,
        reason: str,
        detail: dict[str, Any],
    ) -> Rotation:
        """A new planned rotation and its `started` event; the unique index refuses a second
        unfinished one (I3) with an IntegrityError."""
        now = self._db_now(conn)
        rotation_id = conn.execute(
            insert(rotations)
            .values(
                credential=credential,
                trigger=trigger.value,
                state=State.PLANNED.value,
                actor=actor,
                reason=reason,
                known_uuids=[],
                detail=detail,
                created_at=now,
                state_since=now,
                next_attempt_at=now,
            )
            .returning(rotations.c.id)
        ).scalar_one()
        self._append(
            conn,
            rotation_id=rotation_id,
            credential=credential,
            actor=actor,
            kind="started",
            from_state=None,
            to_state=State.PLANNED.value,
            detail={"trigger": trigger.value, "reason": reason, **detail},
            at=now,
        )
        return self._load(conn, rotation_id)

    def _insert_emergency_after(
        self, conn: Connection, ended: Rotation, *, actor: str, reason: str
    ) -> Rotation:
        """The emergency rotation that follows `ended` (abandoned for it, or finished while
        it was requested), told what it may rely on from `ended` (I9): the AWS version that
        rotation wrote itself and the Adobe uuid inside it. While AWSCURRENT is on that
        version it holds that uuid; while it is not, that uuid is a leftover to delete."""
        inherits = {}
        if ended.new_uuid and ended.request_token:
            inherits = {
                "inherits": {
                    "rotation_id": ended.id,
                    "uuid": ended.new_uuid,
                    "version_id": ended.request_token,
                }
            }
        return self._insert(
            conn,
            ended.credential,
            Trigger.EMERGENCY,
            actor=actor,
            reason=reason,
            detail={
                "follows": ended.id,
                "follows_created_at": ended.created_at.isoformat(),
                **inherits,
            },
        )


def free(now: datetime) -> Any:
    """No live lease. A lease held by anyone, this process included, is not free: worker
    threads share one owner id, and two of them must never drive the same rotation."""
    return or_(rotations.c.lease_expires_at.is_(None), rotations.c.lease_expires_at < now)
