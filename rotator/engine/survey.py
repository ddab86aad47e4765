"""Read-only looks at a credential outside a rotation: Adobe's list, adopt, survey."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from rotator.domain.errors import ConfigError, StepError
from rotator.domain.model import AdobeSecret, Rotation, State, Trigger
from rotator.engine.context import StepContext

if TYPE_CHECKING:
    from rotator.engine.driver import Engine

log = structlog.get_logger("rotator.engine")


def _context(engine: Engine, name: str, trigger: Trigger) -> StepContext:
    return StepContext(engine, Rotation(0, name, trigger, State.PLANNED, engine.clock()))


def adobe_secrets(engine: Engine, name: str) -> list[AdobeSecret]:
    """Adobe's list for a credential, with a token minted from AWSCURRENT (read-only)."""
    step = _context(engine, name, Trigger.MANUAL)
    return engine.adobe.list_secrets(step.ref, step.current_secret())


def adopt(engine: Engine, name: str, uuid: str, *, actor: str) -> bool:
    """Record which Adobe uuid AWSCURRENT holds, for as long as AWSCURRENT stays put;
    False when exactly that was already recorded (nothing written)."""
    step = _context(engine, name, Trigger.MANUAL)
    listed = [s.uuid for s in engine.adobe.list_secrets(step.ref, step.current_secret())]
    if uuid not in listed:
        raise ConfigError(
            f"--uuid: Adobe lists no secret {uuid} for {name} "
            f"(it has: {', '.join(listed) or 'none'})"
        )
    engine.sync()
    return engine.store.adopt(name, uuid, step.current().version_id, actor=actor)


def survey(engine: Engine, name: str) -> None:
    """Learn the current uuid and its age, so due-ness can be judged without a rotation."""
    step = _context(engine, name, Trigger.SCHEDULED)
    now = engine.clock()
    row = engine.store.credential_rows().get(name)
    seen = row.last_rotated_at if row else None
    try:
        secret = step.current_secret()
        listed = engine.adobe.list_secrets(step.ref, secret)
        version = step.current().version_id
        adopted = row.current_uuid if row and row.current_version == version else None
        uuid = adopted or step.current_uuid() or (listed[0].uuid if len(listed) == 1 else None)
        found = next((s for s in listed if s.uuid == uuid), None)
        engine.store.record_survey(
            name,
            seen_rotated_at=seen,
            surveyed_at=now,
            current_uuid=uuid,
            # A binding (uuid for this exact version) is proof for a delete (I9): keep one
            # that exists, never make one from the AWS value's claim or a lone list entry.
            current_version=version if found and uuid == adopted else None,
            secret_created_at=found.created_at if found else None,
            last_error=None if found else "current uuid unknown: run `rotator adopt`",
        )
    except StepError as exc:
        engine.store.record_survey(name, seen_rotated_at=seen, surveyed_at=now, last_error=str(exc))
        log.warning("survey failed", credential=name, error=str(exc))
