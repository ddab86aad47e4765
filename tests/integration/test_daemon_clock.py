"""The daemon judges due-ness on the store's clock (I10), not on its host's.

A replica whose own clock runs 100 days ahead must not start a rotation of a credential
whose secret is 10 days old by the database's clock (PostgreSQL's where replicas meet).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from rotator import config
from rotator.adapters.db import migrate
from rotator.adapters.db.store import Store, make_engine
from rotator.app import insights
from rotator.daemon import service as daemon_mod

CREDENTIAL = {
    "name": "alpha",
    "org_id": "1",
    "credential_id": "2",
    "client_id": "0123456789abcdef0123456789abcdef",
    "secret_id": "adobe/alpha",
    "max_age": "90d",
}


class _HostClockAhead(datetime):
    """`datetime` whose `now` is 100 days ahead: the daemon's host clock, skewed."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.now(tz) + timedelta(days=100)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    made = Store(make_engine(db_url))
    migrate.upgrade(made.engine)
    made.sync_credentials({"alpha": "h"})
    yield made
    made.engine.dispose()


def _started_by_a_tick(store: Store, secret_age: timedelta) -> list[str]:
    now = store.now()
    store.update_credential("alpha", secret_created_at=now - secret_age, surveyed_at=now)
    daemon = daemon_mod.Daemon(
        config.from_mapping({"database": {"url": "sqlite://"}, "credentials": [CREDENTIAL]})
    )
    daemon.app = SimpleNamespace(  # type: ignore[assignment]
        store=store, engine=SimpleNamespace(owner="test"), insights=insights(daemon.settings, store)
    )
    daemon._survey = lambda name, period: None  # type: ignore[method-assign]
    daemon._start_due()
    daemon.pool.shutdown()
    return [r.credential for r in store.unfinished()]


def _host_clock_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skew the host clock of the daemon's modules and of the read service its tick judges
    through (the store's own clock, in rotator/adapters/db, stays real)."""
    from rotator.daemon import clock as daemon_clock
    from rotator.observe import insights

    for module in (daemon_mod, daemon_clock, insights):
        monkeypatch.setattr(module, "datetime", _HostClockAhead, raising=False)


def test_a_host_clock_ahead_starts_nothing_early(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _host_clock_ahead(monkeypatch)
    assert _started_by_a_tick(store, timedelta(days=10)) == []


def test_a_credential_due_by_the_store_clock_starts(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the same tick does start a rotation that is due by the store's clock."""
    _host_clock_ahead(monkeypatch)
    assert _started_by_a_tick(store, timedelta(days=91)) == ["alpha"]
    assert datetime.now(UTC) < store.now() + timedelta(days=1)  # the store's clock is real
