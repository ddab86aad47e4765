"""/metrics: fleet series read from the database at scrape time, plus this process's own work.

The names are docs/metrics.md's, exactly. Fleet series (rotations, attention, holds, secret
ages, drains, the outbox) come from `rotator.observe.insights` when Prometheus scrapes, so every
replica reports the whole fleet, the CLI's rotations included; a counter kept in memory
would count only what this process did. Process series (ticks, steps, calls to Adobe and
AWS) are this replica's. Every series exists from the first scrape (a missing series is
not a zero), and none has a `_created` sibling: fleet series come from a custom collector
(which adds none) and the histograms live on a registry that leaves them out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from typing import Any

import prometheus_client
import structlog
from prometheus_client import CollectorRegistry, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rotator.domain.model import ENDINGS, State, Trigger
from rotator.observe.insights import Insights

log = structlog.get_logger("rotator.observe.metrics")

ADOBE_OPERATIONS = ("token", "list", "add", "delete", "invalidate")
AWS_OPERATIONS = ("get", "describe", "put", "stage")
OUTCOMES = ("ok", "error")

DISTRIBUTION = "adobe-secret-rotator"  # pyproject's [project] name (the command is rotator)

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # histograms


class FleetCollector(Collector):
    """Reads the fleet's figures from the database on every scrape."""

    def __init__(self, insights: Insights) -> None:
        self.insights = insights

    def collect(self) -> Iterator[Metric]:
        try:
            fleet = self.insights.fleet()
        except Exception as exc:  # the database is away: rotator_ready says so
            log.warning("metrics: cannot read the fleet", error=type(exc).__name__)
            return
        rotations = CounterMetricFamily(
            "rotator_rotations",
            "Rotations that reached an end state, ever.",
            labels=["outcome", "trigger"],
        )
        for outcome in (ending.value for ending in ENDINGS):
            for trigger in Trigger:
                count = fleet.ended.get((outcome, trigger.value), 0)
                rotations.add_metric([outcome, trigger.value], count)
        yield rotations
        unfinished = GaugeMetricFamily(
            "rotator_rotations_unfinished", "Rotations not yet ended, by state.", labels=["state"]
        )
        for state in State:
            if not state.terminal:
                unfinished.add_metric([state.value], fleet.unfinished.get(state.value, 0))
        yield unfinished
        yield GaugeMetricFamily(
            "rotator_credentials_needing_attention",
            "Credentials whose rotation waits for a person.",
            value=fleet.needing_attention,
        )
        per_credential: dict[str, GaugeMetricFamily] = {
            name: GaugeMetricFamily(name, text, labels=["credential"])
            for name, text in (
                (
                    "rotator_credential_needs_attention",
                    "1 while this credential waits for a person, else 0.",
                ),
                (
                    "rotator_credential_on_hold",
                    "1 while scheduled rotations are held (rotator cancel, until rotator resume).",
                ),
                (
                    "rotator_secret_age_seconds",
                    "Age of the current Adobe secret (Adobe's created_at).",
                ),
                ("rotator_secret_max_age_seconds", "The credential's max_age policy."),
                (
                    "rotator_drain_deadline_timestamp_seconds",
                    "While draining: when the old secret may be deleted.",
                ),
                (
                    "rotator_drain_old_secret_last_used_timestamp_seconds",
                    "While draining: the latest use of the old secret ever seen (0: never).",
                ),
            )
        }
        for c in fleet.credentials:
            labels = [c.name]
            per_credential["rotator_credential_needs_attention"].add_metric(
                labels, 1 if c.needs_attention else 0
            )
            per_credential["rotator_credential_on_hold"].add_metric(labels, 1 if c.on_hold else 0)
            if c.secret_created_at is not None:
                age = (fleet.now - c.secret_created_at).total_seconds()
                per_credential["rotator_secret_age_seconds"].add_metric(labels, age)
            if c.max_age is not None:
                per_credential["rotator_secret_max_age_seconds"].add_metric(
                    labels, c.max_age.total_seconds()
                )
            if c.draining and c.drain_deadline is not None:
                per_credential["rotator_drain_deadline_timestamp_seconds"].add_metric(
                    labels, c.drain_deadline.timestamp()
                )
                last = c.drain_old_last_used_at
                per_credential["rotator_drain_old_secret_last_used_timestamp_seconds"].add_metric(
                    labels, last.timestamp() if last else 0
                )
        yield from per_credential.values()
        backlog = fleet.outbox
        yield GaugeMetricFamily(
            "rotator_outbox_pending",
            "Notifications not yet delivered nor expired.",
            value=backlog.pending,
        )
        oldest = backlog.oldest_pending_at
        yield GaugeMetricFamily(
            "rotator_outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered notification (0 when none).",
            value=max(0.0, (fleet.now - oldest).total_seconds()) if oldest else 0.0,
        )
        yield CounterMetricFamily(
            "rotator_outbox_expired",
            "Notifications given up after the delivery expiry.",
            value=backlog.expired,
        )


