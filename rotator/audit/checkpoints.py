"""Publishing the audit chain's head outside the database, and wiring the audit log.

A checkpoint (sequence number, event id, MAC) that left the database is what lets
`rotator audit verify --checkpoint` prove that no event up to it was removed: the chain
head row in the database can be rewound by anyone who can write there, a log line that
was already shipped cannot. Sinks: a structured log line `audit checkpoint` (always), and
a JSON-lines file (optional, `[audit] checkpoint_file`) and an S3 object per checkpoint
(optional, `[audit] checkpoint_s3`; with S3 Object Lock nobody can remove them). Publishing
is best effort: a sink that fails is logged and never fails the rotation that triggered it.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from rotator.adapters.db.audit import AuditLog
from rotator.audit.chain import Checkpoint
from rotator.audit.signing import Keyring

if TYPE_CHECKING:
    from rotator.config import Settings

log = structlog.get_logger("rotator.audit.chain")


class CheckpointSink:
    """Logs every checkpoint, appends it to `path` (JSON lines) and puts it to S3
    (`s3://bucket/prefix/<seq>.json`) when those are set."""

    def __init__(
        self, path: str = "", s3_uri: str = "", s3_client: Callable[[], Any] | None = None
    ) -> None:
        self.path = path
        self.s3_uri = s3_uri
        self._s3_client = s3_client
        self._lock = threading.Lock()

    def __call__(self, checkpoint: Checkpoint) -> None:
        log.info("audit checkpoint", **checkpoint.as_dict())
        if self.s3_uri:
            self._put_s3(checkpoint)
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

    def _put_s3(self, checkpoint: Checkpoint) -> None:
        bucket, _, prefix = self.s3_uri.removeprefix("s3://").partition("/")
        key = f"{prefix.strip('/')}/{checkpoint.seq:012d}.json".lstrip("/")
        body = json.dumps({"event": "audit checkpoint", **checkpoint.as_dict()})
        try:
            client = self._s3_client() if self._s3_client else _s3(None)
            client.put_object(
                Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json"
            )
        except Exception as exc:  # best effort: the log line and the file still carry it
            log.warning("audit checkpoint not put to S3", uri=self.s3_uri, error=type(exc).__name__)


def _s3(settings: Settings | None) -> Any:
    import boto3

    aws = settings.aws if settings else None
    return boto3.session.Session().client(
        "s3",
        region_name=aws.region if aws else None,
        endpoint_url=(aws.endpoint_url or None) if aws else None,
    )


def keyring_loader(settings: Settings) -> Callable[[], Keyring]:
    """Reads the [audit] keys when first needed (an AWS call for an HMAC key kept there):
    the public keyring, this writer's private key, and the HMAC keys of older events."""

    def load() -> Keyring:
        from rotator.audit import keys

        audit = settings.audit
        public = keys.load_keyring(config_path(settings, audit.keyring)) if audit.keyring else {}
        signer = (
            keys.load_signer(config_path(settings, audit.signing_key), public)
            if audit.signing_key
            else None
        )
        sources = [k.source() for k in audit.keys]
        hmac_keys = {}
        if sources:
            loaded = keys.load_all(
                sources, region=settings.aws.region, endpoint_url=settings.aws.endpoint_url
            )
            hmac_keys = {k: v.material for k, v in loaded.items()}
        signing = sources[0].id if sources and signer is None else None
        return Keyring(hmac_keys, signing=signing, public=public, signer=signer)

    return load


def config_path(settings: Settings, path: str) -> Path:
    """A path from the config, relative to the config file's directory when relative."""
    given = Path(path).expanduser()
    if given.is_absolute() or settings.source.startswith("<"):
        return given
    return Path(settings.source).resolve().parent / given


def audit_log(settings: Settings) -> AuditLog:
    """The audit log a Store appends with: keys from [audit], checkpoints to its sinks."""
    client: list[Any] = []  # made on the first put, then reused

    def s3_client() -> Any:
        if not client:
            client.append(_s3(settings))
        return client[0]

    sink = CheckpointSink(settings.audit.checkpoint_file, settings.audit.checkpoint_s3, s3_client)
    return AuditLog(keyring_loader(settings), publish=sink)
