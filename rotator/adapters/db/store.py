"""The state store: rotations under fenced leases, credentials, and the hash-chained audit log.

Every state change is one transaction that does the fenced UPDATE and appends exactly one
audit event (I6). A worker owns a rotation through `lease_owner` + `fence`: a claim bumps the
fence, every write is guarded by `WHERE id = :id AND lease_owner = :me AND fence = :fence`,
and zero rows updated means the lease was taken over, so the worker stops (LeaseLost).
Lease expiry uses the database's clock on PostgreSQL, so replicas' clocks need not agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from rotator import redaction
from rotator.adapters.db import outbox, tables
from rotator.adapters.db.audit import READ_SNAPSHOT, AuditEvent, AuditLog
from rotator.adapters.db.tables import credentials, events, rotations
from rotator.audit import GENESIS, Checkpoint, Verification
from rotator.audit import legacy_hash as event_hash
from rotator.domain import machine
from rotator.domain.errors import ConfigError, LeaseLost, RequestRefused
from rotator.domain.model import Evidence, Rotation, State, Trigger

__all__ = ["GENESIS", "AuditEvent", "event_hash"]  # the chain's names, now in rotator.audit


@dataclass(frozen=True)
class Claim:
    """Proof of ownership of one rotation: present it with every write."""

    rotation: Rotation
    owner: str
    fence: int


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


@dataclass(frozen=True)
class LeaseInfo:
    owner: str | None
    expires_at: datetime | None


class AlreadyActive(Exception):
    def __init__(self, rotation: Rotation) -> None:
        super().__init__(f"credential {rotation.credential!r} already has rotation {rotation.id}")
        self.rotation = rotation


# Columns the lease owner writes. Request flags are written by others and never by the owner,
# so an owner's save cannot wipe out an emergency or cancel request that arrived meanwhile.
_OWNED = (
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


def make_engine(url: str) -> Engine:
    """An engine with SQLite set up for several processes on one file (WAL, BEGIN IMMEDIATE)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, poolclass=NullPool)
            _sqlite_setup(engine)
            return engine
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=30)
        if engine.dialect.name == "postgresql":
            tables.describe_for_postgresql()
        return engine
    except Exception as exc:  # bad URL, missing driver: one clear line
        raise ConfigError(f"database.url: cannot use {_safe_url(url)}: {exc}") from None


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        _enable_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_SNAPSHOT):
            conn.exec_driver_sql("BEGIN DEFERRED")  # WAL: a snapshot, writers carry on
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrades


def _enable_wal(cursor: Any, attempts: int = 50) -> None:
    """Switch a SQLite file to WAL once. The switch needs a moment with no writer, and
    SQLite answers "database is locked" at once instead of honouring busy_timeout, so
    several processes opening a new file together retry briefly."""
    import sqlite3
    import time

    for attempt in range(attempts):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))


# Entering one of these is an outcome: its event's checkpoint is published on commit.
_OUTCOMES = frozenset(s.value for s in State if s.terminal or s is State.NEEDS_ATTENTION)
_OUTCOME_CHECKPOINT = "rotator_audit_checkpoint"


