"""What the replicas of one fleet share besides rotations: who is alive, short claims on
fleet-wide chores, and one AWS write budget (issue 29).

- `replicas`: every daemon upserts its row on each takeover check (every `lease / 5`, at
  most a tick). The write is the readiness probe (/readyz: this process can write to its
  database, bounded by the database timeouts), and the rows seen lately are the live
  replica count /metrics shows.
- `fleet_claims`: a conditional upsert takes a chore for a while, so of all replicas
  whose tick finds a credential's survey due only one surveys it.
- `write_budget`: the AWS write budget (`[aws] write_rate`) is one for the fleet, not one
  per process. Each write reserves the next free slot in one statement on the database's
  clock (`next_at = max(next_at, now) + 1 / rate`) and sleeps until it, so writes of all
  replicas are spaced 1 / rate apart however many replicas run (generic cell rate: no
  counting of replicas, no window in which a newcomer doubles the rate). A database that
  cannot be reached refuses the write (a transient error: the step is retried later)
  rather than let a replica write unpaced.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from rotator.adapters.db.tables import fleet_claims, replicas, write_budget
from rotator.adapters.db.tx import db_now
from rotator.domain.errors import TransientError


class Fleet:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def _now(conn: Connection) -> datetime:
        """The database's clock as it runs (`clock_timestamp()`, not the transaction's
        start), the host's on SQLite."""
        return db_now(conn, sql=func.clock_timestamp)

    def heartbeat(self, owner: str) -> None:
        """Write this replica's row (the readiness probe: raises when the write fails)."""
        with self.engine.begin() as conn:
            now = self._now(conn)
            done = conn.execute(
                update(replicas).where(replicas.c.owner == owner).values(seen_at=now)
            ).rowcount
            if not done:
                conn.execute(insert(replicas).values(owner=owner, started_at=now, seen_at=now))

    def live(self, within: timedelta) -> int:
        """Replicas whose heartbeat is fresher than `within`."""
        with self.engine.connect() as conn:
            now = self._now(conn)
            count = conn.execute(
                select(func.count()).select_from(replicas).where(replicas.c.seen_at >= now - within)
            ).scalar_one()
        return int(count)

    def leave(self, owner: str, *, stale: timedelta | None = None) -> None:
        """Remove this replica's row on a graceful stop (and rows silent for `stale`)."""
        with self.engine.begin() as conn:
            conn.execute(delete(replicas).where(replicas.c.owner == owner))
            if stale is not None:
                now = self._now(conn)
                conn.execute(delete(replicas).where(replicas.c.seen_at < now - stale))

    def claim(self, key: str, owner: str, hold: timedelta) -> bool:
        """Take the chore `key` for `hold` unless another holds it now; True when taken."""
        try:
            return self._claim(key, owner, hold)
        except IntegrityError:  # another replica inserted the claim first: it holds it
            return False

    def _claim(self, key: str, owner: str, hold: timedelta) -> bool:
        with self.engine.begin() as conn:
            now = self._now(conn)
            taken = conn.execute(
                update(fleet_claims)
                .where(fleet_claims.c.key == key, fleet_claims.c.until < now)
                .values(owner=owner, until=now + hold)
            ).rowcount
            if taken:
                return True
            exists = conn.execute(
                select(fleet_claims.c.key).where(fleet_claims.c.key == key)
            ).first()
            if exists:
                return False
            conn.execute(insert(fleet_claims).values(key=key, owner=owner, until=now + hold))
            return True


REBOOKS = 10  # slots a write may give up for waking late, before it goes anyway
LATE_S = 0.05  # later than this for its slot, a write gives the slot up


class WriteBudget:
    """The fleet's AWS write budget: `acquire()` waits for this write's slot."""

    def __init__(self, engine: Engine, key: str, rate: float) -> None:
        self.engine, self.key, self.rate = engine, key, rate
        self._pg = engine.dialect.name == "postgresql"
        self._ready = False
        self.waited = 0.0  # seconds spent waiting for slots, this process (for /metrics)
        self.writes = 0
        self.late = 0  # slots given up because this process woke too late for them

    def _ensure_row(self) -> None:
        if self._ready:
            return
        with self.engine.begin() as conn:
            found = conn.execute(
                select(write_budget.c.key).where(write_budget.c.key == self.key)
            ).first()
            if not found:
                with contextlib.suppress(IntegrityError), conn.begin_nested():
                    # another replica may insert it first: fine
                    conn.execute(insert(write_budget).values(key=self.key, next_at=0.0))
        self._ready = True

    def reserve(self) -> float:
        """Reserve the next slot; return the seconds to wait for it."""
        if self.rate <= 0:
            return 0.0
        self._ensure_row()
        spacing = 1.0 / self.rate
        with self.engine.begin() as conn:
            if self._pg:
                now = func.date_part("epoch", func.clock_timestamp())
                row = conn.execute(
                    update(write_budget)
                    .where(write_budget.c.key == self.key)
                    .values(next_at=func.greatest(write_budget.c.next_at, now) + spacing)
                    .returning(write_budget.c.next_at, now)
                ).one()
                slot, at = float(row[0]) - spacing, float(row[1])
            else:  # one host, one clock; BEGIN IMMEDIATE serialises the reservations
                at = time.time()
                row = conn.execute(
                    update(write_budget)
                    .where(write_budget.c.key == self.key)
                    .values(next_at=func.max(write_budget.c.next_at, at) + spacing)
                    .returning(write_budget.c.next_at)
                ).one()
                slot = float(row[0]) - spacing
        return max(0.0, slot - at)

    def acquire(self) -> None:
        """Wait for a slot, and go only if on time for it: a writer that is later than
        LATE_S for it (a busy host, a slow answer from the database) gives it up and takes
        the next free one. Slots spaced at 0.9 of the budget span 1.11 s per budget's worth
        of writes, so a write up to 0.1 s late still leaves every second within it."""
        for _ in range(REBOOKS):
            asked = time.monotonic()
            try:
                wait = self.reserve()
            except SQLAlchemyError as exc:
                first = (str(exc).splitlines() or [""])[0][:200]
                raise TransientError(
                    f"the fleet's AWS write budget is out of reach (database): {first}",
                    step="pace an AWS write",
                ) from None
            answered = time.monotonic()
            due = answered + wait  # never before the slot: late by at most the round trip
            if wait > 0:
                time.sleep(wait)
            self.waited += wait
            if (answered - asked) + (time.monotonic() - due) <= LATE_S:
                break
            self.late += 1
        self.writes += 1
