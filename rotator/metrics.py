"""Prometheus metrics of one rotator process, on a registry of its own (no global state)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from rotator.domain.model import Rotation


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rotations = Counter(
            "rotator_rotations",
            "Rotations that reached an end state or needed attention.",
            ["outcome", "trigger"],
            registry=self.registry,
        )
        self.steps = Histogram(
            "rotator_step_seconds",
            "Time one engine step took, by the state it started in.",
            ["state"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.secret_age = Gauge(
            "rotator_secret_age_seconds",
            "Age of the current Adobe secret per credential.",
            ["credential"],
            registry=self.registry,
        )
        self.attention = Gauge(
            "rotator_credentials_needing_attention",
            "Credentials whose rotation waits for a person.",
            registry=self.registry,
        )
        self.unfinished = Gauge(
            "rotator_rotations_unfinished",
            "Rotations not yet in an end state.",
            registry=self.registry,
        )
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

    def on_event(self, kind: str, rotation: Rotation) -> None:
        """Engine listener: count outcomes."""
        if kind in {"completed", "failed", "cancelled", "needs_attention"}:
            self.rotations.labels(outcome=kind, trigger=rotation.trigger.value).inc()

    def set_ages(self, created: dict[str, datetime | None]) -> None:
        now = datetime.now(UTC)
        for name, moment in created.items():
            if moment is not None:
                self.secret_age.labels(credential=name).set((now - moment).total_seconds())

    def ticked(self, seconds: float) -> None:
        self.tick_seconds.observe(seconds)
        self.last_tick.set(time.time())

    def render(self) -> bytes:
        return generate_latest(self.registry)