class Store:
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

    # --- plumbing ------------------------------------------------------------------------

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
            raise
        checkpoint = info.pop(_OUTCOME_CHECKPOINT, None)
        if checkpoint is not None:
            self.audit.publish(checkpoint)  # the head leaves the database

    def _db_now(self, conn: Connection) -> datetime:
        """PostgreSQL's clock where replicas meet; the host clock for one-host SQLite."""
        if self._pg:
            value = conn.execute(select(func.now())).scalar_one()
            assert isinstance(value, datetime)
            return value.astimezone(UTC)
        now = self._now()
        assert isinstance(now, datetime)
        return now

    def now(self) -> datetime:
        """The one clock every comparison with a stored time uses (I10): the engine's too."""
        if not self._pg:  # no transaction: on SQLite it would take the write lock for nothing
            now = self._now()
            assert isinstance(now, datetime)
            return now
        with self._tx() as conn:
            return self._db_now(conn)

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

    # --- credentials ---------------------------------------------------------------------

    def sync_credentials(self, configured: dict[str, str]) -> None:
        """Make sure every configured credential has a row; record config changes.

        Replicas starting together race to insert the same new rows: the loser looks again
        (a duplicate key used to end its start with an IntegrityError).
        """
        for attempt in range(3):
            try:
                return self._sync_credentials(configured)
            except IntegrityError:
                if attempt == 2:
                    raise

    def _sync_credentials(self, configured: dict[str, str]) -> None:
        with self._tx() as conn:
            now = self._db_now(conn)
            existing = dict(
                conn.execute(select(credentials.c.name, credentials.c.config_hash)).all()
            )
            for name, digest in configured.items():
                if name not in existing:
                    conn.execute(
                        insert(credentials).values(name=name, config_hash=digest, updated_at=now)
                    )
                elif existing[name] != digest:
                    conn.execute(
                        update(credentials)
                        .where(credentials.c.name == name)
                        .values(config_hash=digest, updated_at=now)
                    )

    def credential_rows(self) -> dict[str, CredentialRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(credentials)).mappings().all()
        return {
            r["name"]: CredentialRow(**{k: r[k] for k in CredentialRow.__dataclass_fields__})
            for r in rows
        }

    def update_credential(self, name: str, **values: Any) -> None:
        with self._tx() as conn:
            before = self._audited_credential(conn, name)
            values["updated_at"] = self._db_now(conn)
            conn.execute(update(credentials).where(credentials.c.name == name).values(**values))
            self._audit_survey(conn, name, before, kind="credential_updated")

    def adopt(self, name: str, uuid: str, version: str, actor: str) -> None:
        """An operator tells rotator which Adobe uuid AWSCURRENT (at `version`) holds."""
        with self._tx() as conn:
            now = self._db_now(conn)
            conn.execute(
                update(credentials)
                .where(credentials.c.name == name)
                .values(current_uuid=uuid, current_version=version, updated_at=now)
            )
            self._append(
                conn,
                rotation_id=None,
                credential=name,
                actor=actor,
                kind="adopted",
                from_state=None,
                to_state=None,
                detail={"uuid": uuid, "aws_version": version},
                at=now,
            )

    def record_survey(self, name: str, *, seen_rotated_at: datetime | None, **values: Any) -> bool:
        """Write what a survey learnt, unless a rotation started or finished meanwhile
        (its promotion wrote fresher facts than the survey read)."""
        with self._tx() as conn:
            before = self._audited_credential(conn, name)
            busy = (
                select(rotations.c.id)
                .where(rotations.c.credential == name, rotations.c.finished_at.is_(None))
                .exists()
            )
            result = conn.execute(
                update(credentials)
                .where(
                    credentials.c.name == name,
                    credentials.c.last_rotated_at.is_not_distinct_from(seen_rotated_at),
                    ~busy,
                )
                .values(**values, updated_at=self._db_now(conn))
            )
            if result.rowcount:
                self._audit_survey(conn, name, before)
            return bool(result.rowcount)

    def _audit_survey(
        self, conn: Connection, name: str, before: dict[str, Any], kind: str = "surveyed"
    ) -> None:
        """A write that changed an audited field is an audited change (replay sees it)."""
        after = self._audited_credential(conn, name)
        changed = {k: v for k, v in after.items() if before.get(k) != v}
        if changed:
            self._append(
                conn,
                rotation_id=None,
                credential=name,
                actor="rotator",
                kind=kind,
                from_state=None,
                to_state=None,
                detail={"changed": changed},
                at=self._db_now(conn),
            )

    @staticmethod
    def _audited_credential(conn: Connection, name: str) -> dict[str, Any]:
        from rotator import audit

        row = conn.execute(select(credentials).where(credentials.c.name == name)).mappings().first()
        return audit.snapshot(row, audit.CREDENTIAL_FIELDS) or {}

    # --- rotations -----------------------------------------------------------------------

    def start(
        self,
        credential: str,
        trigger: Trigger,
        *,
        actor: str,
        reason: str = "",
        detail: dict[str, Any] | None = None,
    ) -> Rotation:
        """Insert a planned rotation; the unique index refuses a second unfinished one (I3)."""
        try:
            with self._tx() as conn:
                return self._insert(
                    conn, credential, trigger, actor=actor, reason=reason, detail=detail or {}
                )
        except IntegrityError:
            active = self.active(credential)
            if active is None:
                raise
            raise AlreadyActive(active) from None

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

    def request_emergency(self, credential: str, *, actor: str, reason: str) -> Rotation:
        """Start an emergency rotation now, abandoning the unfinished normal one if need be.

        Nothing may block an emergency: a normal rotation in its way is ABANDONED where it
        stands (no rollback, no retirement, which could need a person), with an audit event
        naming what it leaves behind, and the emergency starts in the same transaction. If a
        worker holds that rotation's lease (it is mid-step), the rotation is flagged instead:
        the holder abandons it at its step boundary, or whoever claims it after the holder's
        lease ran out does; that save starts the emergency (see `save`). Returns the
        emergency rotation, or the flagged rotation when the emergency waits for its holder.
        """
        for _ in range(3):
            try:
                with self._tx() as conn:
                    now = self._db_now(conn)
                    active = self._active(conn, credential)
                    if active is not None and active.emergency:
                        return active
                    if active is not None and self._abandon(
                        conn, active, now, actor=actor, reason=reason
                    ):
                        return self._insert(
                            conn,
                            credential,
                            Trigger.EMERGENCY,
                            actor=actor,
                            reason=reason,
                            detail={"follows": active.id, **_inherited(active)},
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
            .where(rotations.c.id == active.id, rotations.c.finished_at.is_(None), _free(now))
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
                active = self._active(conn, credential)
                if active is None:
                    return None
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
        return CredentialRow(**{k: row[k] for k in CredentialRow.__dataclass_fields__})

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

    def _last_request(self, conn: Connection, rotation_id: int, kind: str) -> tuple[str, str]:
        """(actor, reason) of the newest request of `kind` on a rotation."""
        row = conn.execute(
            select(events.c.actor, events.c.detail)
            .where(events.c.rotation_id == rotation_id, events.c.kind == kind)
            .order_by(events.c.id.desc())
            .limit(1)
        ).first()
        return (row[0], str(row[1].get("reason", ""))) if row else ("rotator", "")

    def active(self, credential: str) -> Rotation | None:
        with self.engine.connect() as conn:
            return self._active(conn, credential)

    def _active(self, conn: Connection, credential: str) -> Rotation | None:
        row = (
            conn.execute(
                select(rotations).where(
                    rotations.c.credential == credential, rotations.c.finished_at.is_(None)
                )
            )
            .mappings()
            .first()
        )
        return _rotation(row) if row else None

    def get(self, rotation_id: int) -> Rotation:
        with self.engine.connect() as conn:
            return self._load(conn, rotation_id)

    def _load(self, conn: Connection, rotation_id: int) -> Rotation:
        row = conn.execute(select(rotations).where(rotations.c.id == rotation_id)).mappings().one()
        return _rotation(row)

    def lease(self, rotation_id: int) -> LeaseInfo:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(rotations.c.lease_owner, rotations.c.lease_expires_at).where(
                    rotations.c.id == rotation_id
                )
            ).one()
        return LeaseInfo(owner=row[0], expires_at=row[1])

    def unfinished(self) -> list[Rotation]:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(rotations)
                    .where(rotations.c.finished_at.is_(None))
                    .order_by(rotations.c.id)
                )
                .mappings()
                .all()
            )
        return [_rotation(r) for r in rows]

    def recent(self, credential: str | None = None, limit: int = 50) -> list[Rotation]:
        query = select(rotations).order_by(rotations.c.id.desc()).limit(limit)
        if credential:
            query = query.where(rotations.c.credential == credential)
        with self.engine.connect() as conn:
            return [_rotation(r) for r in conn.execute(query).mappings().all()]

    # --- leases --------------------------------------------------------------------------

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
            conditions = [rotations.c.finished_at.is_(None), _free(now)]
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
        return [Claim(_rotation(r), owner, r["fence"]) for r in rows]

    def claimable(self) -> int:
        """How many rotations a claim would take now (cheap: the daemon asks every second
        or two, so a rotation whose holder died is taken over soon after its lease ends)."""
        with self._tx() as conn:
            now = self._db_now(conn)
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(rotations)
                    .where(rotations.c.finished_at.is_(None), _free(now), _due(now))
                ).scalar_one()
            )

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
        """
        old = claim.rotation
        values = {c: _column_value(getattr(new, c)) for c in _OWNED}
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
                self._insert(
                    conn,
                    old.credential,
                    Trigger.EMERGENCY,
                    actor=by,
                    reason=reason,
                    detail={"follows": old.id, **_inherited(new)},
                )
            saved = self._load(conn, old.id)
        return Claim(saved, claim.owner, claim.fence)

    # --- audit ---------------------------------------------------------------------------

    def events(
        self,
        credential: str | None = None,
        limit: int | None = 100,
        rotation_id: int | None = None,
        ascending: bool = False,
    ) -> list[AuditEvent]:
        return self.audit.events(self.engine, credential, limit, rotation_id, ascending)

    def verify(self, checkpoint: Checkpoint | None = None, batch: int = 5000) -> Verification:
        """The chain, against `checkpoint` if given, and every row replayed from it."""
        return self.audit.verify(self.engine, checkpoint=checkpoint, batch=batch)

    def checkpoint(self) -> Checkpoint | None:
        """The chain head now (None before the first event)."""
        return self.audit.head(self.engine)

    def verify_chain(self, batch: int = 5000) -> tuple[int, str | None]:
        """(events verified, the first problem or None): `verify` in brief."""
        result = self.verify(batch=batch)
        return result.checked, (result.problems[0] if result.problems else None)


# Emergencies first, a rotation flagged for one included, whatever its next attempt time:
# a leaked secret must not wait behind routine work.
_URGENT_FIRST = case(
    (or_(rotations.c.trigger == Trigger.EMERGENCY.value, rotations.c.emergency_requested), 0),
    else_=1,
)


def _free(now: datetime) -> Any:
    """No live lease. A lease held by anyone, this process included, is not free: worker
    threads share one owner id, and two of them must never drive the same rotation."""
    return or_(rotations.c.lease_expires_at.is_(None), rotations.c.lease_expires_at < now)


def _due(now: datetime) -> Any:
    """Work to do now: its next attempt has come, or an operator asked for something."""
    return or_(
        rotations.c.next_attempt_at.is_(None),
        rotations.c.next_attempt_at <= now,
        rotations.c.emergency_requested,
        rotations.c.cancel_requested,
    )


class _NothingToCancel(Exception):
    """Rolls a cancel's transaction back (hold included) when its rotation ended meanwhile."""


