"""The audit chain in SQL: append one linked event inside the caller's transaction, read
events back, and verify the chain (links, checkpoint, rows past the head, replay).

The link arithmetic lives in rotator/audit/chain.py (pure); this module only moves rows. An
append locks the one `chain_head` row, so appends are serialised and the chain cannot
fork; `chain_head` is a convenience, not a trust anchor (a database writer can rewind it):
the published checkpoint is.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, or_, select, update

from rotator import redaction
from rotator.adapters.db.tables import chain_head, credentials, events, rotations
from rotator.audit import chain as audit
from rotator.audit.chain import Checkpoint
from rotator.audit.signing import HOLD_FIELDS, OPERATOR, Keyring
from rotator.audit.verify import ChainWalk, Verification, row_problems, trail_problems


@dataclass(frozen=True)
class AuditEvent:
    id: int
    seq: int
    rotation_id: int | None
    credential: str
    at: datetime
    actor: str
    actor_verified: str | None
    kind: str
    from_state: str | None
    to_state: str | None
    detail: dict[str, Any]
    state: dict[str, Any] | None
    scheme: str
    key_id: str | None
    prev_hash: str
    hash: str
    signature: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "rotation_id": self.rotation_id,
            "credential": self.credential,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "actor_verified": self.actor_verified,
            "kind": self.kind,
            "from": self.from_state,
            "to": self.to_state,
            "detail": self.detail,
        }


# Execution option for a long read-only transaction (audit verify): on SQLite the store
# then begins DEFERRED, a WAL snapshot instead of the write lock, so writers carry on.
READ_SNAPSHOT = "rotator_read_snapshot"

_ROTATION_COLUMNS = [rotations.c[n] for n in audit.ROTATION_FIELDS]
_CREDENTIAL_COLUMNS = [credentials.c[n] for n in audit.CREDENTIAL_FIELDS if n in credentials.c]
_EVENT_FIELDS = tuple(AuditEvent.__dataclass_fields__)


class AuditLog:
    """Appends and verifies. The keyring is loaded on first use (commands that only read
    never fetch a key); `identity` answers the verified identity of whoever appends."""

    def __init__(
        self,
        keyring: Keyring | Callable[[], Keyring] | None = None,
        *,
        identity: Callable[[], str | None] | None = None,
        publish: Callable[[Checkpoint], None] | None = None,
    ) -> None:
        self._keyring = keyring if isinstance(keyring, Keyring) else None
        self._load = keyring if callable(keyring) else None
        self._lock = threading.Lock()
        self.identity = identity or (lambda: None)
        self.publish = publish or (lambda _cp: None)
        self._signed_since: int | None = None

    def prefetch(self) -> None:
        """Load the keyring in the background, so the first append (which holds a write
        transaction) does not wait for AWS. A failure here is raised again by `keyring()`."""

        def load() -> None:
            with contextlib.suppress(Exception):
                self.keyring()

        threading.Thread(target=load, daemon=True, name="audit-keys").start()

    def keyring(self) -> Keyring:
        if self._keyring is None:
            with self._lock:
                if self._keyring is None:
                    self._keyring = self._load() if self._load else Keyring()
        return self._keyring

    # --- append --------------------------------------------------------------------------

    def append(
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
    ) -> tuple[int, Checkpoint]:
        """Insert the next linked event (after the row changes it records); return its id
        and the checkpoint it makes."""
        keyring = self.keyring()  # before the lock: a key read from AWS takes a moment
        head = conn.execute(
            select(chain_head.c.hash, chain_head.c.seq)
            .where(chain_head.c.id == 1)
            .with_for_update()
        ).one()
        scheme, key_id = keyring.scheme()
        row: dict[str, Any] = {
            "seq": head.seq + 1,
            "rotation_id": rotation_id,
            "credential": credential,
            "at": at,
            "actor": actor,
            "actor_verified": self.identity(),
            "kind": kind,
            "from_state": from_state,
            "to_state": to_state,
            "detail": _json(detail),
            "state": _json(self._state(conn, rotation_id, credential)),
            "scheme": scheme,
            "key_id": key_id,
        }
        digest = keyring.link(head.hash, row)
        event_id = conn.execute(
            insert(events)
            .values(**row, prev_hash=head.hash, hash=digest, signature=keyring.sign(digest))
            .returning(events.c.id)
        ).scalar_one()
        conn.execute(
            update(chain_head)
            .where(chain_head.c.id == 1)
            .values(hash=digest, last_event_id=event_id, seq=row["seq"])
        )
        return event_id, Checkpoint(row["seq"], event_id, digest, scheme, key_id, at.isoformat())

    @staticmethod
    def _state(conn: Connection, rotation_id: int | None, credential: str) -> dict[str, Any]:
        """The audited fields of the rows this event is about, as they are now."""
        rotation = None
        if rotation_id is not None:
            found = (
                conn.execute(select(*_ROTATION_COLUMNS).where(rotations.c.id == rotation_id))
                .mappings()
                .first()
            )
            rotation = audit.rotation_snapshot(found)
        cred = (
            conn.execute(select(*_CREDENTIAL_COLUMNS).where(credentials.c.name == credential))
            .mappings()
            .first()
        )
        return {"rotation": rotation, "credential": audit.snapshot(cred, audit.CREDENTIAL_FIELDS)}

    # --- is a row backed by its events? (the engine asks before it acts) ----------------

    def rotation_problems(
        self, conn: Connection, row: Any
    ) -> tuple[list[str], dict[str, Any] | None]:
        """What makes a rotation row unbacked (empty: every field the engine reads agrees
        with the newest event of that rotation, and that rotation's own events are valid,
        begin with `started` and raise requests only under an operator's key), and the
        snapshot its newest valid event recorded (None when there is none to trust).

        Cheap: the rotation's own events (a dozen or two, by index), each checked on its
        own (its link and signature); not the whole chain, which `audit verify` walks.
        """
        keyring = self.keyring()
        trail = (
            conn.execute(
                select(events).where(events.c.rotation_id == row["id"]).order_by(events.c.seq)
            )
            .mappings()
            .all()
        )
        since = self.signed_since(conn) if keyring.signed else None
        problems = trail_problems(row["id"], trail, keyring, signed_since=since)
        if not trail:
            return problems, None
        newest = trail[-1]
        if newest["scheme"] == audit.LEGACY:
            # Last changed by rotator 0.1, nothing recorded to compare. Accepted only when
            # written before signing began (a later one is a problem above).
            return problems, None
        recorded = (newest["state"] or {}).get("rotation")
        trusted = None if problems else recorded  # events at fault: nothing to restore
        mismatch = row_problems(
            f"rotation {row['id']}", recorded, audit.rotation_snapshot(row) or {}
        )
        if mismatch:
            problems.append(mismatch)
        return problems, trusted

    def credential_problems(
        self, conn: Connection, name: str
    ) -> tuple[list[str], dict[str, Any] | None]:
        """The credential row against its newest valid event (hold, adopted uuid, ...):
        the problems, and the snapshot to restore (all unset when it never had an event)."""
        keyring = self.keyring()
        row = (
            conn.execute(select(*_CREDENTIAL_COLUMNS).where(credentials.c.name == name))
            .mappings()
            .first()
        )
        actual = audit.snapshot(row, audit.CREDENTIAL_FIELDS) or {}
        recent = (
            conn.execute(
                select(events)
                .where(events.c.credential == name)
                .order_by(events.c.seq.desc())
                .limit(_HOLD_LOOKBACK)
            )
            .mappings()
            .all()
        )
        newest = recent[0] if recent else None
        if newest is None:
            changed = sorted(k for k, v in actual.items() if v is not None)
            if not changed:
                return [], None
            return [
                f"credential {name}: {', '.join(changed)} set with no audit event "
                "(edited outside rotator)"
            ], dict.fromkeys(actual)
        since = self.signed_since(conn) if keyring.signed else None
        found = keyring.check(newest) or keyring.claim_problem(newest, since)
        if found:
            return [f"credential {name}: {found}"], None
        if newest["scheme"] == audit.LEGACY:
            return [], None  # rotator 0.1, before signing began: nothing recorded to compare
        held = _hold_problem(name, recent, keyring, since)
        if held:
            return [held], None
        recorded = (newest["state"] or {}).get("credential")
        mismatch = row_problems(f"credential {name}", recorded, actual)
        return ([mismatch], recorded) if mismatch else ([], None)

    def signed_since(self, conn: Connection) -> int | None:
        """The seq of the chain's first signed event (None: nothing signed yet). Events
        before it were written under the older schemes; the claim accepts those only.
        Remembered once found: it never moves (a writer who deleted it would otherwise
        widen what the claim accepts), and the claim path does not scan for it again."""
        if self._signed_since is None:
            self._signed_since = conn.execute(
                select(events.c.seq)
                .where(events.c.scheme == audit.SIGNED)
                .order_by(events.c.seq)
                .limit(1)
            ).scalar()
        return self._signed_since

    # --- read ----------------------------------------------------------------------------

    @staticmethod
    def events(
        engine: Engine,
        credential: str | None = None,
        limit: int | None = 100,
        rotation_id: int | None = None,
        ascending: bool = False,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEvent]:
        query = select(events).order_by(events.c.id.asc() if ascending else events.c.id.desc())
        if credential:
            query = query.where(events.c.credential == credential)
        if rotation_id is not None:
            query = query.where(events.c.rotation_id == rotation_id)
        if since is not None:  # `rotator history --since/--until`
            query = query.where(events.c.at >= since)
        if until is not None:
            query = query.where(events.c.at < until)
        if limit:
            query = query.limit(limit)
        with engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [AuditEvent(**{k: r[k] for k in _EVENT_FIELDS}) for r in rows]

    @staticmethod
    def head(engine: Engine) -> Checkpoint | None:
        """The chain head now, as a checkpoint (None before the first event)."""
        with engine.connect() as conn:
            row = (
                conn.execute(
                    select(events.c.seq, events.c.id, events.c.hash, events.c.scheme)
                    .add_columns(events.c.key_id, events.c.at)
                    .join(chain_head, chain_head.c.last_event_id == events.c.id)
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return Checkpoint(
            row["seq"], row["id"], row["hash"], row["scheme"], row["key_id"], row["at"].isoformat()
        )

    # --- verify --------------------------------------------------------------------------

    def verify(
        self, engine: Engine, *, checkpoint: Checkpoint | None = None, batch: int = 5000
    ) -> Verification:
        """Walk the chain up to the head, check it against `checkpoint`, flag rows past the
        head, and replay rotation and credential rows against their newest events.

        Everything is read in one snapshot (REPEATABLE READ on PostgreSQL; a deferred
        transaction on SQLite's WAL, which holds no write lock), so a daemon appending
        meanwhile is neither checked nor mistaken for tampering, nor kept waiting.
        """
        walk = ChainWalk(self.keyring(), checkpoint)
        with engine.connect() as raw:
            conn = (
                raw.execution_options(isolation_level="REPEATABLE READ")
                if engine.dialect.name == "postgresql"
                else raw.execution_options(**{READ_SNAPSHOT: True})
            )
            with conn.begin():
                head = conn.execute(
                    select(chain_head.c.hash, chain_head.c.seq, chain_head.c.last_event_id)
                ).first()
                newest = head.seq if head is not None else None
                last_seq = 0
                while True:
                    query = (
                        select(events)
                        .where(events.c.seq > last_seq)
                        .order_by(events.c.seq)
                        .limit(batch)
                    )
                    if newest is not None:
                        query = query.where(events.c.seq <= newest)
                    rows = conn.execute(query).mappings().all()
                    for row in rows:
                        walk.feed(row)
                    if len(rows) < batch:
                        break
                    last_seq = rows[-1]["seq"]
                result = walk.finish(
                    newest,
                    head.hash if head is not None else None,
                    head.last_event_id if head is not None else None,
                )
                if head is not None:
                    past = conn.execute(
                        select(events.c.id).where(
                            events.c.seq >= 1,
                            or_(
                                events.c.seq > head.seq,
                                events.c.id > (head.last_event_id or 0),
                            ),
                        )
                    ).scalars()
                    walk.past_head(past)
                # Any row the walk did not check is a problem: below the chain (seq < 1),
                # and, by count, any other row not on it (every event, less those past the
                # head and below the chain, must be one the walk checked).
                below = list(conn.execute(select(events.c.id).where(events.c.seq < 1)).scalars())
                total = conn.execute(select(func.count()).select_from(events)).scalar_one()
                walk.off_chain(below, total - len(result.past_head) - len(below))
                rotation_rows = {
                    r["id"]: r
                    for r in conn.execute(select(rotations.c.id, *_ROTATION_COLUMNS)).mappings()
                }
                credential_rows = {
                    r["name"]: r
                    for r in conn.execute(
                        select(credentials.c.name, *_CREDENTIAL_COLUMNS)
                    ).mappings()
                }
                walk.replay(rotation_rows, credential_rows)
        return result


_HOLD_LOOKBACK = 500  # events of one credential read back to find who last changed its hold


def _hold_problem(name: str, recent: Any, keyring: Keyring, since: int | None) -> str | None:
    """The event that last changed the credential's hold (newest first in `recent`) must
    be an operator's and, with a public keyring, signed: the chain walk's rule."""
    for index, row in enumerate(recent):
        mine = ((row["state"] or {}).get("credential")) or {}
        older = next(
            (
                ((r["state"] or {}).get("credential")) or {}
                for r in recent[index + 1 :]
                if (r["state"] or {}).get("credential") is not None
            ),
            {},
        )
        if not any(k in mine for k in HOLD_FIELDS):
            continue
        if all(mine.get(k) == older.get(k) for k in HOLD_FIELDS if k in mine):
            continue
        found = keyring.check(row) or keyring.claim_problem(row, since)
        if found:
            return f"credential {name}: its hold was last changed by an invalid event: {found}"
        roles = keyring.roles_of(row)
        if roles is not None and OPERATOR not in roles:
            return (
                f"credential {name}: hold changed by event {row['id']}, signed by "
                f"{row.get('key_id')!r}, which is not an operator's key"
            )
        return None
    return None


def _json(value: Any) -> Any:
    """JSON-safe and redacted: no secret value reaches the database."""
    return json.loads(redaction.redact(json.dumps(value, default=str)))
