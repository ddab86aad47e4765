"""Engines: SQLite set up for several processes on one file, PostgreSQL with its own DDL.

A SQLite URL never imports SQLAlchemy's PostgreSQL dialect (about 19 ms of every command's
start-up); `postgresql://` is mapped to the installed driver (psycopg 3).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import NullPool

from rotator.adapters.db import tables
from rotator.adapters.db.audit import READ_SNAPSHOT
from rotator.domain.errors import ConfigError


def make_engine(url: str) -> Engine:
    """An engine with SQLite set up for several processes on one file (WAL, BEGIN IMMEDIATE)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, poolclass=NullPool)
            sqlite_setup(engine)
            return engine
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=30)
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


def sqlite_setup(engine: Engine) -> None:
    """WAL, a busy timeout, foreign keys, and BEGIN IMMEDIATE for writers (no lock upgrades:
    two writers upgrading at once is SQLite's deadlock, answered 'database is locked')."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        _enable_wal(cursor)
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
