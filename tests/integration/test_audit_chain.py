"""Forgeries by someone who can write the database, on SQLite and the real PostgreSQL (I11).

Keyed and checked against a published checkpoint, `verify` catches each: a rewrite with
every hash and the chain head recomputed, a truncation with the head rewound, a row past
the head, an edited rotations row, an edited credentials row. Unkeyed, a recomputed rewrite
passes, and verify says plainly that it proves only accidental damage.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, event, insert, select, update

from rotator.adapters.db import migrate
from rotator.adapters.db.audit import AuditLog
from rotator.adapters.db.store import Store, make_engine
from rotator.adapters.db.tables import chain_head, credentials, events, rotations
from rotator.audit.chain import PLAIN, Checkpoint
from rotator.audit.signing import Keyring
from rotator.domain.model import State, Trigger

MINUTE = timedelta(minutes=1)


def history(store: Store) -> None:
    """A completed rotation of alpha (with its promotion's credential update), then an
    adoption for beta after the outcome's checkpoint."""
    store.sync_credentials({"alpha": "h-a", "beta": "h-b"})
    rot = store.start("alpha", Trigger.MANUAL, actor="alice", reason="quarterly")
    [claim] = store.claim("w", MINUTE)
    steps: list[tuple[State, str, dict[str, Any], str | None]] = [
        (State.CREATING, "planned", {"old_uuid": "u-old"}, None),
        (State.STAGED, "staged", {"new_uuid": "u-new"}, None),
        (State.VERIFIED, "verified", {}, None),
        (State.PROMOTED, "promoted", {"promoted_at": datetime.now(UTC)}, "u-new"),
        (State.COMPLETED, "completed", {}, None),
    ]
    for state, kind, changes, promoted_uuid in steps:
        update_cred = (
            {"current_uuid": promoted_uuid, "last_rotated_at": datetime.now(UTC)}
            if promoted_uuid
            else None
        )
        claim = store.save(
            claim,
            claim.rotation.evolve(state=state, **changes),
            kind=kind,
            actor="w",
            keep_lease=None if state.terminal else MINUTE,
            credential_update=update_cred,
        )
    assert rot.id == claim.rotation.id
    store.adopt("beta", "u-beta", "v-beta", actor="ops")


def keyed_store(engine: Engine, published: list[Checkpoint]) -> Store:
    keyring = Keyring({"k1": secrets.token_bytes(32)}, signing="k1")
    return Store(engine, audit=AuditLog(keyring, publish=published.append))


# --- forgeries -------------------------------------------------------------------------------


def rewrite_all_recomputed(engine: Engine) -> None:
    """Change the rotation's actor and reason, then recompute every link (the only scheme
    open to someone without the key is plain SHA-256) and the chain head."""
    with engine.begin() as conn:
        rows = [dict(r) for r in conn.execute(select(events).order_by(events.c.seq)).mappings()]
        prev = "0" * 64
        for row in rows:
            if row["kind"] == "started":
                row["actor"], row["detail"] = "mallory", {**row["detail"], "reason": "routine"}
            row.update(scheme=PLAIN, key_id=None, prev_hash=prev)
            row["hash"] = prev = Keyring().link(prev, row)
            conn.execute(update(events).where(events.c.id == row["id"]).values(**row))
        conn.execute(update(chain_head).values(hash=prev))


def rewrite_with_a_guessed_key(engine: Engine) -> None:
    """The same rewrite, keeping the key id but with a key of the forger's own."""
    guess = Keyring({"k1": secrets.token_bytes(32)}, signing="k1")
    with engine.begin() as conn:
        rows = [dict(r) for r in conn.execute(select(events).order_by(events.c.seq)).mappings()]
        prev = "0" * 64
        for row in rows:
            if row["kind"] == "started":
                row["actor"] = "mallory"
            row["prev_hash"] = prev
            row["hash"] = prev = guess.link(prev, row)
            conn.execute(update(events).where(events.c.id == row["id"]).values(**row))
        conn.execute(update(chain_head).values(hash=prev))


def truncate_and_rewind(engine: Engine) -> None:
    """Delete the two newest events (the outcome and the adoption) and rewind the head."""
    with engine.begin() as conn:
        rows = conn.execute(select(events).order_by(events.c.seq.desc()).limit(3)).mappings().all()
        conn.execute(delete(events).where(events.c.id.in_([rows[0]["id"], rows[1]["id"]])))
        keep = rows[2]
        conn.execute(
            update(chain_head).values(hash=keep["hash"], seq=keep["seq"], last_event_id=keep["id"])
        )
        # Make the rows agree with the shortened trail, as a careful forger would.
        conn.execute(
            update(credentials)
            .where(credentials.c.name == "beta")
            .values(current_uuid=None, current_version=None)
        )
        conn.execute(update(rotations).values(state="promoted", finished_at=None))


def insert_past_head(engine: Engine) -> None:
    with engine.begin() as conn:
        last = conn.execute(select(events).order_by(events.c.seq.desc()).limit(1)).mappings().one()
        row = {k: v for k, v in last.items() if k != "id"}
        row.update(seq=last["seq"] + 1, kind="adopted", actor="mallory", prev_hash=last["hash"])
        conn.execute(insert(events).values(**row))


def edit_rotation_row(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(rotations).values(actor="mallory", new_uuid="u-forged"))


def edit_credential_row(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(credentials).where(credentials.c.name == "alpha").values(current_uuid="u-x")
        )


def insert_off_chain(engine: Engine) -> None:
    """A row with seq 0 (below the chain): history and the report show it, the walk never
    reaches it."""
    with engine.begin() as conn:
        last = conn.execute(select(events).order_by(events.c.seq.desc()).limit(1)).mappings().one()
        row = {k: v for k, v in last.items() if k != "id"}
        row.update(seq=0, kind="adopted", actor="mallory")
        conn.execute(insert(events).values(**row))


def edit_rotation_binding(engine: Engine) -> None:
    """The fields the destroy gate relies on: the request token and the known uuids."""
    with engine.begin() as conn:
        conn.execute(update(rotations).values(request_token="forged", known_uuids=["u-x"]))


def delete_credential_row(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(credentials).where(credentials.c.name == "beta"))


FORGERIES: dict[str, tuple[Callable[[Engine], None], str]] = {
    "row off the chain": (insert_off_chain, "not on the chain"),
    "edited rotation binding": (edit_rotation_binding, "known_uuids, request_token differ"),
    "deleted credential row": (delete_credential_row, "credential beta was deleted"),
    "rewrite recomputed": (rewrite_all_recomputed, "differs from the checkpoint"),
    "rewrite guessed key": (rewrite_with_a_guessed_key, "its content was changed"),
    "truncate and rewind": (truncate_and_rewind, "before the checkpoint"),
    "row past the head": (insert_past_head, "past the chain head"),
    "edited rotation row": (edit_rotation_row, "actor, new_uuid differ"),
    "edited credential row": (edit_credential_row, "current_uuid differ"),
}


def test_an_untouched_keyed_chain_verifies_against_its_checkpoint(engine: Engine) -> None:
    published: list[Checkpoint] = []
    store = keyed_store(engine, published)
    history(store)
    assert [c.seq for c in published] == [6]  # the completed outcome published the head
    result = store.verify(published[-1])
    assert result.ok, result.problems
    assert result.keyed and result.checked == 7 and result.replayed == 3
    assert "nothing up to checkpoint seq 6" in result.scope
    assert store.checkpoint() is not None and store.checkpoint().seq == 7  # type: ignore[union-attr]
    assert [e.key_id for e in store.events(limit=None)] == ["k1"] * 7


@pytest.mark.parametrize("forgery", FORGERIES)
def test_keyed_verify_against_a_checkpoint_detects(engine: Engine, forgery: str) -> None:
    published: list[Checkpoint] = []
    store = keyed_store(engine, published)
    history(store)
    forge, expected = FORGERIES[forgery]
    forge(engine)
    result = store.verify(published[-1])
    assert not result.ok
    assert any(expected in p for p in result.problems), result.problems


def test_without_a_checkpoint_a_rewound_truncation_is_not_seen_and_verify_says_so(
    engine: Engine,
) -> None:
    store = keyed_store(engine, [])
    history(store)
    truncate_and_rewind(engine)
    result = store.verify()
    assert result.ok, result.problems
    assert "without --checkpoint, removal of the newest events cannot be detected" in result.scope


def test_unkeyed_a_recomputed_rewrite_passes_and_verify_says_it_proves_little(
    engine: Engine,
) -> None:
    store = Store(engine)
    history(store)
    assert {e.scheme for e in store.events(limit=None)} == {PLAIN}
    rewrite_all_recomputed(engine)
    result = store.verify()
    assert result.ok and not result.keyed
    assert result.scope.startswith("UNKEYED")
    assert "proves only accidental damage" in result.scope


def test_with_a_key_configured_a_whole_chain_rewritten_unkeyed_is_caught(engine: Engine) -> None:
    store = keyed_store(engine, [])
    history(store)
    rewrite_all_recomputed(engine)
    result = store.verify()  # no checkpoint: only the key can tell
    assert not result.ok
    assert "not keyed" in result.problems[0], result.problems
    assert result.scope.startswith("not proven: ")


def test_the_audit_key_rotates_and_old_events_still_verify(engine: Engine) -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    first = Store(engine, audit=AuditLog(Keyring({"k1": old}, signing="k1")))
    first.sync_credentials({"alpha": "h"})
    first.adopt("alpha", "u1", "v1", actor="ops")
    second = Store(engine, audit=AuditLog(Keyring({"k2": new, "k1": old}, signing="k2")))
    second.adopt("alpha", "u2", "v2", actor="ops")
    assert [e.key_id for e in second.events(ascending=True)] == ["k1", "k2"]
    result = second.verify(second.checkpoint())
    assert result.ok and result.keys_used == {"k1", "k2"}
    without_old = Store(engine, audit=AuditLog(Keyring({"k2": new}, signing="k2")))
    problems = without_old.verify().problems
    assert problems and "'k1', which is not configured" in problems[0]


def test_every_audited_credential_change_writes_an_event(engine: Engine) -> None:
    store = Store(engine)
    store.sync_credentials({"alpha": "h"})
    assert store.record_survey(
        "alpha", seen_rotated_at=None, current_uuid="u1", surveyed_at=datetime.now(UTC)
    )
    assert store.record_survey("alpha", seen_rotated_at=None, surveyed_at=datetime.now(UTC))
    [surveyed] = store.events()
    assert (surveyed.kind, surveyed.detail) == ("surveyed", {"changed": {"current_uuid": "u1"}})
    assert store.verify().ok


def test_an_outcome_outside_save_publishes_its_checkpoint_too(engine: Engine) -> None:
    published: list[Checkpoint] = []
    store = keyed_store(engine, published)
    store.sync_credentials({"alpha": "h"})
    store.start("alpha", Trigger.MANUAL, actor="alice")
    store.request_emergency("alpha", actor="ops", reason="leaked")  # abandons the normal one
    [abandoned] = [e for e in store.events(limit=None) if e.kind == "abandoned"]
    assert [(c.seq, c.event_id) for c in published] == [(abandoned.seq, abandoned.id)]
    assert store.verify(published[-1]).ok


def test_verify_on_sqlite_reads_a_snapshot_and_does_not_block_writers(sqlite_url: str) -> None:
    writer = Store(make_engine(sqlite_url))
    migrate.upgrade(writer.engine)
    writer.sync_credentials({"alpha": "h"})
    writer.adopt("alpha", "u1", "v1", actor="ops")
    reader = Store(make_engine(sqlite_url))
    paused, resume = threading.Event(), threading.Event()
    results: list[Any] = []

    @event.listens_for(reader.engine, "before_cursor_execute")
    def pause_mid_verify(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM rotations" in statement and not paused.is_set():  # between walk and replay
            paused.set()
            resume.wait(10)

    verifying = threading.Thread(target=lambda: results.append(reader.verify()))
    verifying.start()
    try:
        assert paused.wait(10)
        started = time.monotonic()
        writer.adopt("alpha", "u2", "v2", actor="ops")  # would wait 30 s on a write lock
        took = time.monotonic() - started
    finally:
        resume.set()
        verifying.join(10)
    assert took < 2, f"the append waited {took:.1f}s for verify"
    assert results and results[0].ok, results  # its snapshot: one event, consistent
    assert results[0].checked == 1 and writer.verify().checked == 2
    reader.engine.dispose()
    writer.engine.dispose()


def test_the_daemon_publishes_the_head_periodically_when_it_moved(sqlite_url: str) -> None:
    from types import SimpleNamespace

    from rotator import config
    from rotator.daemon import Daemon

    published: list[Checkpoint] = []
    store = Store(make_engine(sqlite_url), audit=AuditLog(publish=published.append))
    migrate.upgrade(store.engine)
    store.sync_credentials({"alpha": "h"})
    daemon = Daemon(config.from_mapping({"database": {"url": sqlite_url}}))
    daemon.app = SimpleNamespace(store=store)  # type: ignore[assignment]
    daemon.checkpoint()  # no event yet: nothing to publish
    store.adopt("alpha", "u1", "v1", actor="ops")
    daemon.checkpoint()
    daemon.checkpoint()  # the head did not move: not again
    store.adopt("alpha", "u2", "v2", actor="ops")
    daemon.checkpoint()
    assert [c.seq for c in published] == [1, 2]
    store.engine.dispose()
