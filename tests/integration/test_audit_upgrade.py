"""A rotator 0.1 database upgrades (migration 0003): its unkeyed events are numbered and
keep verifying as what they are, and the first keyed event anchors them, so rewriting an
old event now needs the key too. SQLite and the real PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from rotator.adapters.db import migrate
from rotator.adapters.db.audit import AuditLog
from rotator.adapters.db.store import Store, make_engine
from rotator.adapters.db.tables import UTCDateTime, events
from rotator.audit.chain import GENESIS, LEGACY, legacy_hash
from rotator.audit.signing import Keyring

OLD_EVENTS = sa.table(
    "events",
    sa.column("id"),
    *(sa.column(c) for c in ("rotation_id", "credential", "actor", "kind")),
    *(sa.column(c) for c in ("from_state", "to_state", "prev_hash", "hash")),
    sa.column("at", UTCDateTime()),
    sa.column("detail", sa.JSON()),
)
OLD_CREDENTIALS = sa.table(
    "credentials",
    sa.column("name"),
    sa.column("config_hash"),
    sa.column("updated_at", UTCDateTime()),
)
OLD_HEAD = sa.table("chain_head", sa.column("id"), sa.column("hash"), sa.column("last_event_id"))


@pytest.fixture
def old_database(db_url: str) -> Iterator[Engine]:
    """The 0.1 schema with three events written the way rotator 0.1 wrote them."""
    engine = make_engine(db_url)
    migrate.upgrade(engine, "0002")  # 0.1's schema (0002 changed nothing in it)
    at = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    prev = GENESIS
    with engine.begin() as conn:
        conn.execute(
            sa.insert(OLD_CREDENTIALS).values(name="analytics", config_hash="h", updated_at=at)
        )
        for n, kind in enumerate(("adopted", "adopted", "adopted")):
            row = {
                "rotation_id": None,
                "credential": "analytics",
                "at": at + timedelta(minutes=n),
                "actor": "cli:alice",
                "kind": kind,
                "from_state": None,
                "to_state": None,
                "detail": {"uuid": f"u{n}", "aws_version": f"v{n}"},
            }
            digest = legacy_hash(prev, row)
            event_id = conn.execute(
                sa.insert(OLD_EVENTS)
                .values(**row, prev_hash=prev, hash=digest)
                .returning(OLD_EVENTS.c.id)
            ).scalar_one()
            conn.execute(sa.update(OLD_HEAD).values(hash=digest, last_event_id=event_id))
            prev = digest
    yield engine
    engine.dispose()


def test_an_old_database_upgrades_and_its_events_still_verify(old_database: Engine) -> None:
    migrate.upgrade(old_database)
    assert migrate.is_current(old_database)
    store = Store(old_database)
    legacy = store.events(ascending=True)
    assert [(e.seq, e.scheme) for e in legacy] == [(1, LEGACY), (2, LEGACY), (3, LEGACY)]
    result = store.verify()
    assert result.ok, result.problems
    assert result.checked == 3 and not result.keyed and result.scope.startswith("UNKEYED")
    assert result.not_replayable == 1  # the credential row was last changed by 0.1

    keyed = Store(
        old_database, audit=AuditLog(Keyring({"k1": secrets.token_bytes(32)}, signing="k1"))
    )
    keyed.adopt("analytics", "u9", "v9", actor="ops")
    result = keyed.verify(keyed.checkpoint())
    assert result.ok and result.keyed and result.checked == 4
    assert "3 older event(s) are unkeyed" in result.scope

    # Rewriting an old event and recomputing the old links now breaks the keyed one after.
    with old_database.begin() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(events).order_by(events.c.seq)).mappings()]
        prev = GENESIS
        for row in rows[:3]:
            if row["seq"] == 2:
                row["actor"] = "cli:mallory"
            row["prev_hash"], row["hash"] = prev, legacy_hash(prev, row)
            prev = row["hash"]
            conn.execute(
                sa.update(events)
                .where(events.c.id == row["id"])
                .values(actor=row["actor"], prev_hash=row["prev_hash"], hash=row["hash"])
            )
    problems = keyed.verify().problems
    assert problems and problems[0].startswith(f"event {rows[3]['id']}: the event before it")
