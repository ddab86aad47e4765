"""Rotation rows: read as the domain's `Rotation`, and a new one inserted with the event
that records its start. The owner's fenced writes are in `leases`, operators' requests in
`requests`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from rotator.adapters.db.audit import NewEvent
from rotator.adapters.db.rows import to_rotation
from rotator.adapters.db.tables import events, rotations
from rotator.adapters.db.tx import Tx
from rotator.domain.events import EventKind
from rotator.domain.model import Rotation, State, Trigger


def load(conn: Connection, rotation_id: int) -> Rotation:
    row = conn.execute(select(rotations).where(rotations.c.id == rotation_id)).mappings().one()
    return to_rotation(row)


def active(conn: Connection, credential: str, *, lock: bool = False) -> Rotation | None:
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


def unfinished(conn: Connection) -> list[Rotation]:
    query = select(rotations).where(rotations.c.finished_at.is_(None)).order_by(rotations.c.id)
    return [to_rotation(r) for r in conn.execute(query).mappings().all()]


def recent(conn: Connection, credential: str | None, limit: int) -> list[Rotation]:
    query = select(rotations).order_by(rotations.c.id.desc()).limit(limit)
    if credential:
        query = query.where(rotations.c.credential == credential)
    return [to_rotation(r) for r in conn.execute(query).mappings().all()]


def start(
    tx: Tx,
    credential: str,
    trigger: Trigger,
    *,
    actor: str,
    reason: str,
    detail: dict[str, Any],
) -> Rotation:
    """A new planned rotation and its `started` event; the unique index refuses a second
    unfinished one (I3) with an IntegrityError."""
    now = tx.now()
    rotation_id = tx.conn.execute(
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
    tx.record(
        NewEvent(
            rotation_id=rotation_id,
            credential=credential,
            actor=actor,
            kind=EventKind.STARTED,
            to_state=State.PLANNED.value,
            detail={"trigger": trigger.value, "reason": reason, **detail},
            at=now,
        )
    )
    return load(tx.conn, rotation_id)


def start_emergency_after(tx: Tx, ended: Rotation, *, actor: str, reason: str) -> Rotation:
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
    return start(
        tx,
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


def last_request(conn: Connection, rotation_id: int, kind: str) -> tuple[str, str]:
    """(actor, reason) of the newest request of `kind` on a rotation."""
    row = conn.execute(
        select(events.c.actor, events.c.detail)
        .where(events.c.rotation_id == rotation_id, events.c.kind == kind)
        .order_by(events.c.id.desc())
        .limit(1)
    ).first()
    return (row[0], str(row[1].get("reason", ""))) if row else ("rotator", "")