def _inherited(abandoned: Rotation) -> dict[str, Any]:
    """What the emergency after `abandoned` may rely on (I9): the AWS version that rotation
    wrote itself and the Adobe uuid inside it. While AWSCURRENT is on that version it holds
    that uuid; while it is not, that uuid is a leftover the emergency may delete."""
    if not (abandoned.new_uuid and abandoned.request_token):
        return {}
    return {
        "inherits": {
            "rotation_id": abandoned.id,
            "uuid": abandoned.new_uuid,
            "version_id": abandoned.request_token,
        }
    }


def _guard(claim: Claim) -> Sequence[Any]:
    return (
        rotations.c.id == claim.rotation.id,
        rotations.c.lease_owner == claim.owner,
        rotations.c.fence == claim.fence,
    )


def _column_value(value: Any) -> Any:
    if isinstance(value, State | Trigger):
        return value.value
    if isinstance(value, Evidence):
        return value.as_dict()
    if isinstance(value, tuple):
        return list(value)
    return value


def _rotation(row: Any) -> Rotation:
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
        evidence=_evidence(evidence) if evidence else None,
        emergency_requested=bool(row["emergency_requested"]),
        cancel_requested=bool(row["cancel_requested"]),
        detail=dict(row["detail"] or {}),
    )


def _evidence(data: dict[str, Any]) -> Evidence:
    """The grow-only record (domain/evidence.py); rows from 0.1 hold its first three keys."""
    return Evidence.from_dict(data)
