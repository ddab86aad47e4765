"""The fleet figures /metrics serves, read from the database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine

from rotator.adapters.db.insights import InsightsDb
from rotator.adapters.db.outbox import Receiver
from rotator.adapters.db.store import Store
from rotator.domain.model import Evidence, Policy, State, Trigger
from rotator.observe.insights import Insights
from rotator.observe.metrics import FleetCollector

MINUTE = timedelta(minutes=1)


def test_the_fleet_as_the_database_holds_it(engine: Engine) -> None:
    store = Store(engine, receivers=[Receiver("ops", frozenset({"started"}))])
    store.sync_credentials({"alpha": "h", "beta": "h", "gamma": "h"})
    born = datetime.now(UTC) - timedelta(days=10)
    store.update_credential("alpha", secret_created_at=born, held_at=datetime.now(UTC))
    # alpha: a manual rotation that completed; beta: draining, old secret used 5 min ago;
    # gamma: waiting for a person.
    done = store.start("alpha", Trigger.MANUAL, actor="t")
    [claim] = store.claim("w", MINUTE, rotation_id=done.id)
    store.save(claim, claim.rotation.evolve(state=State.COMPLETED), kind="completed", actor="w")
    promoted = datetime.now(UTC) - timedelta(hours=1)
    used = datetime.now(UTC) - timedelta(minutes=5)
    draining = store.start("beta", Trigger.SCHEDULED, actor="t")
    [claim] = store.claim("w", MINUTE, rotation_id=draining.id)
    store.save(
        claim,
        claim.rotation.evolve(
            state=State.DRAINING,
            promoted_at=promoted,
            evidence=Evidence(polled_at=used, old_last_used_at=used, new_last_used_at=None),
        ),
        kind="draining",
        actor="w",
        keep_lease=MINUTE,
    )
    stuck = store.start("gamma", Trigger.EMERGENCY, actor="t", reason="leak")
    [claim] = store.claim("w", MINUTE, rotation_id=stuck.id)
    store.save(claim, claim.rotation.evolve(state=State.NEEDS_ATTENTION), kind="x", actor="w")

    policy = Policy(quiet_period=timedelta(hours=25), max_age=timedelta(days=30))
    fleet = Insights(InsightsDb(engine), {"alpha": policy, "beta": policy}).fleet()

    assert fleet.ended == {("completed", "manual"): 1}
    assert fleet.unfinished == {"draining": 1, "needs_attention": 1}
    assert fleet.needing_attention == 1
    by_name = {c.name: c for c in fleet.credentials}
    assert [by_name[n].needs_attention for n in ("alpha", "beta", "gamma")] == [0, 0, 1]
    assert by_name["alpha"].secret_created_at == born
    assert [by_name[n].on_hold for n in ("alpha", "beta", "gamma")] == [True, False, False]
    assert by_name["alpha"].max_age == timedelta(days=30) and by_name["gamma"].max_age is None
    beta = by_name["beta"]
    assert beta.draining and beta.drain_old_last_used_at == used
    # quiet_period + usage_lag (unset: a tenth of quiet_period, at most an hour) after the
    # later sign of life, the use
    assert beta.drain_deadline == used + timedelta(hours=26)
    assert fleet.outbox.pending == 3  # three rotations started, one receiver of `started`

    registry = CollectorRegistry()
    registry.register(
        FleetCollector(Insights(InsightsDb(engine), {"alpha": policy, "beta": policy}))
    )
    text = generate_latest(registry).decode()
    assert 'rotator_rotations_total{outcome="completed",trigger="manual"} 1.0' in text
    assert 'rotator_rotations_total{outcome="abandoned",trigger="emergency"} 0.0' in text
    assert 'rotator_rotations_unfinished{state="draining"} 1.0' in text
    assert 'rotator_credential_needs_attention{credential="gamma"} 1.0' in text
    assert 'rotator_credential_on_hold{credential="alpha"} 1.0' in text
    assert 'rotator_secret_max_age_seconds{credential="alpha"} 2.592e+06' in text
    [line] = [x for x in text.splitlines() if x.startswith("rotator_drain_deadline")]
    assert abs(float(line.split()[-1]) - (used + timedelta(hours=26)).timestamp()) < 0.01
    assert "rotator_outbox_pending 3.0" in text and "rotator_outbox_expired_total 0.0" in text
    assert "_created" not in text
