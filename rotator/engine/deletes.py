"""The single destroy gate: every delete at Adobe goes through `delete`."""

from __future__ import annotations

import structlog

from rotator.domain.errors import NeedsAttention, StepError
from rotator.engine.context import StepContext

log = structlog.get_logger("rotator.engine")


def delete(step: StepContext, secret: str, uuid: str, *, quiet: bool = False) -> None:
    """Delete at Adobe; never what AWSCURRENT holds (I2), never on a stale lease."""
    rotation, current = step.rotation, step.current()
    if uuid == step.current_uuid():
        raise NeedsAttention(f"refusing to delete {uuid}: AWSCURRENT holds it")
    allowed = {rotation.previous_version, rotation.request_token} - {None}
    if allowed and current.version_id not in allowed:
        raise NeedsAttention(
            f"AWSCURRENT of {step.cfg.secret_id!r} is version {current.version_id}, "
            f"which this rotation did not plan for; refusing to delete {uuid}"
        )
    if uuid == rotation.old_uuid and current.version_id != rotation.request_token:
        raise NeedsAttention(f"refusing to delete {uuid}: AWSCURRENT was not moved off it")
    step.guard()
    try:
        step.adobe.delete_secret(step.ref, secret, uuid)
    except StepError as exc:
        if not quiet:
            raise
        log.warning(
            "could not give back an unpublished secret; it will be found as an orphan",
            uuid=uuid,
            error=str(exc),
        )
