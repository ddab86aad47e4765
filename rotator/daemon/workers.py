"""The daemon's workers: a thread pool, and the count of what is in flight (workers and
scheduler jobs) that the stop waits for."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import structlog

from rotator import redaction

log = structlog.get_logger("rotator.daemon")


class Workers:
    def __init__(self, size: int) -> None:
        self.size = size
        self.pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="worker")
        self.busy = 0  # workers submitted and not yet done
        self._jobs = 0  # scheduler jobs running now (tick, takeover, probe)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        """Count a scheduler job as in flight while it runs."""
        with self._lock:
            self._jobs += 1
        try:
            yield
        finally:
            with self._lock:
                self._jobs -= 1

    def idle(self) -> int:
        with self._lock:
            return self.size - self.busy

    def in_flight(self) -> int:
        """Workers and scheduler jobs still running."""
        with self._lock:
            return self.busy + self._jobs

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            self.busy += 1
        try:
            future: Future[None] = self.pool.submit(job)
        except RuntimeError:  # the pool is shutting down
            with self._lock:
                self.busy -= 1
            return
        future.add_done_callback(self._done)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self.busy -= 1
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.error(
                "worker failed", error=f"{type(exc).__name__}: {redaction.clip(str(exc), 300)}"
            )

    def shutdown(self) -> None:
        """Start nothing new; what runs finishes its step (the stop waits on `in_flight`)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
