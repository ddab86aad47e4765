"""Who owns a rotation while it runs: the owner name and the heartbeat that keeps the lease.

How a crashed worker's rotation is taken over in seconds, and why this way.

Ownership is a row lease: `lease_owner` + `lease_expires_at` on the rotation, claimed with
`UPDATE ... WHERE the lease is free` (FOR UPDATE SKIP LOCKED on PostgreSQL) that bumps
`fence`; every state write is guarded by `id = :id AND lease_owner = :me AND fence = :f`
(RotationStore.save / .renew: zero rows means LeaseLost, stop without writing), and every
irreversible call at Adobe or AWS is preceded by `StepContext.guard()`, which renews the
lease in the database, so a worker that stalled past its lease cannot write anywhere after
another took over. Expiry is judged by the database's clock on PostgreSQL (one clock for
all replicas); SQLite has one host, one clock.

What takeover costs is therefore the lease's length. It used to be 2 minutes ("longer than
the slowest call with its retries"); it is now `[daemon] lease` = 10 s, renewed by the
heartbeat below every third of it while a step runs (Oban's peer lease is renewed at half
its life; a third leaves room for one failed renewal before the lease can lapse), so a live
worker keeps its rotation however slow Adobe is, and a dead one frees it within 10 s of its
last renewal. Each daemon runs a cheap takeover check every `lease / 5` (daemon.py), so the
rotation is claimed about 2 s after that (bench/takeover.py: about 10-11 s from `kill -9`).

Alternatives weighed:
- A session-level `pg_advisory_lock` per rotation (or per process, as a liveness signal) is
  released the moment PostgreSQL sees the connection die, so takeover would be near-instant
  after `kill -9`. But it binds ownership to one pooled connection: a pool hands that session
  to other threads, PgBouncer in transaction mode shares it between clients (the lock leaks
  or vanishes), a half-open TCP connection keeps it for minutes without keepalives, and
  SQLite has nothing like it. The design forbids owning a rotation this way; a lease row
  works the same on both databases, through any pool.
- River's `JobSetStateIfRunning` (write only while the job is still `running`) guards a
  finish by state, not by owner: after a rescue the old executor's write can still land.
  The fence is stricter and already here; River's rescuer also waits an hour by default.
- Oban's Lifeline rescues jobs of dead nodes on a schedule (minutes); Oban's Peer shows the
  short-lease-renewed-early pattern used here.

What no lease can promise: a request already on the wire when its worker's lease lapses
may still land, because Adobe and AWS take no fence. That needs a worker cut off from the
database (its heartbeat failing) for a whole lease while its own call to Adobe or AWS is
still in flight; the 2-minute lease had the same window for calls longer than 2 minutes.
Most late writes are harmless: AWSPENDING is put under the rotation's own ClientRequestToken,
a label move names the version it moves from (AWS refuses it once the label moved on),
deletes are by uuid, and the next owner reads Adobe and AWS before it writes. The one that
is not (a promotion landing after the next owner rolled back) is the residual risk of any
lease without fencing at the resource.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid as uuidlib
from datetime import timedelta

import structlog

from rotator.domain.errors import LeaseLost
from rotator.ports import Claim, LeaseStore

log = structlog.get_logger("rotator.engine")


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuidlib.uuid4().hex[:6]}"


class Progress:
    """What this process's workers have done lately, for /readyz and /healthz: when a step
    was last saved, since when saves have been failing, and the steps running now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last_saved: float | None = None  # monotonic
        self.failing_since: float | None = None
        self._running: dict[int, Heartbeat] = {}

    def saved(self) -> None:
        with self._lock:
            self.last_saved, self.failing_since = time.monotonic(), None

    def failed(self, since: float | None = None) -> None:
        """A save failed; no progress since `since` (the failed step's start) or now."""
        with self._lock:
            if self.failing_since is None:
                self.failing_since = since or time.monotonic()

    def enter(self, beat: Heartbeat) -> None:
        with self._lock:
            self._running[id(beat)] = beat

    def leave(self, beat: Heartbeat) -> None:
        with self._lock:
            self._running.pop(id(beat), None)

    def longest_step(self) -> float:
        """Seconds the longest-running step has run (0 when none runs)."""
        now = time.monotonic()
        with self._lock:
            starts = [b.step_started for b in self._running.values() if b.step_started]
        return max((now - s for s in starts), default=0.0)


class Heartbeat:
    """Renews a lease every third of its length while a step runs and shows progress, so a
    slow Adobe call does not lose it; stops for good once the lease is lost (the next save
    tells the step).

    Leases follow progress: `step()` marks the start of each step, and a step still running
    `step_timeout` after it began is presumed stuck (a call that never returns, a database
    session gone silent). The heartbeat then lets the lease go at once (releases it under
    the fence) and stops renewing; the rotation is taken over by the next claim (within
    `lease / 5`, by any worker of any replica), and this worker abandons without writing:
    `expired` makes its save and its `guard()` raise LeaseLost, and the fence refuses any
    write that slips past. This is River's and Oban's rescue of a job past its timeout,
    with the fence in place of their state check. Bound: a stuck step keeps its rotation at
    most `step_timeout` + `lease / 3` (when the release cannot reach the database, the
    lease runs out `lease` after the last renewal instead).
    """

    def __init__(
        self,
        store: LeaseStore,
        claim: Claim,
        lease: timedelta,
        *,
        step_timeout: timedelta | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.store, self.claim, self.lease = store, claim, lease
        self.step_timeout = step_timeout.total_seconds() if step_timeout else None
        self.progress = progress
        self.step_started: float | None = None
        self.expired = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lease-heartbeat")

    def step(self) -> None:
        """A step starts now (its timeout counts from here)."""
        self.step_started = time.monotonic()

    def _stuck(self) -> bool:
        started = self.step_started
        return (
            self.step_timeout is not None
            and started is not None
            and time.monotonic() - started > self.step_timeout
        )

    def _let_go(self) -> None:
        self.expired.set()
        log.error(
            "step ran past daemon.step_timeout; letting its lease go, the worker abandons it",
            credential=self.claim.rotation.credential,
            rotation_id=self.claim.rotation.id,
            step_timeout=self.step_timeout,
        )
        try:
            self.store.release(self.claim)
        except Exception as exc:  # the lease then runs out on its own
            log.warning("lease release failed", error=str(exc).splitlines()[0][:200])

    def _run(self) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.5)
        check = min(interval, 0.5)
        last = time.monotonic()
        while not self._stop.wait(check):
            if self._stuck():
                self._let_go()
                return
            if time.monotonic() - last < interval:
                continue
            last = time.monotonic()
            try:
                self.store.renew(self.claim, self.lease)
            except LeaseLost:
                log.warning(
                    "lease lost to another worker; the step in flight will not be saved",
                    credential=self.claim.rotation.credential,
                    rotation_id=self.claim.rotation.id,
                )
                return
            except Exception as exc:  # the database may be briefly away; the save will tell
                log.warning(
                    "lease renewal failed",
                    credential=self.claim.rotation.credential,
                    rotation_id=self.claim.rotation.id,
                    error=str(exc),
                )

    def __enter__(self) -> Heartbeat:
        if self.progress is not None:
            self.progress.enter(self)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.progress is not None:
            self.progress.leave(self)
        self._thread.join(timeout=5)
