"""`rotator run`: the long-lived daemon.

APScheduler 3 is only the clock: one interval job (jitter, max_instances=1, coalesce,
explicit misfire grace). All durable state and coordination live in the database, so
any number of replicas can tick side by side. A tick:

1. re-reads every configured credential's row and, every `poll_interval`, surveys the
   credential (AWSCURRENT's uuid and its age at Adobe), so a secret replaced by hand or an
   age learnt late still makes it due;
2. starts a rotation for every due credential (the unique index lets one replica win);
3. hands as many workers as there are due rotations the job of claiming and driving them:
   new ones, draining polls whose next poll has come, steps whose retry is due.

A credential on hold (`rotator cancel` puts it there, `rotator resume` lifts it) gets no
scheduled rotation; an emergency ignores holds.

Between ticks a second, cheaper job (`takeover`, every `lease / 5`, between 0.5 s and the
tick) counts the rotations a claim would take now and hands them to idle workers. So a
rotation whose worker died is taken over within about one lease of the worker's last
renewal, and an emergency request or a retry that comes due waits for no tick.

Signals: the first SIGTERM/SIGINT stops at a step boundary. Workers finish the step they
are in, save it and release the lease; nothing new starts; the process exits 0. A second
signal exits at once (status 128+signal): the saved state is still correct, because every
step is safe to repeat, and the next start resumes from it.

The health and metrics endpoint (uvicorn in a thread, on a socket bound before anything
else, so a busy port is a one-line configuration error) serves /healthz (the process is
up), /readyz (a tick completed recently) and /metrics (Prometheus text).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import FrameType

import structlog
import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from rotator import app as app_mod
from rotator import daemon_lock, hardening, notify, redaction
from rotator.adapters.db import migrate
from rotator.adapters.db.connect import safe_url
from rotator.audit import Checkpoint
from rotator.config import Settings
from rotator.domain import outlook
from rotator.domain.errors import ConfigError, InvariantError
from rotator.domain.model import Trigger
from rotator.insights import Insights, credential_rules, facts
from rotator.metrics import FleetCollector, Metrics, ProcessCollector

log = structlog.get_logger("rotator.daemon")
SURVEY_EVERY = outlook.SURVEY_EVERY


class Daemon:
    def __init__(self, settings: Settings, *, owner: str | None = None) -> None:
        self.settings = settings
        self.owner = owner
        self.metrics = Metrics()
        self.deliverer: notify.Deliverer | None = None  # sends the outbox's webhooks
        self._delivery_thread: threading.Thread | None = None
        self.pool = ThreadPoolExecutor(
            max_workers=settings.daemon.workers, thread_name_prefix="worker"
        )
        self._busy = 0
        self._surveying: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._signals = 0
        self._ready = False
        self._last_tick_ok: float | None = None
        self.scheduler = BackgroundScheduler(timezone="UTC")
        # Settings are frozen: merge each credential's policy once, not on every tick.
        self._policies = {c.name: settings.policy(c) for c in settings.credentials}
        # Policy, window and cron per credential: what `rotator plan` judges with too.
        self._rules = credential_rules(settings)
        self._server: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        self.app: app_mod.App | None = None
        self._last_checkpoint: Checkpoint | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until a signal; return the exit status (0 after a graceful stop)."""
        hardening.harden_process()  # also when started without the CLI (tests, embedding)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        lock = daemon_lock.acquire(self.settings.database.url)  # SQLite: one daemon per file
        try:
            return self._run()
        finally:
            if lock is not None:
                lock.release()

    def _run(self) -> int:
        listener = _bind(self.settings.daemon.listen)
        try:
            self.app = app_mod.build(self.settings, upgrade=True, owner=self.owner)
            if self.settings.notifications.webhooks:
                self.deliverer = notify.deliverer(
                    self.settings, self.app.store.engine, owner=self.app.engine.owner
                )
        except BaseException:
            listener.close()
            raise
        self._audit_setup(self.app)
        self.app.engine.step_observer = self.metrics.steps
        self._attach_metrics(self.app)
        if self._stop.is_set():  # a signal arrived while the database was being migrated
            self.app.engine.stopping.set()
        try:
            self.app.engine.sync()
            self._serve_http(listener)
            self._start_clock()
            self._start_delivery()
            log.info(
                "daemon started",
                config=self.settings.source,
                database=safe_url(self.settings.database.url),
                owner=self.app.engine.owner,
                tick=self.settings.daemon.tick.total_seconds(),
                workers=self.settings.daemon.workers,
                listen=self.settings.daemon.listen,
                credentials=len(self.settings.credentials),
            )
            while not self._stop.wait(0.5):
                pass
        finally:
            self._shutdown()
        return 0

    def _start_clock(self) -> None:
        tick = self.settings.daemon.tick.total_seconds()
        self.scheduler.add_job(
            self.tick,
            "interval",
            seconds=tick,
            id="tick",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(tick)),
            jitter=self.settings.daemon.jitter.total_seconds() or None,
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.add_job(
            self.takeover,
            "interval",
            seconds=takeover_interval(self.settings.daemon.lease, self.settings.daemon.tick),
            id="takeover",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=1,
        )
        self.scheduler.add_job(
            self.checkpoint,
            "interval",
            seconds=self.settings.audit.checkpoint_interval.total_seconds(),
            id="audit-checkpoint",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=60,
        )
        self.scheduler.start()
        self._ready = True

    def _audit_setup(self, app: app_mod.App) -> None:
        """Load the audit keys now (a bad key stops the start, not a rotation later), and
        record the daemon's verified identity (AWS caller, OS user) on its events."""
        from rotator.adapters.identity import IdentityProbe

        aws = self.settings.aws
        probe = IdentityProbe(aws.region, aws.endpoint_url, session=app.aws.session)
        app.store.audit.identity = probe.result
        app.store.audit.keyring()

    def checkpoint(self) -> None:
        """Publish the chain head outside the database (when it moved since the last one)."""
        if self._stop.is_set() or self.app is None:
            return
        try:
            head = self.app.store.checkpoint()
            if head is not None and head != self._last_checkpoint:
                self.app.store.audit.publish(head)
                self._last_checkpoint = head
        except Exception as exc:  # the database may be away: the next one tries again
            log.warning(
                "audit checkpoint failed",
                error=f"{type(exc).__name__}: {redaction.clip(str(exc), 200)}",
            )

    def _start_delivery(self) -> None:
        """Webhooks go out from the outbox on a thread of their own, stopped with the rest."""
        deliverer = self.deliverer
        if deliverer is None:
            return
        self._delivery_thread = threading.Thread(
            target=deliverer.run, args=(self._stop,), daemon=True, name="webhooks"
        )
        self._delivery_thread.start()

    def _attach_metrics(self, app: app_mod.App) -> None:
        """Fleet series from the database at scrape time; process series from the adapters."""
        engine = app.store.engine
        self.metrics.attach(
            FleetCollector(Insights(engine, self._policies)),
            ProcessCollector(
                ready=lambda: migrate.is_current(engine),
                adobe_calls=lambda: app.adobe.outcomes,
                aws_calls=lambda: app.aws.outcomes,
            ),
        )

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            log.warning(
                "second signal: exiting now; unfinished steps resume on restart", signal=name
            )
            os._exit(128 + signum)
        log.info("stopping at the next step boundary", signal=name)
        self._ready = False
        self._stop.set()
        if self.app is not None:
            self.app.engine.stopping.set()

    def _shutdown(self) -> None:
        self._ready = False
        self._stop.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)  # a tick in progress returns at once: _stop
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self._delivery_thread is not None:
            self._delivery_thread.join(timeout=30)
        if self.deliverer is not None:
            self.deliverer.close()
        if self._server is not None:
            self._server.should_exit = True
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
        if self.app is not None:
            self.app.close()
        log.info("daemon stopped")

    # --- the tick ------------------------------------------------------------------------

    def tick(self) -> None:
        if self._stop.is_set():
            return
        started = time.monotonic()
        try:
            due = self._start_due()
            self._dispatch(due)
            self.metrics.ticked(time.monotonic() - started)
            self._last_tick_ok = time.time()
        except Exception as exc:  # the database may be away: log, and the next tick retries
            log.error("tick failed", error=f"{type(exc).__name__}: {redaction.clip(str(exc), 300)}")

    def takeover(self) -> None:
        """Hand claimable work to idle workers between ticks (a dead worker's lease ran out,
        an emergency was requested, a retry came due)."""
        if self._stop.is_set() or self.app is None:
            return
        try:
            self._dispatch(self.app.store.claimable())
        except Exception as exc:  # the database may be away: the next run retries
            log.warning(
                "takeover check failed",
                error=f"{type(exc).__name__}: {redaction.clip(str(exc), 300)}",
            )

    def _start_due(self) -> int:
        """Survey, start due rotations; return how many rotations have work now."""
        if self.app is None:
            raise InvariantError("the daemon works only once its app is built")
        # The store's clock (PostgreSQL's where replicas meet, I10): due-ness compares it with
        # stored times, so a replica whose own clock runs ahead starts nothing early.
        store, engine = self.app.store, self.app.engine
        now = store.now()
        # Unfinished first, then the rows: a rotation that finishes between the two reads
        # has already written its fresh facts (at promotion), so it cannot look due again.
        active = {r.credential: r for r in store.unfinished()}
        rows = store.credential_rows()
        configured = [c.name for c in self.settings.credentials]
        for cfg in self.settings.credentials:
            if self._stop.is_set():
                break
            if cfg.name in active:
                continue
            # The one judgment `rotator plan` shows (domain/outlook.py): re-survey daily (a
            # secret may be replaced outside rotator), an unknown age every poll interval;
            # an unknown age or a hold starts nothing; else age, cron, window, cooldown.
            seen = outlook.judge(
                cfg.name, facts(rows.get(cfg.name)), None, self._rules[cfg.name], now
            )
            if seen.survey:
                self._survey(cfg.name)
            if seen.due:
                if store.refuse_unbacked_credential(cfg.name):
                    continue  # its row (a hold lifted?) disagrees with its signed events
                rotation = engine.request(
                    cfg.name, Trigger.SCHEDULED, actor="scheduler", reason="due"
                )
                active[cfg.name] = rotation
                log.info("rotation started", credential=cfg.name, rotation_id=rotation.id)
        names = set(configured)  # a rotation of a credential no longer configured stays put
        # Rotations started in this very tick were inserted after `now`: judge them by a
        # fresh clock, or they would wait a whole tick for a worker.
        later = store.now()
        return sum(
            1 for r in active.values() if r.credential in names and outlook.has_work(r, later)
        )

    def _survey(self, name: str) -> None:
        if self.app is None:
            raise InvariantError("the daemon works only once its app is built")
        engine = self.app.engine
        with self._lock:
            if name in self._surveying:
                return
            self._surveying.add(name)

        def job() -> None:
            try:
                engine.survey(name)
            finally:
                with self._lock:
                    self._surveying.discard(name)

        self._submit(job)

    def _dispatch(self, due: int) -> None:
        """Give each rotation with work now an idle worker (claims decide who gets which).

        A worker goes on claiming while there is work, so a backlog larger than the pool
        drains within one tick; `due` also bounds its loop, so a rotation the engine
        releases without moving on (its credential left the config) cannot spin it.
        """
        with self._lock:
            idle = self.settings.daemon.workers - self._busy
        for _ in range(min(idle, due)):
            self._submit(lambda: self._work(budget=due))

    def _work(self, budget: int) -> None:
        if self.app is None:
            raise InvariantError("the daemon works only once its app is built")
        for _ in range(budget):
            if self._stop.is_set() or not self.app.engine.run_due(limit=1):
                return

    def _submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self._busy += 1
        try:
            future: Future[None] = self.pool.submit(job)
        except RuntimeError:  # the pool is shutting down
            with self._lock:
                self._busy -= 1
            return
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._busy -= 1
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error(
                "worker failed", error=f"{type(exc).__name__}: {redaction.clip(str(exc), 300)}"
            )

    # --- health and metrics --------------------------------------------------------------

    def http_app(self) -> Starlette:
        tick = self.settings.daemon.tick.total_seconds()

        async def healthz(_: Request) -> Response:
            return JSONResponse({"status": "ok"})

        async def readyz(_: Request) -> Response:
            last = self._last_tick_ok
            fresh = last is not None and time.time() - last < 3 * tick + 10
            ok = self._ready and fresh
            return JSONResponse({"ready": ok, "last_tick": last}, status_code=200 if ok else 503)

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

    def _serve_http(self, listener: socket.socket) -> None:
        config = uvicorn.Config(self.http_app(), log_config=None, access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        # Off the main thread uvicorn installs no signal handlers: the daemon owns signals.
        self._server = server
        self._http_thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, daemon=True, name="http"
        )
        self._http_thread.start()


def takeover_interval(lease: timedelta, tick: timedelta) -> float:
    """Seconds between takeover checks: a fifth of the lease, so a dead worker's rotation
    waits little past its lease; at least 0.5 s (one cheap query), at most one tick."""
    return min(max(lease.total_seconds() / 5, 0.5), max(tick.total_seconds(), 0.5))


def _bind(listen: str) -> socket.socket:
    """Bind [daemon] listen now, so a taken port fails the start with one clear line."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"daemon.listen: cannot listen on {listen}: {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock
