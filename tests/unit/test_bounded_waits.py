"""Bounded waits and leases that follow progress (issue 29): the settings, the libpq
parameters they become, and the heartbeat that lets a stuck step's lease go."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from rotator.adapters.db.connect import postgresql_args
from rotator.config import DatabaseConfig, from_mapping
from rotator.domain.errors import ConfigError
from rotator.engine.lease import Heartbeat, Progress


def test_the_database_path_has_a_bound_on_every_wait_by_default() -> None:
    args = postgresql_args(DatabaseConfig())
    assert args["connect_timeout"] == 5
    assert (args["keepalives"], args["keepalives_idle"], args["keepalives_count"]) == (1, 10, 3)
    assert args["keepalives_interval"] == 5 and args["tcp_user_timeout"] == 30000
    assert args["options"] == (
        "-c lock_timeout=5000 -c statement_timeout=30000 "
        "-c idle_in_transaction_session_timeout=30000"
    )


def test_database_timeouts_are_overridable_and_validated() -> None:
    settings = from_mapping({"database": {"url": "sqlite://", "lock_timeout": "750ms"}})
    assert postgresql_args(settings.database)["options"].startswith("-c lock_timeout=750 ")
    with pytest.raises(ConfigError, match=r"database.lock_timeout.*longer than 0s"):
        from_mapping({"database": {"url": "sqlite://", "lock_timeout": "0s"}})
    with pytest.raises(ConfigError, match=r"database.statement_timeout.*at most 1h"):
        from_mapping({"database": {"url": "sqlite://", "statement_timeout": "2h"}})


def test_a_step_timeout_must_outlast_the_lease_and_defaults_past_it() -> None:
    with pytest.raises(ConfigError, match=r"step_timeout .* must be longer than daemon\.lease"):
        from_mapping({"daemon": {"lease": "10s", "step_timeout": "5s"}})
    assert from_mapping({"daemon": {"lease": "2m"}}).daemon.step_limit == timedelta(minutes=6)
    assert from_mapping({}).daemon.step_limit == timedelta(minutes=2)


class _Store:
    def __init__(self) -> None:
        self.renewed = 0
        self.released: list[Any] = []

    def renew(self, claim: Any, lease: timedelta) -> None:
        self.renewed += 1

    def release(self, claim: Any) -> None:
        self.released.append(claim)


def _claim() -> Any:
    return SimpleNamespace(rotation=SimpleNamespace(credential="c", id=1))


def test_a_step_past_its_timeout_loses_its_lease_and_stops_renewing() -> None:
    store, progress = _Store(), Progress()
    beat = Heartbeat(
        store,  # type: ignore[arg-type]
        _claim(),
        timedelta(milliseconds=600),
        step_timeout=timedelta(milliseconds=800),
        progress=progress,
    )
    with beat:
        beat.step()
        assert beat.expired.wait(3)
        renewed = store.renewed
        assert progress.longest_step() > 0.8
        time.sleep(0.7)
    assert store.released and store.renewed == renewed  # let go once, never renewed again
    assert progress.longest_step() == 0


def test_a_step_that_shows_progress_keeps_its_lease() -> None:
    store = _Store()
    beat = Heartbeat(
        store,  # type: ignore[arg-type]
        _claim(),
        timedelta(milliseconds=600),
        step_timeout=timedelta(seconds=1),
    )
    with beat:
        for _ in range(4):  # each step starts well inside the timeout
            beat.step()
            time.sleep(0.5)
    assert not beat.expired.is_set() and not store.released and store.renewed >= 2


def test_progress_tells_since_when_saves_fail() -> None:
    progress = Progress()
    progress.failed(since=100.0)
    progress.failed(since=200.0)
    assert progress.failing_since == 100.0
    progress.saved()
    assert progress.failing_since is None and progress.last_saved is not None
