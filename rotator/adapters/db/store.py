"""The state store: rotations under fenced leases, credentials, and the hash-chained audit log.

`Store` is a facade that owns the transactions: every state change is one transaction on
one connection, in which the concern's module writes its rows and the one event recording
them is appended (I6), its webhook notices owed with it (the outbox). The concerns, one
module each: `rotations` (rows, starts), `leases` (fenced ownership, the owner's writes),
`credentials`, `requests` (emergency, cancel and hold, written by operators), `backing`
(rows checked against their signed events), `audit` (the chain), `outbox` (notices),
`rows` (rows read as the domain's types), `tx` (what a transaction carries, the clock)
and `connect` (engines).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from rotator.adapters.db import backing, credentials, leases, outbox, requests, rotations
from rotator.adapters.db.audit import AuditEvent, AuditLog, NewEvent
from rotator.adapters.db.connect import make_engine
from rotator.adapters.db.leases import LeaseInfo
from rotator.adapters.db.rows import CredentialRow, to_rotation
from rotator.adapters.db.tx import SAVE_ATTEMPTS, Tx, host_now, timed_out
from rotator.audit.chain import GENESIS, Checkpoint
from rotator.audit.chain import legacy_hash as event_hash
from rotator.audit.verify import Verification
from rotator.domain.model import Rotation, State, Trigger
from rotator.ports import AlreadyActive, Claim

log = structlog.get_logger("rotator.store")

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

# Entering one of these is an outcome: its event's checkpoint is published on commit.
_OUTCOMES = frozenset(s.value for s in State if s.terminal or s is State.NEEDS_ATTENTION)
_OUTCOME_CHECKPOINT = "rotator_audit_checkpoint"
# When this transaction took the audit chain's head row (monotonic seconds): its hold time,
# from the lock to commit or rollback, is measured (rotator_audit_chain_hold_seconds).
_CHAIN_LOCKED = "rotator_chain_locked_at"


class Store:
    """The store's one entry point: each method is one transaction (or one read) over the
    per-concern modules; nothing here writes SQL of its own."""

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

    # --- transactions --------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[Tx]:
        """One transaction; an outcome's audit checkpoint is published once it committed."""
        info: dict[Any, Any] = {}  # the connection's own, kept: it is closed on the way out
        try:
            with self.engine.begin() as conn:
                info = conn.info
                yield Tx(conn, self.audit, self._now, lambda event: self._append(conn, event))
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

    def _append(self, conn: Connection, event: NewEvent) -> Checkpoint:
        """Append the event recording a change made just before, in the same transaction
        (I6), and owe its notices to the webhooks; the event snapshots the rows' audited
        fields as they are now."""
        conn.info.setdefault(_CHAIN_LOCKED, time.monotonic())  # the head row is locked next
        event_id, checkpoint = self.audit.append(conn, event)
        outbox.enqueue(conn, self.receivers, event_id, event)
        if event.to_state in _OUTCOMES and event.to_state != event.from_state:
            conn.info[_OUTCOME_CHECKPOINT] = checkpoint
        return checkpoint

    def now(self) -> datetime:
        """The one clock every comparison with a stored time uses (I10): the engine's too."""
        if not self._pg:  # no transaction: on SQLite it would take the write lock for nothing
            return host_now(self._now)
        with self._tx() as tx:
            return tx.now()

    # --- credentials ---------------------------------------------------------------------

    def sync_credentials(self, configured: dict[str, str]) -> None:
        """Make sure every configured credential has a row; record config changes.

        Replicas starting together race to insert the same new rows: the loser looks again
        (a duplicate key used to end its start with an IntegrityError).
        """
        for attempt in range(3):
            try:
                with self._tx() as tx:
                    return credentials.sync(tx, configured)
            except IntegrityError:
                if attempt == 2:
                    raise

    def credential_rows(self) -> dict[str, CredentialRow]:
        with self.engine.connect() as conn:
            return credentials.rows(conn)

    def update_credential(self, name: str, **values: Any) -> None:
        with self._tx() as tx:
            credentials.update_audited(tx, name, values)

    def adopt(self, name: str, uuid: str, version: str, actor: str) -> bool:
        """An operator tells rotator which Adobe uuid AWSCURRENT (at `version`) holds.
        False, and nothing written, when that binding is already recorded."""
        with self._tx() as tx:
            return credentials.adopt(tx, name, uuid, version, actor)

    def record_survey(self, name: str, *, seen_rotated_at: datetime | None, **values: Any) -> bool:
        """Write what a survey learnt, unless a rotation started or finished meanwhile
        (its promotion wrote fresher facts than the survey read)."""
        with self._tx() as tx:
            return credentials.record_survey(tx, name, seen_rotated_at, values)

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
            with self._tx() as tx:
                backing.require_backed(tx, credential)
                return rotations.start(
                    tx, credential, trigger, actor=actor, reason=reason, detail=detail or {}
                )
        except IntegrityError:
            active = self.active(credential)
            if active is None:
                raise
            raise AlreadyActive(active) from None

    def active(self, credential: str) -> Rotation | None:
        with self.engine.connect() as conn:
            return rotations.active(conn, credential)

    def get(self, rotation_id: int) -> Rotation:
        with self.engine.connect() as conn:
            return rotations.load(conn, rotation_id)

    def unfinished(self) -> list[Rotation]:
        with self.engine.connect() as conn:
            return rotations.unfinished(conn)

    def recent(self, credential: str | None = None, limit: int = 50) -> list[Rotation]:
        with self.engine.connect() as conn:
            return rotations.recent(conn, credential, limit)

    # --- leases: the engine's hot path ---------------------------------------------------

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
        with self._tx() as tx:
            now = tx.now()
            rows = leases.take(
                tx.conn, owner, lease, now, rotation_id=rotation_id, limit=limit, due_only=due_only
            )
            # Act only on what a verified writer asked for (issue 27): a row its own events
            # do not back is refused here, before any step reads it.
            backed = [r for r in rows if backing.claimed_is_backed(tx, r, now)]
        return [Claim(to_rotation(r), owner, r["fence"]) for r in backed]

    def refuse_unbacked_credential(self, name: str) -> list[str]:
        """Before a scheduled start: the credential row (its hold above all) must agree with
        its newest valid event. If not, put back what that event recorded, append one
        `refused` event (a needs_attention notice: the alert) and return the problems."""
        with self._tx() as tx:
            return backing.refuse_unbacked_credential(tx, name)

    def claimable(self) -> int:
        """How many rotations a claim would take now (cheap: the daemon asks every second
        or two, so a rotation whose holder died is taken over soon after its lease ends)."""
        with self._tx() as tx:
            return leases.claimable(tx.conn, tx.now())

    def lease(self, rotation_id: int) -> LeaseInfo:
        with self.engine.connect() as conn:
            return leases.info(conn, rotation_id)

    def renew(self, claim: Claim, lease: timedelta) -> None:
        with self._tx() as tx:
            leases.renew(tx.conn, claim, tx.now() + lease)

    def release(self, claim: Claim) -> None:
        with self._tx() as tx:
            leases.release(tx.conn, claim)

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
        """One try: the fenced write of the rotation, the credential's update (before the
        event, which records the row after it), the event and its notices, and the
        emergency that was waiting for this rotation to end."""
        old = claim.rotation
        with self._tx() as tx:
            now = tx.now()
            emergency_waiting = leases.write_owned(tx.conn, claim, new, now, keep_lease)
            if credential_update:
                credentials.write(tx.conn, old.credential, credential_update, now)
            tx.record(
                NewEvent.of(old, new.state, kind=kind, actor=actor, detail=detail or {}, at=now)
            )
            if new.state.terminal and emergency_waiting:
                by, reason = rotations.last_request(tx.conn, old.id, "emergency_requested")
                rotations.start_emergency_after(tx, new, actor=by, reason=reason)
            saved = rotations.load(tx.conn, old.id)
        return Claim(saved, claim.owner, claim.fence)

    # --- operator requests ---------------------------------------------------------------

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
                with self._tx() as tx:
                    found = requests.emergency(tx, credential, actor=actor, reason=reason)
                if found is not None:
                    return found  # None: it finished meanwhile: look again
            except IntegrityError:
                continue  # a follow-up emergency was inserted meanwhile: look again
        raise RuntimeError(f"could not request an emergency rotation of {credential!r}")

    def request_cancel(self, credential: str, *, actor: str, reason: str) -> Rotation | None:
        """Flag the unfinished rotation to be cancelled and put the credential on hold.

        The hold (no scheduled rotation starts until `resume`) is written with the flag,
        and the one audit event carries the hold's fields, so the credential row can be
        replayed from the events. An emergency past its promotion is refused: finishing it
        is what deletes the leaked secret.
        """
        try:
            with self._tx() as tx:
                return requests.cancel(tx, credential, actor=actor, reason=reason)
        except requests.NothingToCancel:
            return None

    def resume(self, credential: str, *, actor: str, reason: str) -> CredentialRow | None:
        """Lift a credential's hold; None if it was not on hold. Audited (kind `resumed`)."""
        with self._tx() as tx:
            return requests.resume(tx, credential, actor=actor, reason=reason)

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
