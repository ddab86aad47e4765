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
are in, save it and release the lease; nothing new starts; the process exits 0, within
`[daemon] stop_timeout` (a worker still blocked in a call then is left behind: the process
exits 0 anyway, logging how many, and their steps resume on the next start). A second
signal exits at once (status 128+signal): the saved state is still correct, because every
step is safe to repeat, and the next start resumes from it.

Started while the database is away, the daemon waits for it (`[database] start_wait`,
logging each attempt) instead of exiting at once.

The health and metrics endpoint (rotator/daemon/http.py: uvicorn in a thread, on a socket
bound before anything else) serves /metrics (Prometheus text) and two probes that tell the
truth (rotator/daemon/health.py). The workers and what the stop waits for are in
rotator/daemon/workers.py. Every adapter comes from the composition root (rotator/app.py).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import FrameType

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from rotator import app as app_mod
from rotator import hardening, redaction
from rotator.audit.chain import Checkpoint
from rotator.config import Settings
from rotator.daemon import lock as daemon_lock
from rotator.daemon.clock import open_app, schedule
from rotator.daemon.health import Health, Progress, takeover_interval, volume_full
from rotator.daemon.http import HttpServer, bind, http_app
from rotator.daemon.workers import Workers
from rotator.domain import outlook
from rotator.domain.errors import InvariantError
from rotator.domain.model import Rotation, Trigger
from rotator.observe.insights import credential_rules
from rotator.observe.metrics import FleetCollector, Metrics, ProcessCollector
from rotator.observe.notify import Deliverer
from rotator.ports import AlreadyActive

log = structlog.get_logger("rotator.daemon")
SURVEY_EVERY = outlook.SURVEY_EVERY
__all__ = ["Daemon", "takeover_interval"]


