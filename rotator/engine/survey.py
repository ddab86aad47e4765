"""Read-only looks at a credential outside a rotation: Adobe's list, adopt, survey."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from rotator.domain.errors import ConfigError, StepError
from rotator.domain.model import AdobeSecret, Rotation, State, Trigger
from rotator.engine.context import StepContext
from rotator.engine.identify import known_current

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
        bound = known_current(step)
        uuid = bound.uuid if bound else step.current_uuid()
        if uuid is None and len(listed) == 1:
            uuid = listed[0].uuid
        found = next((s for s in listed if s.uuid == uuid), None)
        values: dict[str, object] = {"current_uuid": uuid}
        if bound is not None:
            # A binding (I12) is kept whatever this one answer lists: a list that leaves
            # the secret out must not erase it (the next emergency would have to ask).
            values["current_version"] = bound.version_id
        else:
            # Never make a binding from the AWS value's claim or a lone list entry.
            values["current_version"] = None
        if found is not None:
            values["secret_created_at"] = found.created_at
        engine.store.record_survey(
            name,
            seen_rotated_at=seen,
            surveyed_at=now,
            last_error=None if found or bound else "current uuid unknown: run `rotator adopt`",
            **values,
        )
    except StepError as exc:
        engine.store.record_survey(name, seen_rotated_at=seen, surveyed_at=now, last_error=str(exc))
        log.warning("survey failed", credential=name, error=str(exc))
