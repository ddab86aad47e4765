"""Issue 27: the engine acts only on what a verified writer asked for.

A database writer without a key forges a rotation row, an operator's request flag, a hold,
or a destroy input in `rotations.detail`. Each time, on SQLite and PostgreSQL: the engine
does not act (the sandbox's oracle records no deletion, Adobe and AWS are as they were),
the rotation goes to needs_attention with an alert in the outbox, `audit verify` fails
naming the row while the forgery stands, and afterwards reports the refusal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from rotator.adapters.db.audit import NewEvent
from rotator.adapters.db.tables import credentials, events, outbox, rotations
from rotator.audit import keys
from rotator.domain.model import Rotation, State, Trigger
from tests.world import World


@pytest.fixture
def signed(world: World, tmp_path: Path) -> World:
    """A world whose writer signs its events, with a webhook receiver owed alerts."""
    key = tmp_path / "writer.key"
    ring = tmp_path / "keyring.toml"
    ring.write_text(
        keys.keyring_entry("writer-1", keys.generate_signing_key(key), ("daemon", "operator"))
    )
    world.audit = {"signing_key": str(key), "keyring": str(ring)}
    world.notifications = {
        "webhooks": [
            {"url": "http://127.0.0.1:9/hook", "name": "ops", "events": ["needs_attention"]}
        ]
    }
    world.defaults["quiet_period"] = "1h"  # a rotation waits in draining, both secrets live
    world.credential()
    return world


def _draining(world: World) -> Rotation:
    app = world.app
    rotation = app.engine.request("analytics", Trigger.MANUAL, actor="ops")
    claim = app.engine.claim(rotation.id)
    while claim is not None:
        claim = app.engine.step(claim)
    rotation = app.store.get(rotation.id)
    assert rotation.state is State.DRAINING
    return rotation


def _due_now(world: World, rotation_id: int) -> None:
    """Not audited, and not a forgery: only so the next claim takes it at once."""
    with world.app.store.engine.begin() as conn:
        conn.execute(
            update(rotations)
            .where(rotations.c.id == rotation_id)
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def _forge(world: World, table: Any, where: Any, **values: Any) -> None:
    with world.app.store.engine.begin() as conn:
        conn.execute(update(table).where(where).values(**values))


def _as_it_was(world: World) -> dict[str, Any]:
    cred = world.creds["analytics"].credential_id
    return {
        "adobe": sorted(world.adobe_uuids()),
        "labels": world.labels(),
        "deletions": world.admin.oracle(cred)["deletions"],
    }


def _refused(world: World, rotation_id: int, before: dict[str, Any]) -> Rotation:
    """The engine claims, refuses, and nothing happened at Adobe or AWS."""
    app = world.app
    assert app.engine.run_due(limit=5) == 0  # nothing was driven
    assert _as_it_was(world) == before  # the oracle saw no deletion; labels unmoved
    assert world.works()
    rotation = app.store.get(rotation_id)
    assert rotation.state is State.NEEDS_ATTENTION
    assert rotation.last_error and rotation.last_error.startswith("refused: ")
    with app.store.engine.connect() as conn:
        refused = conn.execute(
            select(events.c.id, events.c.to_state).where(
                events.c.rotation_id == rotation_id, events.c.kind == "refused"
            )
        ).all()
        alerts = conn.execute(
            select(outbox.c.kind, outbox.c.receiver).where(
                outbox.c.event_id.in_([r.id for r in refused])
            )
        ).all()
    assert [r.to_state for r in refused] == ["needs_attention"]
    assert [(a.kind, a.receiver) for a in alerts] == [("needs_attention", "ops")]
    assert app.engine.run_due(limit=5) == 0  # still not acted on, and no second alert
    return rotation


def _verify_names(world: World, *words: str) -> None:
    problems = world.app.store.verify().problems
    assert problems, "verify passed a forged row"
    assert any(all(w in p for w in words) for p in problems), problems


def test_an_inserted_rotation_row_is_refused(signed: World) -> None:
    world = signed
    world.app.engine.sync()
    before = _as_it_was(world)
    now = datetime.now(UTC)
    with world.app.store.engine.begin() as conn:
        forged = conn.execute(
            insert(rotations)
            .values(
                credential="analytics",
                trigger="emergency",
                state="planned",
                actor="mallory",
                reason="",
                known_uuids=[],
                detail={},
                created_at=now,
                state_since=now,
                next_attempt_at=now,
            )
            .returning(rotations.c.id)
        ).scalar_one()
    _verify_names(world, f"rotation {forged}", "no audit event")

    _refused(world, forged, before)

    _verify_names(world, f"rotation {forged}", "does not begin with a started event")

    # An operator closes it: cancelled, signed, nothing done; the credential is free again.
    closed = world.app.store.request_cancel("analytics", actor="ops", reason="forged row")
    assert closed is not None and closed.state is State.CANCELLED
    assert _as_it_was(world) == before and world.app.store.active("analytics") is None
    result = world.app.store.verify()
    assert result.ok and len(result.refused) == 1, result.problems


def test_a_raised_emergency_flag_is_refused_and_put_back(signed: World) -> None:
    world = signed
    rotation = _draining(world)
    before = _as_it_was(world)
    _forge(world, rotations, rotations.c.id == rotation.id, emergency_requested=True)
    _verify_names(world, f"rotation {rotation.id}", "emergency_requested")

    refused = _refused(world, rotation.id, before)

    assert not refused.emergency_requested and refused.resume_state is State.DRAINING
    active = world.app.store.active("analytics")
    assert active is not None and active.id == rotation.id  # no emergency started
    result = world.app.store.verify()
    assert result.ok, result.problems  # the rows agree with signed events again
    assert len(result.refused) == 1 and "emergency_requested" in result.refused[0]


def test_a_hold_edited_under_a_running_rotation_is_refused(signed: World) -> None:
    world = signed
    rotation = _draining(world)
    before = _as_it_was(world)
    _forge(world, credentials, credentials.c.name == "analytics", held_at=datetime.now(UTC))
    _due_now(world, rotation.id)
    _verify_names(world, "credential analytics", "held_at")

    _refused(world, rotation.id, before)

    assert world.app.store.credential_rows()["analytics"].held_at is None  # put back


def test_a_lifted_hold_does_not_let_the_scheduler_start(signed: World) -> None:
    world = signed
    rotation = world.app.engine.request("analytics", Trigger.MANUAL, actor="ops")
    world.app.store.request_cancel("analytics", actor="ops", reason="not today")
    held = world.app.store.credential_rows()["analytics"].held_at
    assert held is not None
    _forge(world, credentials, credentials.c.name == "analytics", held_at=None)
    _verify_names(world, "credential analytics", "held_at")

    problems = world.app.store.refuse_unbacked_credential("analytics")  # the scheduler asks

    assert problems and "held_at" in problems[0]
    assert world.app.store.credential_rows()["analytics"].held_at == held  # put back
    assert world.app.store.refuse_unbacked_credential("analytics") == []
    active = world.app.store.active("analytics")
    assert active is not None and active.id == rotation.id


def test_edited_destroy_inputs_are_refused_and_put_back(signed: World) -> None:
    """`detail` (a forged identity; `preempted`, a key nothing writes any more, which
    would license deleting every other secret), previous_version, resume_state, evidence."""
    world = signed
    rotation = _draining(world)
    before = _as_it_was(world)
    forged = {
        "preempted": True,
        "identity": {"uuid": "0" * 32, "version_id": "forged", "source": "binding"},
    }
    _forge(
        world,
        rotations,
        rotations.c.id == rotation.id,
        detail={**rotation.detail, **forged},
        previous_version="forged",
        resume_state="retiring",
        evidence={"old_last_used": None},
    )
    _due_now(world, rotation.id)
    _verify_names(
        world, f"rotation {rotation.id}", "detail", "evidence", "previous_version", "resume_state"
    )

    refused = _refused(world, rotation.id, before)

    assert refused.detail == rotation.detail and refused.evidence == rotation.evidence
    assert refused.previous_version == rotation.previous_version
    assert refused.resume_state is State.DRAINING
    assert world.app.store.verify().ok


def test_a_daemon_key_speaking_as_an_operator_moves_nothing(db_url: str, tmp_path: Path) -> None:
    """A holder of a daemon's key writes an operator's request, signed as itself (its
    role forbids it) or under the operator's key id (its signature is not that key's):
    the claim refuses both, and verify names them. No sandbox needed: nothing is driven."""
    from rotator.adapters.db import migrate
    from rotator.adapters.db.audit import AuditLog
    from rotator.adapters.db.connect import make_engine
    from rotator.adapters.db.store import Store
    from rotator.audit.signing import Keyring, Signer

    public: dict[str, Any] = {}
    private: dict[str, Any] = {}
    for key_id, role in (("daemon-1", "daemon"), ("ops-alice", "operator")):
        path = tmp_path / f"{key_id}.key"
        public.update(
            keys.load_keyring(_ring(tmp_path, key_id, keys.generate_signing_key(path), role))
        )
        private[key_id] = path
    daemon = keys.load_signer(private["daemon-1"], public)
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    as_itself = Store(engine, audit=AuditLog(Keyring(public=public, signer=daemon)))
    as_itself.sync_credentials({"a": "h", "b": "h"})
    own = as_itself.start("a", Trigger.EMERGENCY, actor="ops", reason="leaked")
    # The same private key, claiming the operator's key id.
    posing = Store(engine, audit=AuditLog(Keyring(public=public)))
    object.__setattr__(posing.audit.keyring(), "signer", Signer("ops-alice", daemon.key))
    posed = posing.start("b", Trigger.EMERGENCY, actor="ops", reason="leaked")

    assert as_itself.claim("w", timedelta(seconds=30), limit=5) == []
    for rotation, words in ((own, "operator's request"), (posed, "signature is not key")):
        after = as_itself.get(rotation.id)
        assert after.state is State.NEEDS_ATTENTION and words in (after.last_error or "")
    problems = as_itself.verify().problems
    assert any(f"rotation {own.id}" in p or "operator's request" in p for p in problems)
    assert any("its signature is not key 'ops-alice'" in p for p in problems), problems
    engine.dispose()


def _ring(tmp_path: Path, key_id: str, public: Any, role: str) -> Path:
    path = tmp_path / f"{key_id}.toml"
    path.write_text(keys.keyring_entry(key_id, public, (role,)))
    return path


def test_the_scheduler_starts_nothing_on_a_forged_lifted_hold(db_url: str) -> None:
    """A cancelled rotation left its credential on hold; a raw UPDATE lifts the hold of a
    credential that is due. The daemon's tick starts nothing, puts the hold back, and
    says so in a `refused` event (the alert)."""
    from types import SimpleNamespace

    from rotator import config
    from rotator.adapters.db import migrate
    from rotator.adapters.db.connect import make_engine
    from rotator.adapters.db.store import Store
    from rotator.app import insights
    from rotator.daemon import service as daemon_mod

    store = Store(make_engine(db_url))
    migrate.upgrade(store.engine)
    store.sync_credentials({"alpha": "h"})
    now = store.now()
    store.update_credential("alpha", secret_created_at=now - timedelta(days=400), surveyed_at=now)
    rotation = store.start("alpha", Trigger.MANUAL, actor="ops")
    store.request_cancel("alpha", actor="ops", reason="not this quarter")
    claim = store.claim("w", timedelta(seconds=30), rotation_id=rotation.id, due_only=False)[0]
    store.save(claim, claim.rotation.evolve(state=State.CANCELLED), kind="cancelled", actor="w")
    held = store.credential_rows()["alpha"].held_at
    assert held is not None and store.active("alpha") is None
    with store.engine.begin() as conn:
        conn.execute(update(credentials).values(held_at=None, held_by=None, hold_reason=None))

    cfg = {
        "name": "alpha",
        "org_id": "1",
        "credential_id": "2",
        "client_id": "0123456789abcdef0123456789abcdef",
        "secret_id": "adobe/alpha",
        "max_age": "90d",
    }
    daemon = daemon_mod.Daemon(
        config.from_mapping({"database": {"url": "sqlite://"}, "credentials": [cfg]})
    )
    requested: list[str] = []
    daemon.app = SimpleNamespace(  # type: ignore[assignment]
        store=store,
        engine=SimpleNamespace(request=lambda name, *_, **__: requested.append(name)),
        insights=insights(daemon.settings, store),
    )
    daemon._survey = lambda name, period: None  # type: ignore[method-assign]
    daemon._start_due()
    daemon.pool.shutdown()

    assert requested == []
    assert store.credential_rows()["alpha"].held_at == held
    assert [e.kind for e in store.events(limit=1)] == ["refused"]
    store.engine.dispose()


def _append_as(world: World, keyring: Any, forge: Any, **event: Any) -> None:
    """A raw UPDATE and one event appended after it, linked onto the chain head by a
    writer holding `keyring` (no Ed25519 key: a plain sha256 link, or an old HMAC key)."""
    audit_log = world.app.store.audit
    real = audit_log.keyring()
    audit_log._keyring = keyring
    try:
        with world.app.store.engine.begin() as conn:
            forge(conn)
            audit_log.append(conn, NewEvent(at=datetime.now(UTC), credential="analytics", **event))
    finally:
        audit_log._keyring = real


def _attacker(world: World, scheme: str) -> Any:
    """What a keyless writer (plain sha256) or the holder of a retired HMAC key (one the
    defender still lists, to verify old events) appends with."""
    from rotator.audit.signing import Keyring

    if scheme == "sha256":
        return Keyring()
    old = {"hmac-2025": b"k" * 32}
    object.__setattr__(world.app.store.audit.keyring(), "keys", old)
    return Keyring(old, signing="hmac-2025")


@pytest.mark.parametrize("scheme", ["sha256", "hmac-sha256"])
def test_an_unsigned_event_backs_no_forged_emergency(signed: World, scheme: str) -> None:
    world = signed
    rotation = _draining(world)
    before = _as_it_was(world)
    _append_as(
        world,
        _attacker(world, scheme),
        lambda conn: conn.execute(
            update(rotations).where(rotations.c.id == rotation.id).values(emergency_requested=True)
        ),
        rotation_id=rotation.id,
        actor="ops",
        kind="emergency_requested",
        from_state="draining",
        to_state="draining",
        detail={},
    )
    _due_now(world, rotation.id)

    refused = _refused(world, rotation.id, before)

    assert "not signed" in (refused.last_error or "")
    assert f"scheme {scheme!r}" in (refused.last_error or "")


@pytest.mark.parametrize("scheme", ["sha256", "hmac-sha256"])
def test_an_unsigned_event_backs_no_lifted_hold(signed: World, scheme: str) -> None:
    world = signed
    world.app.engine.request("analytics", Trigger.MANUAL, actor="ops")
    world.app.store.request_cancel("analytics", actor="ops", reason="x")
    held = world.app.store.credential_rows()["analytics"].held_at
    assert held is not None
    _append_as(
        world,
        _attacker(world, scheme),
        lambda conn: conn.execute(
            update(credentials)
            .where(credentials.c.name == "analytics")
            .values(held_at=None, held_by=None, hold_reason=None)
        ),
        rotation_id=None,
        actor="ops",
        kind="resumed",
        from_state=None,
        to_state=None,
        detail={},
    )

    problems = world.app.store.refuse_unbacked_credential("analytics")  # the scheduler asks

    assert problems and "not signed" in problems[0], problems


def test_an_operator_request_does_not_sign_forged_destroy_inputs(signed: World) -> None:
    """A forged `preempted` and previous_version on a draining rotation: the operator's
    emergency request is refused (nothing written), so no signed event records them, and
    the claim still refuses the row and puts it back."""
    from rotator.domain.errors import RequestRefused

    world = signed
    store = world.app.store
    rotation = _draining(world)
    before = _as_it_was(world)
    _forge(
        world,
        rotations,
        rotations.c.id == rotation.id,
        detail={**rotation.detail, "preempted": True},
        previous_version="forged",
    )
    head = store.events(limit=1)[0].id

    with pytest.raises(RequestRefused, match=rf"rotation {rotation.id}: .*previous_version"):
        store.request_emergency("analytics", actor="ops", reason="leak")

    assert store.events(limit=1)[0].id == head  # nothing signed
    _verify_names(world, f"rotation {rotation.id}", "previous_version")
    _due_now(world, rotation.id)
    refused = _refused(world, rotation.id, before)
    assert refused.previous_version == rotation.previous_version
    assert not refused.detail.get("preempted")


def test_the_survey_does_not_sign_a_forged_lifted_hold(signed: World) -> None:
    """A raw UPDATE lifts a hold and skews a surveyed field; the daemon's next survey
    writes nothing (no signed `surveyed` event records the forgery), and the scheduler's
    check puts the hold back."""
    from rotator.domain.errors import RequestRefused

    world = signed
    store = world.app.store
    world.app.engine.request("analytics", Trigger.MANUAL, actor="ops")
    store.request_cancel("analytics", actor="ops", reason="x")
    claim = world.app.engine.claim(store.active("analytics").id)  # type: ignore[union-attr]
    while claim is not None:
        claim = world.app.engine.step(claim)
    held = store.credential_rows()["analytics"].held_at
    assert held is not None and store.active("analytics") is None
    _forge(
        world,
        credentials,
        credentials.c.name == "analytics",
        held_at=None,
        held_by=None,
        hold_reason=None,
        secret_created_at=datetime(2000, 1, 1, tzinfo=UTC),
    )
    head = store.events(limit=1)[0].id

    with pytest.raises(RequestRefused, match=r"credential analytics: .*held_at"):
        world.app.engine.survey("analytics")

    assert store.events(limit=1)[0].id == head
    _verify_names(world, "credential analytics", "held_at")
    assert store.refuse_unbacked_credential("analytics")
    assert store.credential_rows()["analytics"].held_at == held
    assert store.verify().ok


def test_a_hold_lifted_under_a_daemon_key_stays_refused_after_later_events(
    db_url: str, tmp_path: Path
) -> None:
    """The event that last changed a hold must be an operator's, however many valid
    events follow it: a daemon key's `resumed`, then a daemon-signed `surveyed` on top,
    still leaves the credential refused (the claim's check is the chain walk's rule)."""
    from rotator.adapters.db import migrate
    from rotator.adapters.db.audit import AuditLog
    from rotator.adapters.db.connect import make_engine
    from rotator.adapters.db.store import Store
    from rotator.audit.signing import Keyring

    public: dict[str, Any] = {}
    signers: dict[str, Any] = {}
    for key_id, role in (("daemon-1", "daemon"), ("ops-alice", "operator")):
        path = tmp_path / f"{key_id}.key"
        public.update(
            keys.load_keyring(_ring(tmp_path, key_id, keys.generate_signing_key(path), role))
        )
        signers[key_id] = path
    engine = make_engine(db_url)
    migrate.upgrade(engine)

    def store(key_id: str) -> Store:
        signer = keys.load_signer(signers[key_id], public)
        return Store(engine, audit=AuditLog(Keyring(public=public, signer=signer)))

    ops, daemon = store("ops-alice"), store("daemon-1")
    ops.sync_credentials({"a": "h"})
    ops.start("a", Trigger.MANUAL, actor="ops")
    ops.request_cancel("a", actor="ops", reason="not today")
    assert daemon.resume("a", actor="rotator", reason="") is not None  # the daemon's key
    with engine.begin() as conn:
        daemon.audit.append(
            conn,
            NewEvent(
                rotation_id=None,
                credential="a",
                actor="rotator",
                kind="surveyed",
                from_state=None,
                to_state=None,
                detail={},
                at=datetime.now(UTC),
            ),
        )

    problems = daemon.refuse_unbacked_credential("a")

    assert problems and "operator's" in problems[0], problems
    assert any("hold changed by event" in p for p in daemon.verify().problems)
    engine.dispose()
