"""Publishing the audit chain's head outside the database, and wiring the audit log.

A checkpoint (sequence number, event id, MAC) that left the database is what lets
`rotator audit verify --checkpoint` prove that no event up to it was removed: the chain
head row in the database can be rewound by anyone who can write there, a log line that
was already shipped cannot. Sinks: a structured log line `audit checkpoint` (always), and
a JSON-lines file (optional, `[audit] checkpoint_file`). Publishing is best effort: a
sink that fails is logged and never fails the rotation that triggered it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from rotator.adapters.db.audit import AuditLog
from rotator.audit import Checkpoint, Keyring

if TYPE_CHECKING:
    from rotator.config import Settings

log = structlog.get_logger("rotator.audit")


class CheckpointSink:
    """Logs every checkpoint and appends it to `path` (JSON lines) when set."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, checkpoint: Checkpoint) -> None:
        log.info("audit checkpoint", **checkpoint.as_dict())
        if not self.path:
            return
        line = json.dumps({"event": "audit checkpoint", **checkpoint.as_dict()}) + "\n"
        try:
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            log.warning(
                "audit checkpoint not written",
                path=self.path,
                error=exc.strerror or type(exc).__name__,
            )


def keyring_loader(settings: Settings) -> Callable[[], Keyring]:
    """Reads the [audit] keys when first needed (an AWS call for a key kept there)."""

    def load() -> Keyring:
        from rotator import keys

        sources = [k.source() for k in settings.audit.keys]
        if not sources:
            return Keyring()
        loaded = keys.load_all(
            sources, region=settings.aws.region, endpoint_url=settings.aws.endpoint_url
        )
        return Keyring({k: v.material for k, v in loaded.items()}, signing=sources[0].id)

    return load


def audit_log(settings: Settings) -> AuditLog:
    """The audit log a Store appends with: keys from [audit], checkpoints to its sinks."""
    return AuditLog(
        keyring_loader(settings), publish=CheckpointSink(settings.audit.checkpoint_file)
    )
