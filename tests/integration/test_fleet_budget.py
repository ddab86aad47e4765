"""The fleet's shared AWS write budget and fleet claims, on SQLite and PostgreSQL (issue 29)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import Engine

from rotator.adapters.db.fleet import Fleet, WriteBudget
from rotator.app import PACING_MARGIN


def test_writes_of_several_budgets_on_one_row_never_exceed_the_rate(engine: Engine) -> None:
    rate = 10.0  # paced a little below, as app.write_budget does (PACING_MARGIN)
    budgets = [WriteBudget(engine, "aws-writes:us-east-1:", rate * PACING_MARGIN) for _ in range(3)]
    times: list[float] = []
    lock = threading.Lock()

    def writer(budget: WriteBudget) -> None:
        for _ in range(4):
            budget.acquire()
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=writer, args=(b,)) for b in budgets for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    times.sort()
    most = max(sum(1 for u in times if t <= u < t + 1) for t in times)
    assert most <= rate
    paced = (len(times) - 1) / (rate * PACING_MARGIN)
    assert times[-1] - times[0] >= paced - 0.05  # spaced, not merely counted


def test_a_fleet_claim_picks_one_replica_until_it_lapses(engine: Engine) -> None:
    fleet = Fleet(engine)
    hold = timedelta(milliseconds=500)
    assert fleet.claim("survey:a", "one", hold)
    assert not fleet.claim("survey:a", "two", hold)
    assert fleet.claim("survey:b", "two", hold)
    time.sleep(0.6)
    assert fleet.claim("survey:a", "two", hold)


def test_replicas_count_live_heartbeats(engine: Engine) -> None:
    fleet = Fleet(engine)
    fleet.heartbeat("one")
    fleet.heartbeat("two")
    fleet.heartbeat("one")
    assert fleet.live(timedelta(seconds=30)) == 2
    fleet.leave("two")
    assert fleet.live(timedelta(seconds=30)) == 1
