"""Schema migrations with Alembic, safe when several replicas start at once.

On PostgreSQL the upgrade runs under a transaction-level advisory lock, so replicas that
start together queue up instead of racing to create the same tables. Upgrading an
up-to-date database does nothing.
"""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

_LOCK_KEY = 0x726F7461746F72  # "rotator"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("rotator.migrations")))
    return config


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema to `revision`; return (before, after)."""
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
    return current(engine) == head()
