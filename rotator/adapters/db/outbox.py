"""The notification outbox: what each webhook receiver is owed, written with the audit event.

`enqueue` runs inside the transaction that appends an audit event, so an outcome and the
notices about it are committed together or not at all: nothing is lost between a rotation's
save and its webhook, whatever crashes. Senders (`Outbox.claim` ... `delivered`/`failed`)
take rows under a short claim so several replicas never send one row at once: on PostgreSQL
`FOR UPDATE SKIP LOCKED`, on SQLite the write lock that `BEGIN IMMEDIATE` takes.

Order: per receiver and credential, only the oldest open row is ever claimable, so notices
about one credential reach one receiver in the order they happened. A row is open until it
is delivered (the receiver answered 2xx) or expired (older than the delivery expiry).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update

from rotator import redaction
from rotator.adapters.db.tables import outbox, rotations
from rotator.domain.errors import InvariantError
from rotator.domain.events import EventKind
from rotator.domain.model import TERMINAL, State


@dataclass(frozen=True)
class Receiver:
    """One webhook as the outbox knows it: a stable name and the notices it wants."""

    name: str
    events: frozenset[str]


@dataclass(frozen=True)
class Delivery:
    """One claimed row: what to send, to whom, and how many tries it took so far."""

    id: int
    event_id: int
    receiver: str
    credential: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int


@dataclass(frozen=True)
class Expired:
    id: int
    event_id: int
    receiver: str
    credential: str
    kind: str


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_pending_at: datetime | None
    expired: int


def notice(kind: str, from_state: str | None, to_state: str | None) -> str | None:
    """The notice an audit event makes, if any (`domain.events.NOTICES`): a start, an
    ending, or entering attention.

    Staying in needs_attention (each retry of a blocked step) makes no second notice: the
    alert goes out once per episode, and again only after the rotation moved on.
    """
    if kind == EventKind.STARTED:
        return EventKind.STARTED.value
    if to_state is None or to_state == from_state:
        return None
    if to_state in TERMINAL or to_state == State.NEEDS_ATTENTION:
        return to_state
    return None


def enqueue(
    conn: Connection,
    receivers: Iterable[Receiver],
    *,
    event_id: int,
    rotation_id: int | None,
    credential: str,
    kind: str,
    from_state: str | None,
    to_state: str | None,
    actor: str,
    at: datetime,
) -> int:
    """Owe this event to every receiver subscribed to its notice; return the rows written."""
    what = notice(kind, from_state, to_state)
    if what is None:
        return 0
    targets = [r for r in receivers if what in r.events]
    if not targets:
        return 0
    payload = _payload(conn, what, event_id, rotation_id, credential, actor, at)
    conn.execute(
        insert(outbox),
        [
            {
                "event_id": event_id,
                "receiver": r.name,
                "credential": credential,
                "kind": what,
                "payload": payload,
                "created_at": at,
                "next_attempt_at": at,
                "attempts": 0,
            }
            for r in targets
        ],
    )
    return len(targets)


def _payload(
    conn: Connection,
    what: str,
    event_id: int,
    rotation_id: int | None,
    credential: str,
    actor: str,
    at: datetime,
) -> dict[str, Any]:
    """The notice's body: uuids, states and reasons only, redacted before it is stored."""
    row = None
    if rotation_id is not None:
        row = conn.execute(
            select(
                rotations.c.trigger,
                rotations.c.state,
                rotations.c.old_uuid,
                rotations.c.new_uuid,
                rotations.c.last_error,
                rotations.c.reason,
            ).where(rotations.c.id == rotation_id)
        ).first()
    body = {
        "event": what,
        "event_id": event_id,
        "at": at.astimezone(UTC).isoformat(),
        "credential": credential,
        "rotation_id": rotation_id,
        "trigger": row.trigger if row else None,
        "state": row.state if row else None,
        "old_uuid": row.old_uuid if row else None,
        "new_uuid": row.new_uuid if row else None,
        "reason": (row.last_error or row.reason or "") if row else "",
        "actor": actor,
    }
    loaded: dict[str, Any] = json.loads(redaction.redact(json.dumps(body)))
    return loaded


