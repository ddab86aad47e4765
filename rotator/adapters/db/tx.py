"""What one store transaction carries: its connection, the one clock, and the audit append.

The `Store` opens every transaction and hands the per-concern modules a `Tx`: the rows are
written on its connection, and `record` appends the event recording them in the same
transaction (I6). Times compared with stored times come from the database's clock on
PostgreSQL (replicas meet there, I10) and from the host's on one-host SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from rotator.adapters.db.audit import AuditLog, NewEvent
from rotator.audit.chain import Checkpoint
from rotator.domain.errors import InvariantError

# How many times one step's save is tried when a lock or statement timeout cut it short.
SAVE_ATTEMPTS = 3


def host_now(clock: Callable[[], Any]) -> datetime:
    """The host clock's answer, refused unless it is a datetime."""
    now = clock()
    if not isinstance(now, datetime):
        raise InvariantError(f"the clock gave {type(now).__name__}")
    return now


def db_now(
    conn: Connection,
    clock: Callable[[], Any] = lambda: datetime.now(UTC),
    *,
    sql: Callable[[], Any] = func.now,
) -> datetime:
    """PostgreSQL's clock (`sql`: `now()`, the transaction's start, unless told otherwise)
    where replicas meet; the host clock for one-host SQLite."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(select(sql())).scalar_one()
        if not isinstance(value, datetime):
            raise InvariantError(f"the database clock gave {type(value).__name__}")
        return value.astimezone(UTC)
    return host_now(clock)


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


@dataclass(frozen=True)
class Tx:
    """One open transaction of the store, as the per-concern modules see it."""

    conn: Connection
    audit: AuditLog  # the keyring and the signed-claim checks
    clock: Callable[[], Any]  # the host clock (SQLite)
    record: Callable[[NewEvent], Checkpoint]  # append the event, owe its notices

    def now(self) -> datetime:
        return db_now(self.conn, self.clock)
