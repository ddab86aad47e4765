"""`rotator plan` says what the daemon's next tick then does (issue 28).

One database holds credentials in every situation plan tells apart: due by age, due by
cron, outside the window, on hold, in the failure cooldown, draining (due to poll, and
waiting), needing attention, never surveyed, surveyed without an age, not due. Plan's
judgment (Insights.outlooks, what `rotator plan` prints) is read first; then one tick of
the daemon (`Daemon._start_due`, with the real store) and the claim a worker makes
(`Store.claim`, what `Engine.run_due` drives) run, and what they did must be exactly what
plan said: the same credentials surveyed, the same rotations started, the same stepped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rotator import config
from rotator.adapters.db import migrate
from rotator.adapters.db.insights import InsightsDb
from rotator.adapters.db.store import Store, make_engine
from rotator.cli.inspect import status_row
from rotator.daemon import service as daemon_mod
from rotator.domain.evidence import Evidence
from rotator.domain.machine import drain_deadline
from rotator.domain.model import State, Trigger
from rotator.observe.insights import Insights, credential_rules

DAY = timedelta(days=1)


def _cred(name: str, index: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "org_id": "1",
        "credential_id": str(100 + index),
        "client_id": f"{index:032x}",
        "secret_id": f"adobe/{name}",
        **extra,
    }


def _window_later(now: datetime) -> str:
    """A one-hour window two hours from now (so now is outside it)."""
    start = now + timedelta(hours=2)
    end = start + timedelta(hours=1)
    return f"{start:%H:%M}-{end:%H:%M}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    made = Store(make_engine(db_url))
    migrate.upgrade(made.engine)
    yield made
    made.engine.dispose()


def _insights(store: Store) -> Insights:
    return Insights(InsightsDb(store.engine, store.audit))


def _situations(store: Store) -> config.Settings:
    now = store.now()
    names = [
        "by_age",
        "by_cron",
        "outside_window",
        "on_hold",
        "cooldown",
        "draining_due",
        "draining_waits",
        "attention",
        "never_surveyed",
        "age_unknown",
        "not_due",
    ]
    extra: dict[str, dict[str, Any]] = {
        "by_cron": {"schedule": "0 * * * *"},
        "outside_window": {"window": _window_later(now)},
    }
    settings = config.from_mapping(
        {
            "database": {"url": "sqlite://"},
            "defaults": {"max_age": "90d", "failure_cooldown": "6h", "poll_interval": "15m"},
            "credentials": [_cred(n, i, **extra.get(n, {})) for i, n in enumerate(names)],
        }
    )
    store.sync_credentials({n: "h" for n in names})
    old, young = now - 91 * DAY, now - 10 * DAY
    ages = dict.fromkeys(names, old) | {"by_cron": young, "not_due": young, "age_unknown": None}
    for name in names:
        if name != "never_surveyed":
            store.update_credential(
                name, secret_created_at=ages[name], surveyed_at=now - timedelta(minutes=1)
            )
    store.update_credential("on_hold", held_at=now - DAY, held_by="cli:ops", hold_reason="audit")
    store.update_credential("cooldown", last_failed_at=now - timedelta(hours=1))
    seen = Evidence(
        polled_at=now - timedelta(minutes=1), old_last_used_at=now - timedelta(minutes=30)
    )
    for name, state, next_at in (
        ("draining_due", State.DRAINING, now - timedelta(seconds=5)),
        ("draining_waits", State.DRAINING, now + timedelta(minutes=10)),
        ("attention", State.NEEDS_ATTENTION, now + timedelta(minutes=10)),
    ):
        # Through the fenced save, as the engine writes (a raw UPDATE is a forgery the
        # claim refuses: no signed event backs it).
        rotation = store.start(name, Trigger.MANUAL, actor="test")
        (claim,) = store.claim("test", timedelta(seconds=30), rotation_id=rotation.id)
        new = replace(
            claim.rotation,
            state=state,
            resume_state=State.DRAINING if state is State.NEEDS_ATTENTION else None,
            old_uuid=f"old-{name}",
            new_uuid=f"new-{name}",
            promoted_at=now - timedelta(hours=1),
            next_attempt_at=next_at,
            evidence=seen,
            last_error="old secret still in use" if state is State.NEEDS_ATTENTION else None,
        )
        store.release(store.save(claim, new, kind="test_setup", actor="test"))
    return settings


def test_plan_says_what_the_next_tick_does(store: Store) -> None:
    settings = _situations(store)
    plan = {o.name: o for o in _insights(store).outlooks(credential_rules(settings))}

    # What plan says, situation by situation.
    ticks = {name: o.tick for name, o in plan.items()}
    assert ticks == {
        "by_age": "start",
        "by_cron": "start",
        "outside_window": "wait",
        "on_hold": "wait",
        "cooldown": "wait",
        "draining_due": "step",
        "draining_waits": "wait",
        "attention": "wait",
        "never_surveyed": "survey",
        "age_unknown": "wait",
        "not_due": "wait",
    }
    kinds = {name: {h.kind for h in o.holds} for name, o in plan.items()}
    assert kinds["outside_window"] == {"window"}
    assert kinds["on_hold"] == {"hold"}
    assert kinds["cooldown"] == {"cooldown"}
    assert kinds["attention"] == {"needs_attention"}
    assert kinds["never_surveyed"] == kinds["age_unknown"] == {"not_surveyed"}
    assert kinds["by_age"] == kinds["by_cron"] == kinds["not_due"] == set()
    assert any(w.startswith("age:") for w in plan["by_age"].why)
    assert any(w.startswith("cron '0 * * * *'") for w in plan["by_cron"].why)
    assert plan["not_due"].due_at is not None and plan["not_due"].due_at > plan["not_due"].now
    assert plan["outside_window"].starts_at is not None
    assert plan["outside_window"].starts_at > plan["outside_window"].now
    assert plan["on_hold"].starts_at is None  # until a person resumes it
    cooling = plan["cooldown"]
    assert cooling.starts_at is not None and cooling.starts_at > cooling.now + timedelta(hours=4)
    draining = plan["draining_waits"]
    assert draining.step is not None and draining.rotation is not None
    assert draining.step.state is State.DRAINING
    assert draining.step.deadline == drain_deadline(
        draining.rotation, draining.rotation.evidence, settings.policy(settings.credentials[6])
    )
    assert draining.step.waits_for and "old-draining_waits" in draining.step.waits_for
    assert any("GET" in call for call in draining.step.adobe)
    retried = plan["attention"].step
    assert retried is not None and retried.state is State.DRAINING  # its resume state

    # One daemon tick, with the real store: what it surveys, starts and hands to workers.
    daemon = daemon_mod.Daemon(settings)
    surveyed: list[str] = []
    started: list[str] = []

    real_start = store.start

    def start(name: str, trigger: Trigger, *, actor: str, reason: str) -> Any:
        started.append(name)
        return real_start(name, trigger, actor=actor, reason=reason)

    store.start = start  # type: ignore[method-assign]
    daemon.app = type(  # type: ignore[assignment]
        "App", (), {"store": store, "engine": None, "insights": _insights(store)}
    )()
    daemon._survey = lambda name, period: surveyed.append(name)  # type: ignore[method-assign]
    try:
        with_work = daemon._start_due()
    finally:
        store.start = real_start  # type: ignore[method-assign]
        daemon.pool.shutdown()
    assert sorted(surveyed) == sorted(n for n, o in plan.items() if o.survey)
    assert sorted(started) == sorted(n for n, o in plan.items() if o.tick == "start")
    stepped = {n for n, o in plan.items() if o.tick == "step"}
    assert with_work == len(started) + len(stepped)

    # What a worker then claims (Engine.run_due drives exactly these): the rotations just
    # started and the ones plan said would step; none of those plan said wait.
    claims = store.claim("worker", timedelta(seconds=30), limit=50)
    assert sorted(c.rotation.credential for c in claims) == sorted({*started, *stepped})
    for claim in claims:
        judged = plan[claim.rotation.credential]
        if judged.step is not None:
            assert judged.step.state is claim.rotation.state


def test_plan_reads_only(store: Store) -> None:
    """Judging writes nothing: the rows and the audit trail are as they were."""
    settings = _situations(store)
    before = (store.credential_rows(), store.unfinished(), store.events(limit=1000))
    _insights(store).outlooks(credential_rules(settings))
    assert (store.credential_rows(), store.unfinished(), store.events(limit=1000)) == before


def test_plan_uses_the_database_clock(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL a host clock 100 days ahead changes nothing (I10); on SQLite the host
    clock is the store's clock, as for the daemon."""
    settings = _situations(store)
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's clock is the host's")

    class Ahead(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + timedelta(days=100)

    import rotator.observe.insights as insights_mod

    monkeypatch.setattr(insights_mod, "datetime", Ahead)
    plan = {o.name: o for o in _insights(store).outlooks(credential_rules(settings))}
    assert plan["not_due"].tick == "wait"
    assert abs(plan["not_due"].now - datetime.now(UTC)) < timedelta(minutes=5)


def test_status_says_what_the_tick_does(store: Store) -> None:
    """`rotator status` shows the tick's own judgment (window, cron, cooldown, hold included,
    on the database's clock), not `created + max_age`: a credential it shows due now is one
    the tick starts, and one the tick leaves alone shows when it may start, or a hold."""
    settings = _situations(store)
    rules = credential_rules(settings)
    seen = _insights(store).status(rules)
    now = {s.outlook.name: s.outlook.now for s in seen}
    rows = {r["name"]: r for r in (status_row(s) for s in seen)}

    daemon = daemon_mod.Daemon(settings)
    started: list[str] = []
    real_start = store.start

    def start(name: str, trigger: Trigger, *, actor: str, reason: str) -> Any:
        started.append(name)
        return real_start(name, trigger, actor=actor, reason=reason)

    store.start = start  # type: ignore[method-assign]
    daemon.app = type(  # type: ignore[assignment]
        "App", (), {"store": store, "engine": None, "insights": _insights(store)}
    )()
    daemon._survey = lambda name, period: None  # type: ignore[method-assign]
    try:
        daemon._start_due()
    finally:
        store.start = real_start  # type: ignore[method-assign]
        daemon.pool.shutdown()

    def due_now(row: dict[str, Any]) -> bool:
        due = row["due_at"]
        return due is not None and datetime.fromisoformat(due) <= now[row["name"]]

    shown_due = {
        name for name, r in rows.items() if r["rotation"] is None and not r["hold"] and due_now(r)
    }
    assert shown_due == set(started) == {"by_age", "by_cron"}
    # What holds the others back shows in their due date, not an age long past.
    created_plus_max_age = {
        name: datetime.fromisoformat(r["secret_created_at"]) + timedelta(days=90)
        for name, r in rows.items()
        if r["secret_created_at"]
    }
    for name in ("outside_window", "cooldown"):
        assert created_plus_max_age[name] < now[name]  # due by age alone ...
        assert datetime.fromisoformat(rows[name]["due_at"]) > now[name]  # ... not yet started
    assert rows["cooldown"]["holds"] and rows["outside_window"]["holds"]
    assert rows["on_hold"]["hold"] is not None and "on_hold" not in started
    by_cron = datetime.fromisoformat(rows["by_cron"]["due_at"])
    assert by_cron == now["by_cron"] < created_plus_max_age["by_cron"]  # the cron made it due
    assert rows["never_surveyed"]["due_at"] is None and not rows["never_surveyed"]["surveyed"]
