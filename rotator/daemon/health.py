"""What the daemon's probes say (docs/operations.md "Health"), apart from how they are served.

- /readyz: this process can write to its database (its heartbeat row, written every
  takeover check, is fresh) and its workers make progress (no step has run past
  `step_timeout`, and saves have not been failing for longer than that); not ready, with
  the reason, otherwise, and while it waits for the database at start or stops.
- /healthz: the process is not stuck: a tick ended (well or not) within
  `3 x tick + step_timeout`, and no worker is blocked past `step_timeout + lease` (its
  lease already let go). Not alive means restart me.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from typing import Protocol

import structlog

from rotator.config import Settings

log = structlog.get_logger("rotator.daemon")

# A SQLite volume with less free space than this cannot take a step's writes (its WAL
# frames, a grown page): the write probe alone may still fit in the WAL's reused space.
MIN_FREE_BYTES = 256 * 1024


class Progress(Protocol):
    """The engine's record of its workers' steps (rotator/engine/lease.py `Progress`)."""

    @property
    def failing_since(self) -> float | None: ...

    def longest_step(self) -> float: ...


def takeover_interval(lease: timedelta, tick: timedelta) -> float:
    """Seconds between takeover checks: a fifth of the lease, so a dead worker's rotation
    waits little past its lease; at least 0.5 s (one cheap query), at most one tick."""
    return min(max(lease.total_seconds() / 5, 0.5), max(tick.total_seconds(), 0.5))


def volume_full(url: str) -> str:
    """Why a SQLite database's volume cannot take writes ('' when it can, or not SQLite)."""
    if not url.startswith("sqlite"):
        return ""
    path = url.partition(":///")[2]
    if not path or path == ":memory:":
        return ""
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    if free < MIN_FREE_BYTES:
        return f"the database's volume is full ({free} bytes free)"
    return ""


class Health:
    """The daemon's liveness and readiness, from the marks its jobs leave here."""

    def __init__(self, settings: Settings) -> None:
        self.daemon = settings.daemon
        self.ready = False  # started, and not stopping
        self.last_tick_ok: float | None = None  # wall time of the last good tick (/readyz)
        self.last_tick_end = time.monotonic()  # a tick ended, well or not (liveness)
        self._probe_ok: float | None = None  # monotonic time of the last good write probe
        self._probe_error = "no write probe yet"

    def probe_interval(self) -> float:
        return takeover_interval(self.daemon.lease, self.daemon.tick)

    def replica_fresh(self) -> timedelta:
        """A replica whose heartbeat is older than this is not counted live."""
        return timedelta(seconds=3 * self.probe_interval() + 5)

    def probed(self, error: str | None = None) -> None:
        """A write probe's result: None when it wrote, else the first line of its error."""
        if error is None:
            self._probe_ok, self._probe_error = time.monotonic(), ""
            return
        if not self._probe_error.startswith("write probe failed"):
            log.warning("database write probe failed; not ready", error=error)
        self._probe_ok, self._probe_error = None, f"write probe failed: {error}"

    def readiness(self, progress: Progress | None, stopping: bool) -> tuple[bool, str]:
        """(ready, why not): can write to its database, and its workers make progress."""
        if progress is None:
            return False, "waiting for the database"
        if not self.ready:
            return False, "starting" if not stopping else "stopping"
        if self._probe_ok is None:
            return False, self._probe_error
        stale = time.monotonic() - self._probe_ok
        if stale > 3 * self.probe_interval() + 2:  # a probe stuck on a silent connection
            return False, f"no successful write probe for {stale:.0f}s"
        limit = self.daemon.step_limit.total_seconds()
        longest = progress.longest_step()
        if longest > limit:
            return False, f"a worker's step has run {longest:.0f}s (step_timeout {limit:.0f}s)"
        failing = progress.failing_since
        if failing is not None and time.monotonic() - failing > limit:
            since = time.monotonic() - failing
            return False, f"saves have failed for {since:.0f}s (step_timeout {limit:.0f}s)"
        return True, ""

    def liveness(self, progress: Progress | None) -> tuple[bool, str]:
        """(alive, why not): the clock ticks, and no worker is blocked past its timeout."""
        limit = self.daemon.step_limit.total_seconds()
        silent = time.monotonic() - self.last_tick_end
        bound = 3 * self.daemon.tick.total_seconds() + limit
        if self.ready and silent > bound:
            return False, f"no tick ended for {silent:.0f}s (bound {bound:.0f}s)"
        if progress is not None:
            longest = progress.longest_step()
            if longest > limit + self.daemon.lease.total_seconds():
                return False, (
                    f"a worker is blocked in a step for {longest:.0f}s "
                    f"(step_timeout {limit:.0f}s + lease)"
                )
        return True, ""
