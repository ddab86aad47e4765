from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from rotator.adapters.db import migrate
from rotator.adapters.db.connect import make_engine
from rotator.devkit.localaws import LocalAws
from rotator.devkit.sandbox.server import SandboxServer
from tests.world import World


@pytest.fixture
def world(sandbox: SandboxServer, local_aws: LocalAws, db_url: str) -> Iterator[World]:
    w = World(sandbox=sandbox, aws=local_aws, db_url=db_url)
    yield w
    w.close()


@pytest.fixture
def sqlite_world(
    sandbox: SandboxServer,
    local_aws: LocalAws,
    sqlite_url: str,
) -> Iterator[World]:
    w = World(sandbox=sandbox, aws=local_aws, db_url=sqlite_url)
    yield w
    w.close()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database (SQLite, then PostgreSQL), as SQLAlchemy's engine over it."""
    made = make_engine(db_url)
    migrate.upgrade(made)
    yield made
    made.dispose()
