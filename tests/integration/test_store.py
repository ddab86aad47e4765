# size: the Store's contract, one test per behaviour on both databases; it splits with Store.
"""The SQL store on SQLite and on a real PostgreSQL: schema, I3, fenced leases, I6, audit chain.

Every test runs twice through the `db_url` fixture (tests/conftest.py): once on a SQLite file
and once on a fresh PostgreSQL database of its own.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, delete, event, func, insert, inspect, select, update
from sqlalchemy.exc import IntegrityError

from rotator.adapters.db import migrate
from rotator.adapters.db.store import AlreadyActive, Claim, Store, make_engine
from rotator.adapters.db.tables import chain_head, events, metadata, rotations
from rotator.domain.errors import LeaseLost, RequestRefused
from rotator.domain.model import State, Trigger

CREDS = ("alpha", "beta", "gamma")
MINUTE = timedelta(minutes=1)


@pytest.fixture
def store(engine: Engine) -> Store:
    st = Store(engine)
    st.sync_credentials({name: f"hash-{name}" for name in CREDS})
    return st


def count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def claim_one(store: Store, owner: str, lease: timedelta = MINUTE, **kw: Any) -> Claim:
    [claim] = store.claim(owner, lease, **kw)
    return claim


# --- migrations ------------------------------------------------------------------------------


def test_migrations_are_idempotent(db_url: str) -> None:
    eng = make_engine(db_url)
    try:
        assert migrate.current(eng) is None
        assert not migrate.is_current(eng)
        assert migrate.upgrade(eng) == (None, migrate.head())
        tables = set(inspect(eng).get_table_names())
        assert migrate.upgrade(eng) == (migrate.head(), migrate.head())
        assert set(inspect(eng).get_table_names()) == tables
        assert {"credentials", "rotations", "events", "chain_head"} <= tables
        assert migrate.is_current(eng)
    finally:
        eng.dispose()


def test_replicas_migrating_at_once_all_succeed(db_url: str) -> None:
    engines = [make_engine(db_url) for _ in range(3)]
    with engines[0].connect():
        pass  # SQLite: switch the new file to WAL first
    barrier = threading.Barrier(len(engines))
    results: list[tuple[str | None, str | None]] = []
    errors: list[BaseException] = []

    def upgrade(eng: Engine) -> None:
        barrier.wait()
        try:
            results.append(migrate.upgrade(eng))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for eng in engines:
        eng.dispose()
    assert not errors
    head = migrate.head()
    assert sorted(results, key=str) == sorted([(None, head), (head, head), (head, head)], key=str)


def test_connecting_to_a_new_sqlite_file_waits_for_a_concurrent_writer(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE scratch (x INTEGER)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO scratch VALUES (1)")  # another process is mid-write
    releaser = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    releaser.start()
    eng = make_engine(f"sqlite:///{path}")
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        releaser.join()
        other.close()
        eng.dispose()


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


# --- start and I3 ----------------------------------------------------------------------------


def test_start_inserts_a_planned_rotation_and_one_started_event(store: Store) -> None:
    rot = store.start("alpha", Trigger.MANUAL, actor="alice", reason="quarterly", detail={"x": 1})
    assert rot.state is State.PLANNED
    assert (rot.credential, rot.trigger, rot.actor, rot.reason) == (
        "alpha",
        Trigger.MANUAL,
        "alice",
        "quarterly",
    )
    assert rot.finished_at is None
    assert rot.detail == {"x": 1}
    assert store.active("alpha") == rot
    [ev] = store.events(rotation_id=rot.id)
    assert (ev.kind, ev.from_state, ev.to_state, ev.actor) == ("started", None, "planned", "alice")
    assert ev.detail == {"trigger": "manual", "reason": "quarterly", "x": 1}


def test_a_second_start_for_the_same_credential_is_refused(store: Store) -> None:
    first = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    with pytest.raises(AlreadyActive) as caught:
        store.start("alpha", Trigger.MANUAL, actor="bob")
    assert caught.value.rotation.id == first.id
    assert count(store.engine, rotations) == 1
    assert count(store.engine, events) == 1  # the refused start left no event
    other = store.start("beta", Trigger.SCHEDULED, actor="rotator")
    assert other.id != first.id


def raw_rotation(credential: str, **values: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    row = {
        "credential": credential,
        "trigger": "manual",
        "state": "planned",
        "actor": "raw",
        "known_uuids": [],
        "detail": {},
        "created_at": now,
        "state_since": now,
    }
    row.update(values)
    return row


def test_the_unique_index_itself_refuses_a_second_unfinished_rotation(store: Store) -> None:
    store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(insert(rotations).values(**raw_rotation("alpha")))
    assert count(store.engine, rotations) == 1


def test_finished_rotations_do_not_count_against_the_unique_index(store: Store) -> None:
    done = raw_rotation("alpha", state="completed")
    done["finished_at"] = done["created_at"]
    with store.engine.begin() as conn:
        conn.execute(insert(rotations).values(**done))
        conn.execute(insert(rotations).values(**{**done, "state": "failed"}))
        conn.execute(insert(rotations).values(**raw_rotation("alpha")))
    assert count(store.engine, rotations, rotations.c.credential == "alpha") == 3


def test_finishing_a_rotation_lets_the_next_one_start(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim = claim_one(store, "w1")
    saved = store.save(claim, rot.evolve(state=State.CANCELLED), kind="cancelled", actor="w1")
    assert saved.rotation.finished_at is not None
    assert store.active("alpha") is None
    assert store.start("alpha", Trigger.MANUAL, actor="bob").id != rot.id


# --- claims and fencing ----------------------------------------------------------------------


def lease_fence(engine: Engine, rotation_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(rotations.c.fence).where(rotations.c.id == rotation_id)
            ).scalar_one()
        )


def test_claim_gives_a_lease_and_bumps_the_fence(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    assert lease_fence(store.engine, rot.id) == 0
    claim = claim_one(store, "worker-1")
    assert (claim.owner, claim.fence, claim.rotation.id) == ("worker-1", 1, rot.id)
    lease = store.lease(rot.id)
    assert lease.owner == "worker-1"
    assert lease.expires_at is not None
    assert lease.expires_at > store.now()
    assert lease_fence(store.engine, rot.id) == 1


def test_a_held_lease_cannot_be_claimed_by_another_owner(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim_one(store, "worker-1", timedelta(minutes=5))
    assert store.claim("worker-2", MINUTE) == []
    assert store.claim("worker-2", MINUTE, rotation_id=rot.id, due_only=False) == []
    assert store.lease(rot.id).owner == "worker-1"


def test_an_expired_lease_can_be_claimed_by_another_owner(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    first = claim_one(store, "worker-1", timedelta(milliseconds=50))
    time.sleep(0.15)
    second = claim_one(store, "worker-2")
    assert second.rotation.id == rot.id
    assert second.fence == first.fence + 1
    assert store.lease(rot.id).owner == "worker-2"


def test_a_stale_claim_saves_nothing(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    stale = claim_one(store, "worker-1", timedelta(milliseconds=50))
    time.sleep(0.15)
    fresh = claim_one(store, "worker-2")
    events_before = store.events(rotation_id=rot.id, ascending=True)

    with pytest.raises(LeaseLost, match="fence 1 is stale"):
        store.save(
            stale,
            stale.rotation.evolve(state=State.CREATING, old_uuid="zombie"),
            kind="planned",
            actor="worker-1",
            credential_update={"current_uuid": "zombie"},
        )

    after = store.get(rot.id)
    assert after.state is State.PLANNED
    assert after.old_uuid is None
    assert store.events(rotation_id=rot.id, ascending=True) == events_before
    assert store.credential_rows()["alpha"].current_uuid is None
    assert store.lease(rot.id).owner == "worker-2"
    store.save(fresh, fresh.rotation.evolve(state=State.CREATING), kind="planned", actor="w2")
    assert store.get(rot.id).state is State.CREATING


def test_a_held_lease_is_not_free_even_for_its_own_owner(store: Store) -> None:
    # Worker threads of one process share an owner id: two of them must never drive the
    # same rotation, and a re-claim would make the first one's claim stale mid-step.
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    held = claim_one(store, "worker-1")
    assert store.claim("worker-1", MINUTE) == []
    assert store.claim("worker-1", MINUTE, rotation_id=rot.id, due_only=False) == []
    assert lease_fence(store.engine, rot.id) == held.fence


def test_an_older_claim_of_the_same_owner_is_stale_after_a_new_claim(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    old = claim_one(store, "worker-1")
    store.release(old)
    new = claim_one(store, "worker-1", rotation_id=rot.id)
    assert new.fence == old.fence + 1
    with pytest.raises(LeaseLost):
        store.save(old, old.rotation.evolve(state=State.CREATING), kind="planned", actor="w")
    with pytest.raises(LeaseLost):
        store.renew(old, MINUTE)
    store.release(old)  # a stale release is a no-op
    assert store.lease(rot.id).owner == "worker-1"
    assert store.get(rot.id).state is State.PLANNED
    assert len(store.events(rotation_id=rot.id)) == 1


def test_renew_extends_and_release_frees_the_lease(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim = claim_one(store, "worker-1", timedelta(seconds=5))
    before = store.lease(rot.id).expires_at
    store.renew(claim, timedelta(hours=1))
    after = store.lease(rot.id).expires_at
    assert before is not None and after is not None and after > before + timedelta(minutes=30)
    store.release(claim)
    assert store.lease(rot.id).owner is None
    assert claim_one(store, "worker-2").fence == claim.fence + 1


def test_a_waiting_rotation_is_claimed_only_when_due_requested_or_forced(
    store: Store,
) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim = claim_one(store, "worker-1")
    later = store.now() + timedelta(hours=1)
    store.save(
        claim,
        rot.evolve(state=State.DRAINING, promoted_at=store.now(), next_attempt_at=later),
        kind="poll",
        actor="worker-1",
    )
    assert store.claim("worker-2", MINUTE) == []
    store.request_cancel("alpha", actor="ops", reason="not now")  # a request is due at once
    [claim] = store.claim("worker-2", MINUTE)
    assert claim.rotation.id == rot.id and claim.rotation.cancel_requested
    store.save(claim, claim.rotation, kind="poll", actor="worker-2")  # releases, still later
    assert [c.rotation.id for c in store.claim("worker-3", MINUTE, due_only=False)] == [rot.id]


# --- save and I6 -----------------------------------------------------------------------------


def test_each_save_writes_exactly_one_event(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim = claim_one(store, "w")
    path = [State.CREATING, State.STAGED, State.STAGED, State.VERIFIED]
    for n, state in enumerate(path, start=1):
        claim = store.save(
            claim,
            claim.rotation.evolve(state=state, new_uuid="new-uuid"),
            kind=f"k{n}",
            actor="w",
            detail={"n": n},
            keep_lease=MINUTE,
        )
        assert count(store.engine, events, events.c.rotation_id == rot.id) == 1 + n
    history = store.events(rotation_id=rot.id, ascending=True)
    assert [(e.kind, e.from_state, e.to_state) for e in history] == [
        ("started", None, "planned"),
        ("k1", "planned", "creating"),
        ("k2", "creating", "staged"),
        ("k3", "staged", "staged"),
        ("k4", "staged", "verified"),
    ]
    assert [e.detail.get("n") for e in history[1:]] == [1, 2, 3, 4]
    assert store.get(rot.id).new_uuid == "new-uuid"


def test_save_sets_state_since_only_on_a_state_change(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim = claim_one(store, "w")
    claim = store.save(
        claim, rot.evolve(state=State.CREATING), kind="a", actor="w", keep_lease=MINUTE
    )
    since = claim.rotation.state_since
    assert since is not None and since >= rot.created_at
    claim = store.save(
        claim, claim.rotation.evolve(attempts=2), kind="b", actor="w", keep_lease=MINUTE
    )
    assert claim.rotation.state_since == since
    assert claim.rotation.attempts == 2


def test_save_with_keep_lease_holds_it_and_without_releases_it(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim = claim_one(store, "w")
    claim = store.save(
        claim, rot.evolve(state=State.CREATING), kind="a", actor="w", keep_lease=MINUTE
    )
    assert store.lease(rot.id).owner == "w"
    store.save(claim, claim.rotation.evolve(state=State.STAGED), kind="b", actor="w")
    assert store.lease(rot.id).owner is None


def test_a_failing_event_append_rolls_the_state_change_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim = claim_one(store, "w")

    def refuse(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_append", refuse)
    with pytest.raises(RuntimeError, match="disk full"):
        store.save(claim, rot.evolve(state=State.CREATING), kind="planned", actor="w")
    assert store.get(rot.id).state is State.PLANNED
    assert store.lease(rot.id).owner == "w"


def test_ending_a_rotation_with_an_emergency_waiting_starts_it_in_the_same_transaction(
    store: Store,
) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim = claim_one(store, "w")
    store.request_emergency("alpha", actor="ops", reason="leaked in a log")
    store.save(claim, rot.evolve(state=State.CANCELLED), kind="pre-empted", actor="w")
    nxt = store.active("alpha")
    assert nxt is not None and nxt.id != rot.id
    assert nxt.trigger is Trigger.EMERGENCY
    assert (nxt.actor, nxt.reason) == ("ops", "leaked in a log")
    assert nxt.detail == {"follows": rot.id, "follows_created_at": rot.created_at.isoformat()}
    assert store.get(rot.id).finished_at is not None


def test_an_emergency_requested_after_a_rotation_ended_starts_at_once(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim = claim_one(store, "w")
    store.save(claim, rot.evolve(state=State.COMPLETED), kind="completed", actor="w")
    started = store.request_emergency("alpha", actor="ops", reason="leaked")
    assert started.id != rot.id and started.emergency and started.state is State.PLANNED


# --- requests --------------------------------------------------------------------------------


def test_request_emergency_marks_a_normal_rotation_whose_lease_is_held(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim_one(store, "w")  # mid-step: its holder abandons it at the step boundary
    marked = store.request_emergency("alpha", actor="ops", reason="leaked")
    assert marked.id == rot.id
    assert marked.emergency_requested
    assert marked.trigger is Trigger.SCHEDULED
    [ev] = store.events(rotation_id=rot.id, limit=1)
    assert (ev.kind, ev.actor, ev.detail) == ("emergency_requested", "ops", {"reason": "leaked"})
    # asking again changes nothing and writes nothing
    assert store.request_emergency("alpha", actor="ops", reason="again").id == rot.id
    assert count(store.engine, events, events.c.rotation_id == rot.id) == 2


def test_request_emergency_abandons_a_normal_rotation_nobody_holds_and_starts_at_once(
    store: Store,
) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim = claim_one(store, "w")
    staged = rot.evolve(state=State.NEEDS_ATTENTION, resume_state=State.STAGED)
    staged = staged.evolve(new_uuid="u-new", request_token="tok", old_uuid="u-old")
    store.save(claim, staged, kind="needs_attention", actor="w")  # waits, lease released
    store.request_cancel("alpha", actor="ops", reason="stuck")

    started = store.request_emergency("alpha", actor="ops", reason="leaked")

    assert started.emergency and started.state is State.PLANNED
    assert started.detail == {
        "follows": rot.id,
        "follows_created_at": rot.created_at.isoformat(),
        "inherits": {"rotation_id": rot.id, "uuid": "u-new", "version_id": "tok"},
    }
    old = store.get(rot.id)
    assert old.state is State.ABANDONED and old.finished_at is not None
    assert store.lease(rot.id).owner is None
    [ev] = store.events(rotation_id=rot.id, limit=1)
    assert (ev.kind, ev.from_state, ev.to_state) == ("abandoned", "needs_attention", "abandoned")
    assert ev.detail["leaves"] == {"new_uuid": "u-new", "aws_pending_version": "tok"}
    with pytest.raises(LeaseLost):  # the fence moved on: the old holder cannot write
        store.save(claim, staged, kind="late", actor="w")


def test_claims_take_emergencies_first_whatever_their_next_attempt(store: Store) -> None:
    first = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    store.start("beta", Trigger.SCHEDULED, actor="rotator")
    held = claim_one(store, "w")  # alpha, mid-step
    assert held.rotation.id == first.id
    store.request_emergency("alpha", actor="ops", reason="leaked")  # flagged
    store.save(held, held.rotation, kind="poll", actor="w", keep_lease=None)
    with store.engine.begin() as conn:  # alpha's next attempt is far away, beta's is due
        conn.execute(
            update(rotations)
            .where(rotations.c.id == first.id)
            .values(next_attempt_at=datetime.now(UTC) + timedelta(hours=1))
        )
    assert store.claimable() == 2
    [claim] = store.claim("w", MINUTE)
    assert claim.rotation.id == first.id and claim.rotation.emergency_requested


def test_the_owners_later_save_keeps_the_emergency_request(store: Store) -> None:
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim = claim_one(store, "w")  # taken before the request arrives
    assert not claim.rotation.emergency_requested
    store.request_emergency("alpha", actor="ops", reason="leaked")
    saved = store.save(
        claim, claim.rotation.evolve(state=State.CREATING), kind="planned", actor="w"
    )
    assert saved.rotation.emergency_requested
    assert store.get(rot.id).emergency_requested


def test_a_request_during_a_workers_save_records_the_state_that_save_left(
    store: Store,
) -> None:
    """Long-run find (soak, PostgreSQL): a request read the rotation while a worker's save of
    it was in flight and recorded `from_state=planned` after the row had become `creating`,
    breaking the chain of states (I6). The request now waits for that save and reads after."""
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim_one(store, "w")
    done: list[Any] = []
    with store.engine.connect() as worker:  # the worker's save, committed only later
        worker.execute(
            update(rotations).where(rotations.c.id == rot.id).values(state=State.CREATING.value)
        )
        thread = threading.Thread(
            target=lambda: done.append(
                store.request_emergency("alpha", actor="ops", reason="leaked")
            )
        )
        thread.start()
        time.sleep(0.5)  # the request is now waiting on the worker's row
        worker.commit()
    thread.join(timeout=30)
    assert done and done[0].emergency_requested
    [ev] = store.events(rotation_id=rot.id, limit=1)
    assert (ev.kind, ev.from_state) == ("emergency_requested", State.CREATING.value)


def test_request_emergency_without_an_active_rotation_starts_one(store: Store) -> None:
    rot = store.request_emergency("beta", actor="ops", reason="leaked")
    assert rot.trigger is Trigger.EMERGENCY
    assert rot.emergency
    assert rot.state is State.PLANNED
    assert store.active("beta") == rot
    [ev] = store.events(rotation_id=rot.id)
    assert ev.kind == "started"


def test_request_cancel_marks_the_active_rotation_and_ignores_idle_credentials(
    store: Store,
) -> None:
    assert store.request_cancel("alpha", actor="ops", reason="x") is None
    assert count(store.engine, events) == 0
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    claim = claim_one(store, "w")
    marked = store.request_cancel("alpha", actor="ops", reason="change freeze")
    assert marked is not None and marked.id == rot.id and marked.cancel_requested
    saved = store.save(claim, rot.evolve(state=State.CREATING), kind="planned", actor="w")
    assert saved.rotation.cancel_requested


def test_cancel_puts_the_credential_on_hold_and_resume_lifts_it_both_audited(
    store: Store,
) -> None:
    store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    store.request_cancel("alpha", actor="ops", reason="change freeze")
    row = store.credential_rows()["alpha"]
    assert row.held_at is not None and (row.held_by, row.hold_reason) == ("ops", "change freeze")
    [ev] = store.events(credential="alpha", limit=1)
    assert ev.kind == "cancel_requested"
    assert ev.detail["held_at"] == row.held_at.isoformat() and ev.detail["held_by"] == "ops"

    lifted = store.resume("alpha", actor="ops2", reason="freeze over")

    assert lifted is not None and lifted.held_by == "ops"
    assert store.credential_rows()["alpha"].held_at is None
    [ev] = store.events(credential="alpha", limit=1)
    assert (ev.kind, ev.actor, ev.rotation_id) == ("resumed", "ops2", None)
    assert ev.detail["held_at"] is None and ev.detail["reason"] == "freeze over"
    assert store.resume("alpha", actor="ops2", reason="again") is None


def test_an_emergency_past_its_promotion_refuses_cancel_whatever_it_waits_in(
    store: Store,
) -> None:
    rot = store.request_emergency("alpha", actor="ops", reason="leaked")
    claim = claim_one(store, "w")
    waiting = rot.evolve(state=State.NEEDS_ATTENTION, resume_state=State.RETIRING)
    store.save(claim, waiting, kind="needs_attention", actor="w")
    before = count(store.engine, events)

    with pytest.raises(RequestRefused, match="past its promotion"):
        store.request_cancel("alpha", actor="ops", reason="oops")

    assert count(store.engine, events) == before
    assert not store.get(rot.id).cancel_requested
    assert store.credential_rows()["alpha"].held_at is None


# --- audit chain -----------------------------------------------------------------------------


def audited(store: Store) -> list[int]:
    """A short history over two credentials; returns the event ids, oldest first."""
    rot = store.start("alpha", Trigger.SCHEDULED, actor="rotator", detail={"n": 1})
    claim = claim_one(store, "w")
    claim = store.save(
        claim,
        rot.evolve(state=State.CREATING),
        kind="planned",
        actor="w",
        detail={"old_uuid": "u1"},
        keep_lease=MINUTE,
    )
    store.adopt("beta", "u-beta", "v-beta", actor="ops")
    store.save(claim, claim.rotation.evolve(state=State.STAGED), kind="staged", actor="w")
    return [e.id for e in store.events(ascending=True, limit=None)]


def test_verify_chain_passes_on_an_untouched_chain_and_the_head_is_the_newest_event(
    store: Store,
) -> None:
    assert store.verify_chain() == (0, None)
    ids = audited(store)
    assert len(ids) == 4
    assert store.verify_chain() == (4, None)
    assert store.verify_chain(batch=1) == (4, None)
    chain = store.events(ascending=True, limit=None)
    assert chain[0].prev_hash == "0" * 64
    for before, after in itertools.pairwise(chain):
        assert after.prev_hash == before.hash
    with store.engine.connect() as conn:
        head = conn.execute(select(chain_head.c.last_event_id, chain_head.c.hash)).one()
    assert tuple(head) == (ids[-1], chain[-1].hash)


def test_verify_chain_finds_a_changed_detail(store: Store) -> None:
    ids = audited(store)
    with store.engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == ids[1]).values(detail={"old_uuid": "u2"}))
    checked, problem = store.verify_chain()
    assert checked == 1
    assert problem == f"event {ids[1]}: its content was changed"


def test_verify_chain_finds_a_changed_actor_even_with_its_hash_recomputed(store: Store) -> None:
    ids = audited(store)
    from rotator.audit.signing import Keyring

    with store.engine.begin() as conn:
        row = dict(conn.execute(select(events).where(events.c.id == ids[2])).mappings().one())
        row["actor"] = "mallory"
        conn.execute(
            update(events)
            .where(events.c.id == ids[2])
            .values(actor="mallory", hash=Keyring().link(row["prev_hash"], row))
        )
    checked, problem = store.verify_chain()
    assert checked == 3
    assert problem is not None and problem.startswith(f"event {ids[3]}: the event before it")


def test_verify_chain_finds_a_deleted_middle_event(store: Store) -> None:
    ids = audited(store)
    with store.engine.begin() as conn:
        conn.execute(delete(events).where(events.c.id == ids[1]))
    checked, problem = store.verify_chain()
    assert checked == 1
    assert problem == (
        f"event {ids[2]}: the event before it was changed or removed (its link does not match)"
    )


def test_verify_chain_finds_a_deleted_first_event(store: Store) -> None:
    ids = audited(store)
    with store.engine.begin() as conn:
        conn.execute(delete(events).where(events.c.id == ids[0]))
    checked, problem = store.verify_chain()
    assert checked == 0
    assert problem is not None and problem.startswith(f"event {ids[1]}:")


def test_verify_chain_finds_deleted_newest_events(store: Store) -> None:
    ids = audited(store)
    with store.engine.begin() as conn:
        conn.execute(delete(events).where(events.c.id == ids[-1]))
    checked, problem = store.verify_chain()
    assert checked == 3
    assert problem == (
        f"the newest event(s) after event {ids[-2]} were removed "
        f"(the chain head records event {ids[-1]})"
    )


def test_verify_chain_finds_deleted_newest_events_even_without_the_chain_head(
    store: Store,
) -> None:
    ids = audited(store)
    with store.engine.begin() as conn:
        conn.execute(delete(events).where(events.c.id == ids[-1]))
        conn.execute(delete(chain_head))
    checked, problem = store.verify_chain()
    assert checked == 3
    assert problem is not None


# --- concurrency -----------------------------------------------------------------------------


def test_concurrent_claims_never_hand_a_rotation_to_two_owners(engine: Engine) -> None:
    names = [f"cred-{i:02d}" for i in range(20)]
    setup = Store(engine)
    setup.sync_credentials({n: "h" for n in names})
    started = {setup.start(n, Trigger.SCHEDULED, actor="rotator").id for n in names}

    barrier = threading.Barrier(4)
    handed_out: list[tuple[str, int, int]] = []  # (owner, rotation id, fence)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        st = Store(engine)
        try:
            barrier.wait()
            # Every call is its own owner, like a separate replica: a batch may then only
            # contain rotations that nobody holds.
            for call in itertools.count():
                got = st.claim(f"w{index}-{call}", timedelta(minutes=5), limit=2)
                if not got:
                    return
                handed_out.extend((c.owner, c.rotation.id, c.fence) for c in got)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    per_rotation = Counter(rid for _owner, rid, _fence in handed_out)
    assert set(per_rotation) == started
    assert all(n == 1 for n in per_rotation.values()), per_rotation
    assert {fence for _o, _r, fence in handed_out} == {1}
    for owner, rid, _fence in handed_out:
        assert setup.lease(rid).owner == owner


def test_a_second_batch_claim_by_the_same_owner_takes_the_next_rotation(store: Store) -> None:
    first = store.start("alpha", Trigger.SCHEDULED, actor="rotator")
    second = store.start("beta", Trigger.SCHEDULED, actor="rotator")
    held = claim_one(store, "daemon")
    assert held.rotation.id == first.id
    again = store.claim("daemon", MINUTE)
    # The rotation already in flight must stay with its claim; the other one is due.
    assert [c.rotation.id for c in again] == [second.id]
    store.save(held, held.rotation.evolve(state=State.CREATING), kind="planned", actor="d")


def test_concurrent_starts_for_one_credential_leave_exactly_one(engine: Engine) -> None:
    st = Store(engine)
    st.sync_credentials({"alpha": "h"})
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def starter() -> None:
        barrier.wait()
        try:
            Store(engine).start("alpha", Trigger.MANUAL, actor="ops")
            outcomes.append("started")
        except AlreadyActive:
            outcomes.append("refused")

    threads = [threading.Thread(target=starter) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["refused", "refused", "refused", "started"]
    assert count(engine, rotations) == 1
    assert st.verify_chain() == (1, None)


def test_two_first_events_in_parallel_both_commit(pg_url: str) -> None:
    # PostgreSQL only: SQLite serialises writers with BEGIN IMMEDIATE, so it cannot race here.
    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    Store(engine).sync_credentials({"alpha": "h", "beta": "h"})
    a_appended, a_may_commit = threading.Event(), threading.Event()

    def pause_after_head_insert(conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if threading.current_thread().name == "A" and statement.startswith("INSERT INTO events"):
            a_appended.set()
            a_may_commit.wait(10)

    event.listen(engine, "after_cursor_execute", pause_after_head_insert)
    results: dict[str, str] = {}

    def run(name: str, credential: str) -> None:
        try:
            Store(engine).start(credential, Trigger.SCHEDULED, actor=name)
            results[name] = "ok"
        except Exception as exc:
            results[name] = type(exc).__name__

    a = threading.Thread(target=run, args=("A", "alpha"), name="A")
    b = threading.Thread(target=run, args=("B", "beta"), name="B")
    a.start()
    assert a_appended.wait(10)
    b.start()
    time.sleep(0.5)  # B is now waiting for A's transaction (on chain_head)
    a_may_commit.set()
    a.join(10)
    b.join(10)
    event.remove(engine, "after_cursor_execute", pause_after_head_insert)
    engine.dispose()
    assert results == {"A": "ok", "B": "ok"}


def test_the_head_constant_is_alembics_head() -> None:
    from rotator.adapters.db import migrate

    assert migrate.head() == migrate.HEAD


def test_a_config_changed_under_a_running_rotation_is_recorded_and_warned(
    store: Store, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 26: on fae5c9a `config_hash` was overwritten silently. A change is an audit
    event (with the unfinished rotation, if any) and, under a running rotation, a warning;
    an unchanged config writes nothing."""
    name = CREDS[0]
    before = count(engine, events)
    store.sync_credentials({name: f"hash-{name}"})
    assert count(engine, events) == before  # the same config: nothing to say

    rotation = store.start(name, Trigger.MANUAL, actor="t")
    with caplog.at_level("WARNING", logger="rotator.adapters.db.store"):
        store.sync_credentials({name: "changed"})
    changed = [e for e in store.events(name, limit=10) if e.kind == "config_changed"]
    assert len(changed) == 1 and changed[0].detail["rotation_id"] == rotation.id
    assert any(f"rotation {rotation.id} is unfinished" in r.getMessage() for r in caplog.records)
    assert store.verify_chain()[1] is None