class Outbox:
    """The senders' side: claim due rows, record each answer, give up after the expiry."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"

    def _now(self, conn: Connection) -> datetime:
        """PostgreSQL's clock where replicas meet; the host clock for one-host SQLite."""
        if self._pg:
            value = conn.execute(select(func.now())).scalar_one()
            if not isinstance(value, datetime):
                raise InvariantError(f"the database clock gave {type(value).__name__}")
            return value.astimezone(UTC)
        return datetime.now(UTC)

    def expire(self, expiry: timedelta) -> list[Expired]:
        """Give up every open row older than `expiry` (the rows after it may then go)."""
        with self.engine.begin() as conn:
            now = self._now(conn)
            rows = conn.execute(
                update(outbox)
                .where(_open(), outbox.c.created_at < now - expiry)
                .values(expired_at=now, claimed_by=None, claim_expires_at=None)
                .returning(
                    outbox.c.id,
                    outbox.c.event_id,
                    outbox.c.receiver,
                    outbox.c.credential,
                    outbox.c.kind,
                )
            ).all()
        return [Expired(*r) for r in rows]

    def claim(
        self, owner: str, receivers: Iterable[str], *, hold: timedelta, limit: int = 20
    ) -> list[Delivery]:
        """Take up to `limit` due rows, each the oldest open one of its receiver+credential."""
        names = list(receivers)
        if not names:
            return []
        earlier = outbox.alias("earlier")
        blocked = (
            select(earlier.c.id)
            .where(
                earlier.c.receiver == outbox.c.receiver,
                earlier.c.credential == outbox.c.credential,
                earlier.c.id < outbox.c.id,
                earlier.c.delivered_at.is_(None),
                earlier.c.expired_at.is_(None),
            )
            .exists()
        )
        with self.engine.begin() as conn:
            now = self._now(conn)
            free = or_(outbox.c.claim_expires_at.is_(None), outbox.c.claim_expires_at < now)
            ids = [
                r[0]
                for r in conn.execute(
                    select(outbox.c.id)
                    .where(
                        _open(),
                        outbox.c.receiver.in_(names),
                        outbox.c.next_attempt_at <= now,
                        free,
                        ~blocked,
                    )
                    .order_by(outbox.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True, of=outbox)
                ).all()
            ]
            if not ids:
                return []
            rows = (
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(ids))
                    .values(claimed_by=owner, claim_expires_at=now + hold)
                    .returning(outbox)
                )
                .mappings()
                .all()
            )
        claimed = [
            Delivery(
                id=r["id"],
                event_id=r["event_id"],
                receiver=r["receiver"],
                credential=r["credential"],
                kind=r["kind"],
                payload=dict(r["payload"]),
                created_at=r["created_at"],
                attempts=r["attempts"],
            )
            for r in rows
        ]
        return sorted(claimed, key=lambda d: d.id)

    def delivered(self, delivery: Delivery) -> None:
        """The receiver acknowledged: never send this row again, whoever holds it now."""
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == delivery.id, outbox.c.delivered_at.is_(None))
                .values(
                    delivered_at=self._now(conn),
                    attempts=outbox.c.attempts + 1,
                    last_error=None,
                    claimed_by=None,
                    claim_expires_at=None,
                )
            )

    def failed(self, delivery: Delivery, owner: str, *, error: str, retry_in: timedelta) -> None:
        """Not acknowledged: try again after `retry_in` (if this sender still holds it)."""
        with self.engine.begin() as conn:
            now = self._now(conn)
            conn.execute(
                update(outbox)
                .where(
                    outbox.c.id == delivery.id,
                    outbox.c.claimed_by == owner,
                    outbox.c.delivered_at.is_(None),
                )
                .values(
                    attempts=outbox.c.attempts + 1,
                    next_attempt_at=now + retry_in,
                    last_error=redaction.clip(error, 500),
                    claimed_by=None,
                    claim_expires_at=None,
                )
            )

    def release(self, delivery: Delivery, owner: str, *, retry_in: timedelta) -> None:
        """Not tried (its receiver failed earlier in this pass): free it for `retry_in`."""
        with self.engine.begin() as conn:
            now = self._now(conn)
            conn.execute(
                update(outbox)
                .where(outbox.c.id == delivery.id, outbox.c.claimed_by == owner)
                .values(next_attempt_at=now + retry_in, claimed_by=None, claim_expires_at=None)
            )

    def backlog(self) -> Backlog:
        with self.engine.connect() as conn:
            pending, oldest = conn.execute(
                select(func.count(), func.min(outbox.c.created_at)).where(_open())
            ).one()
            expired = conn.execute(
                select(func.count()).where(outbox.c.expired_at.is_not(None))
            ).scalar_one()
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return Backlog(int(pending), oldest, int(expired))


def _open() -> Any:
    return and_(outbox.c.delivered_at.is_(None), outbox.c.expired_at.is_(None))
