"""The daemon's sense of time: APScheduler's jobs, and the wait for the database at start.

APScheduler 3 is only the clock: one interval job per concern (jitter on the tick,
max_instances=1, coalesce, explicit misfire grace). All durable state and coordination
live in the database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from rotator import app as app_mod
from rotator.config import Settings
from rotator.daemon.health import takeover_interval

log = structlog.get_logger("rotator.daemon")

Job = Callable[[], None]


def schedule(
    scheduler: BackgroundScheduler,
    settings: Settings,
    *,
    tick: Job,
    takeover: Job,
    probe: Job,
    checkpoint: Job,
    probe_interval: float,
) -> None:
    """The tick (at once, then every `[daemon] tick`, jittered), the takeover check, the
    write probe and the audit checkpoint, each at most one at a time; then start."""
    daemon = settings.daemon
    every = daemon.tick.total_seconds()
    scheduler.add_job(
        tick,
        "interval",
        seconds=every,
        id="tick",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=max(1, int(every)),
        jitter=daemon.jitter.total_seconds() or None,
        next_run_time=datetime.now(UTC),
    )
    checkpoint_every = settings.audit.checkpoint_interval.total_seconds()
    for name, job, seconds, grace in (
        ("takeover", takeover, takeover_interval(daemon.lease, daemon.tick), 1),
        ("probe", probe, probe_interval, 1),
        ("audit-checkpoint", checkpoint, checkpoint_every, 60),
    ):
        scheduler.add_job(
            job,
            "interval",
            seconds=seconds,
            id=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=grace,
        )
    scheduler.start()


def open_app(settings: Settings, owner: str | None, stop: threading.Event) -> app_mod.App:
    """Build the app, waiting for an unreachable database up to `[database] start_wait`
    (a Kubernetes CrashLoopBackOff would delay recovery by minutes), logging each try.
    Its audit events record the daemon's verified identity (AWS caller, OS user)."""
    limit = settings.database.start_wait.total_seconds()
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return app_mod.build(settings, upgrade=True, owner=owner, verified_identity=True)
        except app_mod.DatabaseUnreachable as exc:
            waited = time.monotonic() - started
            if waited >= limit or stop.is_set():
                raise
            pause = min(2.0 ** min(attempt - 1, 4) / 2, 5.0, limit - waited)
            log.warning(
                "database unreachable at start; waiting for it",
                attempt=attempt,
                waited_s=round(waited, 1),
                start_wait_s=limit,
                error=str(exc)[:300],
            )
            if stop.wait(pause):
                raise
