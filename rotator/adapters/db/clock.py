"""The one clock every comparison with a stored time uses (I10), written once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, func, select

from rotator.domain.errors import InvariantError


def host_now() -> datetime:
    return datetime.now(UTC)


def db_now(conn: Connection, host: Callable[[], datetime] = host_now) -> datetime:
    """PostgreSQL's clock where replicas meet; the host clock (`host`) for one-host SQLite."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(select(func.now())).scalar_one()
        if not isinstance(value, datetime):
            raise InvariantError(f"the database clock gave {type(value).__name__}")
        return value.astimezone(UTC)
    now = host()
    if not isinstance(now, datetime):
        raise InvariantError(f"the clock gave {type(now).__name__}")
    return now