class ProcessCollector(Collector):
    """This process's readiness and its calls to Adobe and AWS (from the adapters' tallies)."""

    def __init__(
        self,
        ready: Callable[[], bool],
        adobe_calls: Callable[[], Mapping[tuple[str, str], int]],
        aws_calls: Callable[[], Mapping[tuple[str, str], int]],
    ) -> None:
        self._ready = ready
        self._adobe = adobe_calls
        self._aws = aws_calls

    def collect(self) -> Iterator[Metric]:
        try:
            ready = self._ready()
        except Exception:
            ready = False
        yield GaugeMetricFamily(
            "rotator_ready",
            "1 when this daemon's database is reachable and its schema current, else 0.",
            value=1 if ready else 0,
        )
        for name, text, operations, calls in (
            (
                "rotator_adobe_requests",
                "Calls this process made to Adobe.",
                ADOBE_OPERATIONS,
                self._adobe,
            ),
            (
                "rotator_aws_requests",
                "Calls this process made to AWS Secrets Manager.",
                AWS_OPERATIONS,
                self._aws,
            ),
        ):
            family = CounterMetricFamily(name, text, labels=["operation", "outcome"])
            tally = dict(calls())
            for operation in operations:
                for outcome in OUTCOMES:
                    family.add_metric([operation, outcome], tally.get((operation, outcome), 0))
            yield family


class Metrics:
    """The daemon's registry: the two collectors above plus its tick and step histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.steps = Histogram(
            "rotator_step_seconds",
            "Time one engine step took, by the state it started in.",
            ["state"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        for state in State:
            if not state.terminal:
                self.steps.labels(state=state.value)
        self.last_tick = Gauge(
            "rotator_last_successful_tick_timestamp_seconds",
            "Unix time of the last scheduler tick that completed.",
            registry=self.registry,
        )
        self.tick_seconds = Histogram(
            "rotator_tick_seconds",
            "Time one scheduler tick took.",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
        )
        build = Info(
            "rotator_build",
            "The rotator version this process runs (always 1).",
            registry=self.registry,
        )
        build.info({"version": metadata.version(DISTRIBUTION)})
        self.chain_hold = Histogram(
            "rotator_audit_chain_hold_seconds",
            "How long one transaction held the audit chain's head row (from its lock to "
            "commit or rollback): every other append in the fleet waits this long.",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self._lock = threading.Lock()

    def fleet(
        self,
        *,
        budget: float,
        live: Callable[[], int],
        waited: Callable[[], float],
        writes: Callable[[], float],
    ) -> None:
        """The fleet's shared AWS write budget and the replicas the database knows."""
        Gauge(
            "rotator_aws_write_budget_per_second",
            "AWS writes per second allowed to the whole fleet ([aws] write_rate), shared by "
            "all replicas through the database.",
            registry=self.registry,
        ).set(budget)
        Gauge(
            "rotator_replicas_live",
            "Replicas whose heartbeat row in the database is fresh (this one included).",
            registry=self.registry,
        ).set_function(lambda: _or_nan(live))
        self.registry.register(_BudgetCollector(waited, writes))

    def attach(self, *collectors: Any) -> None:
        for collector in collectors:
            self.registry.register(collector)

    def ticked(self, seconds: float) -> None:
        self.tick_seconds.observe(seconds)
        self.last_tick.set(time.time())

    def render(self) -> bytes:
        with self._lock:  # one scrape at a time reads the database
            return generate_latest(self.registry)


def _or_nan(read: Callable[[], int]) -> float:
    try:
        return float(read())
    except Exception:  # the database is away: the gauge says so rather than failing the scrape
        return float("nan")


class _BudgetCollector(Collector):
    """This process's draw on the fleet's AWS write budget, as counters."""

    def __init__(self, waited: Callable[[], float], writes: Callable[[], float]) -> None:
        self._waited, self._writes = waited, writes

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "rotator_aws_write_budget_wait_seconds",
            "Seconds this process's AWS writes waited for their slot in the fleet budget.",
            value=self._waited(),
        )
        yield CounterMetricFamily(
            "rotator_aws_write_budget_writes",
            "AWS writes this process paced through the fleet budget.",
            value=self._writes(),
        )
