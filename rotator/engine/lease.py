"""Who owns a rotation while it runs: the owner name and the heartbeat that keeps the lease."""

from __future__ import annotations

import os
import socket
import threading
import uuid as uuidlib
from datetime import timedelta

import structlog

from rotator.adapters.db.store import Claim, Store
from rotator.domain.errors import LeaseLost

log = structlog.get_logger("rotator.engine")


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuidlib.uuid4().hex[:6]}"


class Heartbeat:
    """Renews a lease while a step runs, so a slow Adobe call does not lose it."""

    def __init__(self, store: Store, claim: Claim, lease: timedelta) -> None:
        self.store, self.claim, self.lease = store, claim, lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lease-heartbeat")

    def _run(self) -> None:
        interval = max(self.lease.total_seconds() / 3, 0.5)
        while not self._stop.wait(interval):
            try:
                self.store.renew(self.claim, self.lease)
            except LeaseLost:
                return
            except Exception as exc:  # the database may be briefly away; the save will tell
                log.warning(
                    "lease renewal failed",
                    credential=self.claim.rotation.credential,
                    rotation_id=self.claim.rotation.id,
                    error=str(exc),
                )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
