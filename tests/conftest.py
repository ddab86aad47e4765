"""Shared fixtures: real PostgreSQL, moto's server and the Adobe sandbox, all on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import pytest
import structlog
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from rotator.devkit.localaws import LocalAws

# The Adobe sandbox's fixtures (`sandbox`, `sandbox_server`) for every suite.
pytest_plugins = ("rotator.devkit.sandbox.testing",)

PG_ADMIN_URL = os.environ.get(
    "ROTATOR_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_available() -> None:
    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL is required at {PG_ADMIN_URL} and is not reachable ({exc}). Start it "
            "with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """A test that calls rotator.logs.configure must not change the next test's logging."""
    manager = logging.root.manager
    saved = {
        name: (lg.level, lg.propagate, list(lg.handlers))
        for name, lg in manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    root = (logging.root.level, list(logging.root.handlers))
    yield
    for name, (level, propagate, handlers) in saved.items():
        lg = logging.getLogger(name)
        lg.setLevel(level)
        lg.propagate = propagate
        lg.handlers[:] = handlers
    logging.root.setLevel(root[0])
    logging.root.handlers[:] = root[1]
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The admin URL of the real PostgreSQL; fails (never skips) when it is missing."""
    _pg_available()
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"rotator_t_{uuid.uuid4().hex[:12]}"
    # NullPool: a test may restart PostgreSQL, which kills any pooled connection.
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_server.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite:///{tmp_path}/rotator.db"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on the real PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAws]:
    """moto's Secrets Manager server on 127.0.0.1; tests keep apart by unique secret names."""
    with LocalAws() as aws:
        yield aws


# The longest tests outside the reliability suite (which orders its own): started first, so
# xdist's workers do not end the run waiting on one of them (a two-minute outage test that
# starts last adds two minutes to the wall time of the whole suite).
_LONGEST_ELSEWHERE = (
    "test_a_receiver_down_for_two_minutes_across_a_restart_gets_everything_once_in_order",
    "test_who_did_it_a_keyed_chain_and_the_report_in_a_browser",
    "test_the_staging_guide_ends_in_a_completed_rotation",
    "test_the_image_installs_the_lock_and_its_command_starts_the_daemon",
    "test_three_daemons_rotate_every_due_credential_exactly_once",
    "test_code_passes",  # mypy from cold: a minute of CPU, not to be started last
)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = getattr(item, "originalname", item.name)
        return (
            _LONGEST_ELSEWHERE.index(name)
            if name in _LONGEST_ELSEWHERE
            else len(_LONGEST_ELSEWHERE)
        )

    items.sort(key=rank)  # stable: the reliability suite's own order stays behind these
