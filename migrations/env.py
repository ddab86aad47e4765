"""Alembic environment: runs on the connection that rotator.adapters.db.migrate hands in."""

from __future__ import annotations

from alembic import context

from rotator.adapters.db.tables import metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run migrations through `rotator db upgrade`, which supplies the database"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
