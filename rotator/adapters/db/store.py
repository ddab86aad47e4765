"""The state store: rotations under fenced leases, credentials, and the hash-chained audit log.

Every state change is one transaction that does its write and appends exactly one audit
event (I6). The store is assembled from one concept per module: `core` (transactions, the
one clock, the audit append), `leases` (fenced ownership and the owner's saves), `requests`
(emergency, cancel and hold, written by operators), `rows` (rows read as the domain's
types) and `connect` (engines). This module adds credentials, reads and the audit facade.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from rotator.adapters.db.audit import AuditEvent
from rotator.adapters.db.connect import make_engine
from rotator.adapters.db.leases import LeaseInfo, Leases
from rotator.adapters.db.requests import OperatorRequests
from rotator.adapters.db.rows import CredentialRow, credential_row, to_rotation
from rotator.adapters.db.tables import credentials, rotations
from rotator.audit.chain import GENESIS, Checkpoint
from rotator.audit.chain import legacy_hash as event_hash
from rotator.audit.verify import Verification
from rotator.domain.model import Rotation, Trigger
from rotator.ports import AlreadyActive, Claim

log = logging.getLogger(__name__)

__all__ = [
    "GENESIS",  # the chain's names, now in rotator.audit.chain
    "AlreadyActive",
    "AuditEvent",
    "Claim",
    "CredentialRow",
    "LeaseInfo",
    "Store",
    "event_hash",
    "make_engine",
]


class Store(OperatorRequests, Leases):
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
                    self._require_backed(conn, name)  # its event snapshots the row
                    conn.execute(
                        update(credentials)
                        .where(credentials.c.name == name)
                        .values(config_hash=digest, updated_at=now)
                    )
                    self._config_changed(conn, name, existing[name], digest, now)

    def _config_changed(
        self, conn: Connection, name: str, before: str, after: str, now: datetime
    ) -> None:
        """A credential's configuration changed since it was recorded: an audit event
        (`config_changed`), and a warning when a rotation of it is unfinished (it goes on
        with the new settings: an operator who pointed the credential at another AWS
        secret or Adobe credential cancels it)."""
        running = conn.execute(
            select(rotations.c.id, rotations.c.state).where(
                rotations.c.credential == name, rotations.c.finished_at.is_(None)
            )
        ).first()
        detail: dict[str, Any] = {"from": before[:12], "to": after[:12]}
        if running is not None:
            detail["rotation_id"] = running.id
            log.warning(
                "credential %r: configuration changed while rotation %s is unfinished (%s); "
                "it goes on with the new settings: cancel it if the AWS secret or the Adobe "
                "credential changed",
                name,
                running.id,
                running.state,
            )
        self._append(
            conn,
            rotation_id=None,
            credential=name,
            actor="rotator",
            kind="config_changed",
            from_state=None,
            to_state=None,
            detail=detail,
            at=now,
        )

    def credential_rows(self) -> dict[str, CredentialRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(credentials)).mappings().all()
        return {r["name"]: credential_row(r) for r in rows}

    def update_credential(self, name: str, **values: Any) -> None:
        with self._tx() as conn:
            self._require_backed(conn, name)
            before = self._audited_credential(conn, name)
            values["updated_at"] = self._db_now(conn)
            conn.execute(update(credentials).where(credentials.c.name == name).values(**values))
            self._audit_survey(conn, name, before, kind="credential_updated")

    def adopt(self, name: str, uuid: str, version: str, actor: str) -> bool:
        """An operator tells rotator which Adobe uuid AWSCURRENT (at `version`) holds.
        False, and nothing written, when that binding is already recorded."""
        with self._tx() as conn:
            self._require_backed(conn, name)
            now = self._db_now(conn)
            changed = conn.execute(
                update(credentials)
                .where(
                    credentials.c.name == name,
                    or_(
                        credentials.c.current_uuid.is_distinct_from(uuid),
                        credentials.c.current_version.is_distinct_from(version),
                    ),
                )
                .values(current_uuid=uuid, current_version=version, updated_at=now)
            ).rowcount
            if not changed:
                return False  # the same binding again: no second event
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
        return True

    def record_survey(self, name: str, *, seen_rotated_at: datetime | None, **values: Any) -> bool:
        """Write what a survey learnt, unless a rotation started or finished meanwhile
        (its promotion wrote fresher facts than the survey read)."""
        with self._tx() as conn:
            self._require_backed(conn, name)
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
        from rotator.audit import chain as audit

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
                self._require_backed(conn, credential)
                return self._insert(
                    conn, credential, trigger, actor=actor, reason=reason, detail=detail or {}
                )
        except IntegrityError:
            active = self.active(credential)
            if active is None:
                raise
            raise AlreadyActive(active) from None

    def active(self, credential: str) -> Rotation | None:
        with self.engine.connect() as conn:
            return self._active(conn, credential)

    def get(self, rotation_id: int) -> Rotation:
        with self.engine.connect() as conn:
            return self._load(conn, rotation_id)

    def unfinished(self) -> list[Rotation]:
        query = select(rotations).where(rotations.c.finished_at.is_(None)).order_by(rotations.c.id)
        with self.engine.connect() as conn:
            return [to_rotation(r) for r in conn.execute(query).mappings().all()]

    def recent(self, credential: str | None = None, limit: int = 50) -> list[Rotation]:
        query = select(rotations).order_by(rotations.c.id.desc()).limit(limit)
        if credential:
            query = query.where(rotations.c.credential == credential)
        with self.engine.connect() as conn:
            return [to_rotation(r) for r in conn.execute(query).mappings().all()]

    # --- audit ---------------------------------------------------------------------------

    def events(
        self,
        credential: str | None = None,
        limit: int | None = 100,
        rotation_id: int | None = None,
        ascending: bool = False,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEvent]:
        return self.audit.events(
            self.engine, credential, limit, rotation_id, ascending, since=since, until=until
        )

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
