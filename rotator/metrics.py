"""Prometheus metrics of one rotator process, on a registry of its own (no global state).

Outcome counters are created at zero for every outcome and trigger, so a dashboard or an
alert sees a series before the first rotation ends (a missing series is not a zero).
Secret ages are computed when /metrics is scraped, from the creation times the last tick
read, so they never lag by a tick.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from rotator.domain.model import Rotation, Trigger

OUTCOMES = ("completed", "failed", "cancelled", "needs_attention")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rotations = Counter(
            "rotator_rotations",
            "Rotations that reached an end state, or started needing attention.",
            ["outcome", "trigger"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            for trigger in Trigger:
                self.rotations.labels(outcome=outcome, trigger=trigger.value)
        self.steps = Histogram(
            "rotator_step_seconds",
            "Time one engine step took, by the state it started in.",
            ["state"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.secret_age = Gauge(
            "rotator_secret_age_seconds",
            "Age of the current Adobe secret per credential (from Adobe's created_at).",
            ["credential"],
            registry=self.registry,
        )
        self.attention = Gauge(
            "rotator_credentials_needing_attention",
            "Credentials whose rotation waits for a person.",
            registry=self.registry,
        )
        self.credential_attention = Gauge(
            "rotator_credential_needs_attention",
            "1 while this credential's rotation waits for a person, else 0.",
            ["credential"],
            registry=self.registry,
        )
        self.unfinished = Gauge(
            "rotator_rotations_unfinished",
            "Rotations not yet in an end state.",
            registry=self.registry,
        )
        self.last_tick = Gauge(
            "rotator_last_successful_tick_timestamp_seconds",
            "Unix time of the last scheduler tick that completed without an error.",
            registry=self.registry,
        )
        self.tick_seconds = Histogram(
            "rotator_tick_seconds",
            "Time one scheduler tick took.",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
        )
        self._created: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def on_event(self, kind: str, rotation: Rotation) -> None:
        """Engine listener: count outcomes."""
        if kind in OUTCOMES:
            self.rotations.labels(outcome=kind, trigger=rotation.trigger.value).inc()

    def observe_credentials(
        self, created: dict[str, datetime | None], needing_attention: set[str]
    ) -> None:
        """What a tick learnt about every configured credential."""
        with self._lock:
            self._created = {name: at for name, at in created.items() if at is not None}
        for name in created:
            self.credential_attention.labels(credential=name).set(
                1 if name in needing_attention else 0
            )
        self.attention.set(len(needing_attention))

    def ticked(self, seconds: float) -> None:
        self.tick_seconds.observe(seconds)
        self.last_tick.set(time.time())

    def render(self) -> bytes:
        now = datetime.now(UTC)
        with self._lock:
            for name, moment in self._created.items():
                self.secret_age.labels(credential=name).set((now - moment).total_seconds())
        return generate_latest(self.registry)