class Daemon:
    def __init__(self, settings: Settings, *, owner: str | None = None) -> None:
        self.settings = settings
        self.owner = owner
        self.metrics = Metrics()
        self.deliverer: Deliverer | None = None  # sends the outbox's webhooks
        self._delivery_thread: threading.Thread | None = None
        self.workers = Workers(settings.daemon.workers)
        self.health = Health(settings)
        self._surveying: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._signals = 0
        self._forced = False  # the stop's bound passed with work still in flight
        self.scheduler = BackgroundScheduler(timezone="UTC")
        # Policy, window and cron per credential, merged once: what `rotator plan` and
        # `rotator status` judge with too.
        self._rules = credential_rules(settings)
        self._http: HttpServer | None = None
        self.app: app_mod.App | None = None
        self._last_checkpoint: Checkpoint | None = None

    @property
    def pool(self) -> ThreadPoolExecutor:
        return self.workers.pool

    @property
    def _busy(self) -> int:
        return self.workers.busy

    @property
    def _last_tick_ok(self) -> float | None:
        return self.health.last_tick_ok

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
        app = self._start()
        try:
            app.engine.sync()
            self.probe()
            self._start_clock()
            self._start_delivery()
            log.info(
                "daemon started",
                config=self.settings.source,
                database=app_mod.database_name(self.settings),
                owner=app.engine.owner,
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

    def _start(self) -> app_mod.App:
        """Serve /healthz at once (it answers while the database is awaited), build the
        app, and wire the metrics to it."""
        listener = bind(self.settings.daemon.listen)
        try:
            self._serve_http(listener)
            self.app = app = open_app(self.settings, self.owner, self._stop)
            if self.settings.notifications.webhooks:
                self.deliverer = app_mod.deliverer(
                    self.settings, app.store.engine, owner=app.engine.owner
                )
        except BaseException:
            self._stop_http()
            listener.close()
            raise
        app.store.audit.keyring()  # load the audit keys now: a bad key stops the start
        app.engine.step_observer = self.metrics.steps
        app.store.chain_hold_observer = self.metrics.chain_hold.observe
        self._attach_metrics(app)
        if self._stop.is_set():  # a signal arrived while the database was being migrated
            app.engine.stopping.set()
        return app

    def _start_clock(self) -> None:
        schedule(
            self.scheduler,
            self.settings,
            tick=self.tick,
            takeover=self.takeover,
            probe=self.probe,
            checkpoint=self.checkpoint,
            probe_interval=self.health.probe_interval(),
        )
        self.health.ready = True

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
        """Fleet series from the read service at scrape time; process series from the
        adapters."""
        fleet = app.fleet
        budget = getattr(app.aws, "_writes", None)
        self.metrics.fleet(
            budget=self.settings.aws.write_rate,
            live=lambda: fleet.live(self.health.replica_fresh()),
            waited=lambda: float(getattr(budget, "waited", 0.0)),
            writes=lambda: float(getattr(budget, "writes", 0)),
        )
        self.metrics.attach(
            FleetCollector(app.insights),
            ProcessCollector(
                ready=lambda: self.readiness()[0],
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
        self.health.ready = False
        self._stop.set()
        if self.app is not None:
            self.app.engine.stopping.set()

    def _shutdown(self) -> None:
        """Stop within `[daemon] stop_timeout`: workers finish their step and save it; one
        still blocked in a call when the bound passes is left behind (os._exit), since its
        saved state is correct and the next start (or another replica) resumes it."""
        self.health.ready = False
        self._stop.set()
        deadline = time.monotonic() + self.settings.daemon.stop_timeout.total_seconds()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)  # a tick in progress returns at once: _stop
        self.workers.shutdown()
        while self.workers.in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._delivery_thread is not None:
            self._delivery_thread.join(timeout=max(0.0, deadline - time.monotonic()))
        left = self.workers.in_flight()
        self._forced = bool(left)
        if self._forced:
            log.warning(
                "stop_timeout passed with work in flight; exiting without it "
                "(its saved state is correct; the next start resumes it)",
                in_flight=left,
                stop_timeout=self.settings.daemon.stop_timeout.total_seconds(),
            )
        else:
            self._leave()
        self._stop_http()
        if self.app is not None and not self._forced:
            self.app.close()
        log.info("daemon stopped")
        if self._forced:
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(0)

    def _leave(self) -> None:
        """A clean stop: close the webhook sender, remove this replica's heartbeat row."""
        if self.deliverer is not None:
            self.deliverer.close()
        if self.app is not None:
            try:
                self.app.fleet.leave(self.app.engine.owner)
            except Exception as exc:  # the row goes stale by itself
                log.warning("replica row not removed", error=str(exc)[:200])

    # --- the jobs ------------------------------------------------------------------------

    def tick(self) -> None:
        if self._stop.is_set():
            return
        started = time.monotonic()
        try:
            with self.workers.job():
                due = self._start_due()
                self._dispatch(due)
            self.metrics.ticked(time.monotonic() - started)
            self.health.last_tick_ok = time.time()
        except Exception as exc:  # the database may be away: log, and the next tick retries
            log.error("tick failed", error=f"{type(exc).__name__}: {redaction.clip(str(exc), 300)}")
        finally:
            self.health.last_tick_end = time.monotonic()

    def takeover(self) -> None:
        """Hand claimable work to idle workers between ticks (a dead worker's lease ran out,
        an emergency was requested, a retry came due)."""
        if self._stop.is_set() or self.app is None:
            return
        try:
            with self.workers.job():
                self._dispatch(self.app.store.claimable())
        except Exception as exc:  # the database may be away: the next run retries
            log.warning(
                "takeover check failed",
                error=f"{type(exc).__name__}: {redaction.clip(str(exc), 300)}",
            )

    def probe(self) -> None:
        """The readiness write probe: this replica's heartbeat row (bounded by the database
        timeouts). A disk that cannot take a write, a lost or stuck database make it fail."""
        if self._stop.is_set() or self.app is None:
            return
        try:
            with self.workers.job():
                self.app.fleet.heartbeat(self.app.engine.owner)
                full = volume_full(self.settings.database.url)
            if full:
                raise OSError(full)
            self.health.probed()
        except Exception as exc:
            self.health.probed((str(exc).splitlines() or [""])[0][:200])

    def _progress(self) -> Progress | None:
        return self.app.engine.progress if self.app is not None else None

    def readiness(self) -> tuple[bool, str]:
        """(ready, why not): can write to its database, and its workers make progress."""
        return self.health.readiness(self._progress(), self._stop.is_set())

    def liveness(self) -> tuple[bool, str]:
        """(alive, why not): the clock ticks, and no worker is blocked past its timeout."""
        return self.health.liveness(self._progress())

    # --- the tick's work -----------------------------------------------------------------

    def _start_due(self) -> int:
        """Survey, start due rotations; return how many rotations have work now."""
        if self.app is None:
            raise InvariantError("the daemon works only once its app is built")
        # The one judgment `rotator plan` and `rotator status` show (the read service over
        # domain/outlook.py), on the store's clock (PostgreSQL's where replicas meet, I10),
        # so a replica whose own clock runs ahead starts nothing early: re-survey daily (a
        # secret may be replaced outside rotator), an unknown age every poll interval; an
        # unknown age or a hold starts nothing; else age, cron, window, cooldown.
        configured = [c.name for c in self.settings.credentials]
        active: list[Rotation] = []  # unfinished rotations, started ones included
        for seen in self.app.insights.status(self._rules, configured):
            judged = seen.outlook
            if self._stop.is_set():
                break
            if judged.rotation is not None:
                active.append(judged.rotation)
                continue
            if judged.survey:
                policy = self._rules[judged.name].policy
                self._survey(judged.name, outlook.survey_period(seen.facts, policy))
            if judged.due and (rotation := self._start_rotation(judged.name)) is not None:
                active.append(rotation)
        # Rotations started in this very tick were inserted after the read: judge them by a
        # fresh clock, or they would wait a whole tick for a worker.
        # "Work now" is written twice on purpose: `outlook.has_work` judges rotations already
        # read (here and in `rotator plan`, which claim nothing: no write transaction), and
        # the claim's SQL (adapters/db/leases._due) selects them atomically under the lock;
        # tests/integration/test_plan_matches_tick.py holds the two together.
        later = self.app.store.now()
        return sum(1 for r in active if outlook.has_work(r, later))

    def _start_rotation(self, name: str) -> Rotation | None:
        """Start a scheduled rotation through the store directly, not engine.request: a
        replica that loses the race (the unique index, I3) learns it here and logs nothing.
        Returns the credential's unfinished rotation (None: refused)."""
        if self.app is None:
            raise InvariantError("the daemon works only once its app is built")
        store = self.app.store
        if store.refuse_unbacked_credential(name):
            return None  # its row (a hold lifted?) disagrees with its signed events
        try:
            rotation = store.start(name, Trigger.SCHEDULED, actor="scheduler", reason="due")
        except AlreadyActive as exc:  # another replica started it
            return exc.rotation
        log.info("rotation started", credential=name, rotation_id=rotation.id)
        return rotation

    def _survey(self, name: str, period: timedelta) -> None:
        """Survey `name` on a worker, unless this process or another replica already does:
        a fleet claim (one per credential and survey period) picks one replica."""
        if self.app is None:
            raise InvariantError("the daemon works only once its app is built")
        engine = self.app.engine
        with self._lock:
            if name in self._surveying:
                return
            self._surveying.add(name)
        try:
            hold = min(period, max(self.settings.daemon.tick * 2, timedelta(seconds=1)))
            taken = self.app.fleet.claim(f"survey:{name}", engine.owner, hold)
        except Exception:
            with self._lock:
                self._surveying.discard(name)
            raise
        if not taken:
            with self._lock:
                self._surveying.discard(name)
            return

        def job() -> None:
            try:
                engine.survey(name)
            finally:
                with self._lock:
                    self._surveying.discard(name)

        self.workers.submit(job)

    def _dispatch(self, due: int) -> None:
        """Give each rotation with work now an idle worker (claims decide who gets which).

        A worker goes on claiming while there is work, so a backlog larger than the pool
        drains within one tick; `due` also bounds its loop, so a rotation the engine
        releases without moving on (its credential left the config) cannot spin it.
        """
        for _ in range(min(self.workers.idle(), due)):
            self.workers.submit(lambda: self._work(budget=due))

    def _work(self, budget: int) -> None:
        if self.app is None:
            raise InvariantError("the daemon works only once its app is built")
        for _ in range(budget):
            if self._stop.is_set() or not self.app.engine.run_due(limit=1):
                return

    # --- health and metrics --------------------------------------------------------------

    def _serve_http(self, listener: socket.socket) -> None:
        server = HttpServer(
            http_app(
                self.liveness,
                self.readiness,
                lambda: self.health.last_tick_ok,
                self.metrics.render,
            )
        )
        self._http = server
        server.serve(listener)

    def _stop_http(self) -> None:
        if self._http is not None:
            self._http.stop()
