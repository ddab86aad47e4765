"""Engines: SQLite set up for several processes on one file, PostgreSQL with its own DDL.

A SQLite URL never imports SQLAlchemy's PostgreSQL dialect (about 19 ms of every command's
start-up); `postgresql://` is mapped to the installed driver (psycopg 3).

Every wait on the database is bounded ([database] in the config, docs/operations.md
"Bounded waits"): on PostgreSQL the connect timeout and TCP keepalives are libpq
parameters, and `lock_timeout`, `statement_timeout` and
`idle_in_transaction_session_timeout` are session settings sent in the startup packet
(`options`), so they hold on every pooled connection from its first statement; the pool
itself waits at most `connect_timeout` for a free connection. On SQLite: the busy timeout,
and a WAL kept small (`journal_size_limit`, `wal_autocheckpoint`) so it cannot fill a small
volume by itself.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import NullPool

from rotator.adapters.db import tables
from rotator.adapters.db.audit import READ_SNAPSHOT
from rotator.domain.errors import ConfigError

if TYPE_CHECKING:
    from rotator.config import DatabaseConfig


def make_engine(url: str, database: DatabaseConfig | None = None) -> Engine:
    """An engine with SQLite set up for several processes on one file (WAL, BEGIN IMMEDIATE),
    and every wait bounded as `database` says (its defaults when not given)."""
    if database is None:
        from rotator.config import DatabaseConfig

        database = DatabaseConfig(url=url)
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, poolclass=NullPool)
            sqlite_setup(engine, database)
            return engine
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=30,
            pool_timeout=database.connect_timeout.total_seconds(),
            connect_args=postgresql_args(database),
        )
        if engine.dialect.name == "postgresql":
            tables.describe_for_postgresql()
        return engine
    except Exception as exc:  # bad URL, missing driver: one clear line
        raise ConfigError(f"database.url: cannot use {safe_url(url)}: {exc}") from None


def safe_url(url: str) -> str:
    """The URL without its password, fit for an error or a log line."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def postgresql_args(database: DatabaseConfig) -> dict[str, Any]:
    """libpq parameters bounding every wait of a session (seconds are whole for libpq)."""

    def ms(value: timedelta) -> int:
        return max(1, int(value.total_seconds() * 1000))

    def whole(value: timedelta) -> int:
        return max(1, math.ceil(value.total_seconds()))

    settings = {
        "lock_timeout": ms(database.lock_timeout),
        "statement_timeout": ms(database.statement_timeout),
        "idle_in_transaction_session_timeout": ms(database.idle_in_transaction_timeout),
    }
    return {
        # libpq treats 1 as 2 seconds; anything shorter is not a real bound anyway.
        "connect_timeout": max(2, whole(database.connect_timeout)),
        "keepalives": 1,
        "keepalives_idle": whole(database.keepalives_idle),
        "keepalives_interval": whole(database.keepalives_interval),
        "keepalives_count": database.keepalives_count,
        "tcp_user_timeout": ms(database.tcp_user_timeout),
        "options": " ".join(f"-c {name}={value}" for name, value in settings.items()),
    }


def sqlite_setup(engine: Engine, database: DatabaseConfig | None = None) -> None:
    """WAL, a busy timeout, foreign keys, and BEGIN IMMEDIATE for writers (no lock upgrades:
    two writers upgrading at once is SQLite's deadlock, answered 'database is locked');
    the WAL is truncated to `journal_size_limit` after each checkpoint."""
    busy = int(database.busy_timeout.total_seconds() * 1000) if database else 15000
    limit = database.journal_size_limit if database else 4 * 1024 * 1024
    pages = database.wal_autocheckpoint if database else 1000

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy}")
        cursor.execute("PRAGMA foreign_keys=ON")
        _enable_wal(cursor)
        cursor.execute(f"PRAGMA journal_size_limit={limit}")
        cursor.execute(f"PRAGMA wal_autocheckpoint={pages}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_SNAPSHOT):
            conn.exec_driver_sql("BEGIN DEFERRED")  # WAL: a snapshot, writers carry on
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock up front: no upgrades


def _enable_wal(cursor: Any, attempts: int = 50) -> None:
    """Switch a SQLite file to WAL once. The switch needs a moment with no writer, and
    SQLite answers "database is locked" at once instead of honouring busy_timeout, so
    several processes opening a new file together retry briefly."""
    import sqlite3
    import time

    for attempt in range(attempts):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.02 * (attempt + 1))
