"""The read service's queries: what `rotator.observe.insights` asks of the state database.

Reads only, on the database's clock (PostgreSQL's where replicas meet, the host's on
SQLite), so every replica and the CLI read the same truth. The judgments (due, drain
deadline, what a tick does) are the domain's, made by `rotator.observe.insights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select

from rotator.adapters.db.audit import AuditEvent, AuditLog
from rotator.adapters.db.outbox import Backlog, Outbox
from rotator.adapters.db.rows import credential_row, to_rotation
from rotator.adapters.db.tables import credentials, rotations
from rotator.adapters.db.tx import db_now
from rotator.audit.chain import Checkpoint
from rotator.audit.verify import Verification
from rotator.domain.outlook import Facts
from rotator.ports import Snapshot


class InsightsDb:
    """The `InsightsReader` port over SQL (`audit`: the keys `verify` checks links with)."""

    def __init__(self, engine: Engine, audit: AuditLog | None = None) -> None:
        self.engine = engine
        self.audit = audit or AuditLog()

    def snapshot(self) -> Snapshot:
        """Unfinished rotations first, then the credential rows: a rotation that finishes
        between the two reads has already written its fresh facts (at promotion), so its
        credential cannot look due again (the daemon's tick relies on it)."""
        with self.engine.connect() as conn:
            now = db_now(conn)
            unfinished, owners = {}, {}
            query = select(rotations).where(rotations.c.finished_at.is_(None))
            for r in conn.execute(query.order_by(rotations.c.id)).mappings().all():
                unfinished[r["credential"]] = to_rotation(r)
                expires = r["lease_expires_at"]
                if expires is not None and _aware(expires) > now and r["lease_owner"]:
                    owners[r["credential"]] = str(r["lease_owner"])
            rows = conn.execute(select(credentials).order_by(credentials.c.name))
            facts = {r["name"]: _facts(r) for r in rows.mappings().all()}
        return Snapshot(now, facts, unfinished, owners)

    def ended(self) -> dict[tuple[str, str], int]:
        """(end state, trigger) -> rotations that ever reached it."""
        query = (
            select(rotations.c.state, rotations.c.trigger, func.count())
            .where(rotations.c.finished_at.is_not(None))
            .group_by(rotations.c.state, rotations.c.trigger)
        )
        with self.engine.connect() as conn:
            return {(state, trigger): int(n) for state, trigger, n in conn.execute(query).all()}

    def backlog(self) -> Backlog:
        return Outbox(self.engine).backlog()

    def events(self) -> Sequence[AuditEvent]:
        """The whole audit trail, oldest first."""
        return AuditLog.events(self.engine, limit=None, ascending=True)

    def verify(self, checkpoint: Checkpoint | None) -> Verification:
        return self.audit.verify(self.engine, checkpoint=checkpoint)


def _facts(row: object) -> Facts:
    known = credential_row(row)
    return Facts(
        current_uuid=known.current_uuid,
        secret_created_at=known.secret_created_at,
        last_rotated_at=known.last_rotated_at,
        last_failed_at=known.last_failed_at,
        surveyed_at=known.surveyed_at,
        last_error=known.last_error,
        held_at=known.held_at,
        held_by=known.held_by,
        hold_reason=known.hold_reason,
    )


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
