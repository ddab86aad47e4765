"""The PostgreSQL grants in docs/operations.md make the audit trail append-only, on the
real server: a role with exactly those grants runs rotations, and its UPDATE, DELETE and
TRUNCATE on `events` are refused.

The SQL is read from the docs themselves (the plpgsql block after `-- grants: rotator_daemon`), so
the documented grants are the tested ones.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

from rotator.adapters.db import migrate
from rotator.adapters.db.audit import AuditLog
from rotator.adapters.db.store import Store, make_engine
from rotator.audit.signing import Keyring
from rotator.domain.model import State, Trigger

DOCS = Path(__file__).parents[2] / "docs" / "operations.md"


def documented_grants() -> list[str]:
    text_ = DOCS.read_text(encoding="utf-8")
    block = re.search(r"```plpgsql\n-- grants: rotator_daemon\n(.*?)```", text_, re.S)
    assert block, "docs/operations.md has no `-- grants: rotator_daemon` SQL block"
    lines = [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("--")]
    return [s.strip() for s in " ".join(lines).split(";") if s.strip()]


def test_the_documented_grants_make_events_append_only(pg_url: str) -> None:
    owner = make_engine(pg_url)
    migrate.upgrade(owner)  # as the tables' owner: `rotator db upgrade` in a deploy job
    role = f"rotator_daemon_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        for statement in documented_grants():
            conn.execute(text(statement.replace("rotator_daemon", role)))
    daemon = make_engine(pg_url.replace("//postgres@", f"//{role}@"))
    try:
        with daemon.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == role
        assert migrate.upgrade(daemon) == (migrate.HEAD, migrate.HEAD)  # a daemon's start-up
        keyring = Keyring({"k1": secrets.token_bytes(32)}, signing="k1")
        store = Store(daemon, audit=AuditLog(keyring))

        # Rotations work as this role: start, claim, fenced saves, a credential update.
        store.sync_credentials({"analytics": "h"})
        rot = store.start("analytics", Trigger.MANUAL, actor="ops", reason="grants test")
        [claim] = store.claim("w", timedelta(minutes=1))
        claim = store.save(
            claim,
            rot.evolve(state=State.CREATING, old_uuid="u-old"),
            kind="planned",
            actor="w",
            keep_lease=timedelta(minutes=1),
        )
        store.save(
            claim,
            claim.rotation.evolve(state=State.CANCELLED, finished_at=datetime.now(UTC)),
            kind="cancelled",
            actor="w",
        )
        store.adopt("analytics", "u-old", "v1", actor="ops")
        assert store.verify(store.checkpoint()).ok

        # ... and the trail cannot be rewritten by it.
        for forbidden in (
            "UPDATE events SET actor = 'mallory'",
            "DELETE FROM events",
            "TRUNCATE events",
            "ALTER TABLE events DISABLE TRIGGER ALL",
        ):
            with daemon.connect() as conn, pytest.raises(ProgrammingError) as refused:
                conn.execute(text(forbidden))
            assert "must be owner" in str(refused.value) or "permission denied" in str(
                refused.value
            ), forbidden
        assert len(store.events(limit=None)) == 4
    finally:
        daemon.dispose()
        owner.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()
