"""`rotator run`: the long-lived daemon.

APScheduler 3 is only the clock: one interval job (jitter, max_instances=1, coalesce,
explicit misfire grace). All durable state and coordination live in the database, so
any number of replicas can tick side by side: a tick starts due rotations (the unique
index lets exactly one replica win each) and hands claimable ones to a worker pool.

The first SIGTERM/SIGINT stops at a step boundary: workers finish the step they are in,
save it, and release. A second signal exits at once; the saved state is still correct,
because every step is safe to repeat.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import structlog
import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from rotator import app as app_mod
from rotator.config import Settings
from rotator.domain import policy as rules
from rotator.domain.model import State, Trigger
from rotator.metrics import Metrics
from rotator.notify import Notifier

log = structlog.get_logger("rotator.daemon")


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.notifier = Notifier(settings.notifications.webhooks)
        self.app = app_mod.build(
            settings, upgrade=True, listeners=[self.metrics.on_event, self.notifier]
        )
        self.engine = self.app.engine
        self.engine.step_observer = self.metrics.steps
        self.pool = ThreadPoolExecutor(
            max_workers=settings.daemon.workers, thread_name_prefix="worker"
        )
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._stop = threading.Event()
        self._signals = 0
        self._ready = False
        self._last_tick_ok: float | None = None
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self._crons = {
            c.name: CronTrigger.from_crontab(s, timezone="UTC")
            for c in settings.credentials
            if (s := settings.schedule(c))
        }
        self._server: uvicorn.Server | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.engine.sync()
        self._serve_http()
        tick = self.settings.daemon.tick.total_seconds()
        self.scheduler.add_job(
            self.tick,
            "interval",
            seconds=tick,
            id="tick",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(tick)),
            jitter=self.settings.daemon.jitter.total_seconds(),
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.start()
        log.info(
            "daemon started",
            owner=self.engine.owner,
            tick=tick,
            workers=self.settings.daemon.workers,
            listen=self.settings.daemon.listen,
            credentials=len(self.settings.credentials),
        )
        self._ready = True
        while not self._stop.wait(0.5):
            pass
        self._shutdown()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal: exiting now; unfinished steps resume on restart")
            os._exit(130)
        log.info("stopping at the next step boundary", signal=signal.Signals(signum).name)
        self._ready = False
        self.engine.stopping.set()
        self._stop.set()

    def _shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)
        self.pool.shutdown(wait=True)
        self.notifier.close()
        if self._server is not None:
            self._server.should_exit = True
        self.app.close()
        log.info("daemon stopped")

    # --- the tick ------------------------------------------------------------------------

    def tick(self) -> None:
        if self._stop.is_set():
            return
        started = time.monotonic()
        try:
            self._start_due()
            self._dispatch()
            self.metrics.ticked(time.monotonic() - started)
            self._last_tick_ok = time.time()
        except Exception as exc:  # the database may be away: log, and the next tick retries
            log.error("tick failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")

    def _start_due(self) -> None:
        store, engine, now = self.app.store, self.engine, datetime.now(UTC)
        rows = store.credential_rows()
        active = {r.credential: r for r in store.unfinished()}
        self.metrics.set_ages({n: r.secret_created_at for n, r in rows.items()})
        self.metrics.unfinished.set(len(active))
        self.metrics.attention.set(
            sum(1 for r in active.values() if r.state is State.NEEDS_ATTENTION)
        )
        for cfg in self.settings.credentials:
            if self._stop.is_set():
                return
            if cfg.name in active:
                continue
            row = rows.get(cfg.name)
            policy = self.settings.policy(cfg)
            if row is None or row.secret_created_at is None:
                if (
                    row is None
                    or row.surveyed_at is None
                    or (now - row.surveyed_at >= policy.poll_interval)
                ):
                    self._submit(lambda name=cfg.name: engine.survey(name))
                continue
            cron = self._crons.get(cfg.name)
            reference = row.last_rotated_at or row.secret_created_at
            last_scheduled = _first_fire_after(cron, reference, now) if cron else None
            if rules.is_due(
                secret_created_at=row.secret_created_at,
                last_rotated_at=row.last_rotated_at,
                last_scheduled_at=last_scheduled,
                last_failed_at=row.last_failed_at,
                policy=policy,
                window=self.settings.window(cfg),
                now=now,
            ):
                rotation = engine.request(
                    cfg.name, Trigger.SCHEDULED, actor="scheduler", reason="due"
                )
                log.info("rotation started", credential=cfg.name, rotation_id=rotation.id)

    def _dispatch(self) -> None:
        """Keep every idle worker busy with claimable rotations."""
        with self._busy_lock:
            idle = self.settings.daemon.workers - self._busy
        for _ in range(max(0, idle)):
            self._submit(self._work)

    def _work(self) -> None:
        while not self._stop.is_set() and self.engine.run_due(limit=1):
            pass

    def _submit(self, job: Any) -> None:
        with self._busy_lock:
            self._busy += 1
        future: Future[Any] = self.pool.submit(job)
        future.add_done_callback(self._done)

    def _done(self, future: Future[Any]) -> None:
        with self._busy_lock:
            self._busy -= 1
        exc = future.exception()
        if exc is not None:
            log.error("worker failed", error=f"{type(exc).__name__}: {str(exc)[:300]}")

    # --- health and metrics --------------------------------------------------------------

    def http_app(self) -> Starlette:
        tick = self.settings.daemon.tick.total_seconds()

        async def healthz(_: Request) -> Response:
            return JSONResponse({"status": "ok"})

        async def readyz(_: Request) -> Response:
            fresh = (
                self._last_tick_ok is not None and time.time() - self._last_tick_ok < 3 * tick + 10
            )
            ok = self._ready and fresh
            return JSONResponse(
                {"ready": ok, "last_tick": self._last_tick_ok}, status_code=200 if ok else 503
            )

        async def metrics(_: Request) -> Response:
            return PlainTextResponse(
                self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
            )

        return Starlette(
            routes=[
                Route("/healthz", healthz),
                Route("/readyz", readyz),
                Route("/metrics", metrics),
            ]
        )

    def _serve_http(self) -> None:
        host, _, port = self.settings.daemon.listen.rpartition(":")
        config = uvicorn.Config(
            self.http_app(),
            host=host.strip("[]"),
            port=int(port),
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        # uvicorn leaves signal handling alone off the main thread; the daemon owns signals.
        self._server = server
        threading.Thread(target=server.run, daemon=True, name="http").start()


def _first_fire_after(cron: CronTrigger, reference: datetime, now: datetime) -> datetime | None:
    """The first cron time after the last rotation (or the secret's birth), if it has passed."""
    fire: datetime | None = cron.get_next_fire_time(None, reference)
    return fire if fire is not None and fire <= now else None
