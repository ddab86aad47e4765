"""Credential rows: kept in step with the configuration, updated by the engine's surveys
and promotions, and bound to an Adobe uuid by an operator. A write that changes an
audited field is an audited change (the audit replay sees it)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from rotator.adapters.db.audit import NewEvent
from rotator.adapters.db.backing import require_backed
from rotator.adapters.db.rows import CredentialRow, credential_row
from rotator.adapters.db.tables import credentials, rotations
from rotator.adapters.db.tx import Tx
from rotator.domain.events import EventKind

log = logging.getLogger("rotator.adapters.db.store")


def rows(conn: Connection) -> dict[str, CredentialRow]:
    found = conn.execute(select(credentials)).mappings().all()
    return {r["name"]: credential_row(r) for r in found}


def sync(tx: Tx, configured: dict[str, str]) -> None:
    """Make sure every configured credential has a row; record config changes."""
    now = tx.now()
    existing = dict(tx.conn.execute(select(credentials.c.name, credentials.c.config_hash)).all())
    for name, digest in configured.items():
        if name not in existing:
            tx.conn.execute(
                insert(credentials).values(name=name, config_hash=digest, updated_at=now)
            )
        elif existing[name] != digest:
            require_backed(tx, name)  # its event snapshots the row
            tx.conn.execute(
                update(credentials)
                .where(credentials.c.name == name)
                .values(config_hash=digest, updated_at=now)
            )
            _config_changed(tx, name, existing[name], digest, now)


def _config_changed(tx: Tx, name: str, before: str, after: str, now: datetime) -> None:
    """A credential's configuration changed since it was recorded: an audit event
    (`config_changed`), and a warning when a rotation of it is unfinished (it goes on
    with the new settings: an operator who pointed the credential at another AWS
    secret or Adobe credential cancels it)."""
    running = tx.conn.execute(
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
    tx.record(
        NewEvent(
            credential=name, actor="rotator", kind=EventKind.CONFIG_CHANGED, detail=detail, at=now
        )
    )


def update_audited(tx: Tx, name: str, values: dict[str, Any]) -> None:
    """Write `values` to the credential row, audited (`credential_updated`) if they
    changed an audited field."""
    require_backed(tx, name)
    before = _audited(tx.conn, name)
    values["updated_at"] = tx.now()
    tx.conn.execute(update(credentials).where(credentials.c.name == name).values(**values))
    _audit_change(tx, name, before, kind=EventKind.CREDENTIAL_UPDATED)


def write(conn: Connection, name: str, values: dict[str, Any], now: datetime) -> None:
    """Write `values` to the credential row; its event is the caller's (a rotation's save)."""
    conn.execute(
        update(credentials).where(credentials.c.name == name).values(**values, updated_at=now)
    )


def adopt(tx: Tx, name: str, uuid: str, version: str, actor: str) -> bool:
    """An operator tells rotator which Adobe uuid AWSCURRENT (at `version`) holds.
    False, and nothing written, when that binding is already recorded."""
    require_backed(tx, name)
    now = tx.now()
    changed = tx.conn.execute(
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
    tx.record(
        NewEvent(
            credential=name,
            actor=actor,
            kind=EventKind.ADOPTED,
            detail={"uuid": uuid, "aws_version": version},
            at=now,
        )
    )
    return True


def record_survey(
    tx: Tx, name: str, seen_rotated_at: datetime | None, values: dict[str, Any]
) -> bool:
    """Write what a survey learnt, unless a rotation started or finished meanwhile
    (its promotion wrote fresher facts than the survey read)."""
    require_backed(tx, name)
    before = _audited(tx.conn, name)
    busy = (
        select(rotations.c.id)
        .where(rotations.c.credential == name, rotations.c.finished_at.is_(None))
        .exists()
    )
    result = tx.conn.execute(
        update(credentials)
        .where(
            credentials.c.name == name,
            credentials.c.last_rotated_at.is_not_distinct_from(seen_rotated_at),
            ~busy,
        )
        .values(**values, updated_at=tx.now())
    )
    if result.rowcount:
        _audit_change(tx, name, before)
    return bool(result.rowcount)


def _audit_change(tx: Tx, name: str, before: dict[str, Any], kind: str = "surveyed") -> None:
    """A write that changed an audited field is an audited change (replay sees it)."""
    after = _audited(tx.conn, name)
    changed = {k: v for k, v in after.items() if before.get(k) != v}
    if changed:
        tx.record(
            NewEvent(
                credential=name,
                actor="rotator",
                kind=kind,
                detail={"changed": changed},
                at=tx.now(),
            )
        )


def _audited(conn: Connection, name: str) -> dict[str, Any]:
    from rotator.audit import chain as audit

    row = conn.execute(select(credentials).where(credentials.c.name == name)).mappings().first()
    return audit.snapshot(row, audit.CREDENTIAL_FIELDS) or {}
