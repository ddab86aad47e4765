"""Schema migrations with Alembic, safe when several replicas start at once.

On PostgreSQL the upgrade runs under a transaction-level advisory lock, so replicas that
start together queue up instead of racing to create the same tables. Upgrading an
up-to-date database does nothing.

Checking the schema needs no Alembic: `HEAD` names the newest revision (a test keeps it
equal to Alembic's head), so every command but `db upgrade` and `run` skips importing it.
"""

from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

HEAD = "0007_liveness"  # the newest file in migrations/versions; test_store checks it
_LOCK_KEY = 0x726F7461746F72  # "rotator"


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("rotator.migrations")))
    return config


def head() -> str | None:
    """Alembic's own view of the newest revision (imports Alembic)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema to `revision`; return (before, after)."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    config = alembic_config()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        before = MigrationContext.configure(conn).get_current_revision()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after


def is_current(engine: Engine) -> bool:
    return current(engine) == HEAD
