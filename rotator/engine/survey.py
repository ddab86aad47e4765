"""Read-only looks at a credential outside a rotation: Adobe's list, adopt, survey."""

from __future__ import annotations

import structlog

from rotator.config import Settings
from rotator.domain.errors import ConfigError, StepError
from rotator.domain.model import AdobeSecret, Rotation, State, Trigger
from rotator.engine.context import Ports, StepContext, config_hash
from rotator.engine.identify import known_current

log = structlog.get_logger("rotator.engine")


def _context(settings: Settings, ports: Ports, name: str, trigger: Trigger) -> StepContext:
    return StepContext(settings, ports, Rotation(0, name, trigger, State.PLANNED, ports.clock()))


def record_configuration(settings: Settings, ports: Ports) -> None:
    """Every configured credential has a row, and the store knows its config hash."""
    ports.store.sync_credentials({c.name: config_hash(c) for c in settings.credentials})


def adobe_secrets(settings: Settings, ports: Ports, name: str) -> list[AdobeSecret]:
    """Adobe's list for a credential, with a token minted from AWSCURRENT (read-only)."""
    step = _context(settings, ports, name, Trigger.MANUAL)
    return ports.adobe.list_secrets(step.ref, step.current_secret())


def adopt(settings: Settings, ports: Ports, name: str, uuid: str, *, actor: str) -> bool:
    """Record which Adobe uuid AWSCURRENT holds, for as long as AWSCURRENT stays put;
    False when exactly that was already recorded (nothing written)."""
    step = _context(settings, ports, name, Trigger.MANUAL)
    listed = [s.uuid for s in ports.adobe.list_secrets(step.ref, step.current_secret())]
    if uuid not in listed:
        raise ConfigError(
            f"--uuid: Adobe lists no secret {uuid} for {name} "
            f"(it has: {', '.join(listed) or 'none'})"
        )
    record_configuration(settings, ports)
    return ports.store.adopt(name, uuid, step.current().version_id, actor=actor)


def survey(settings: Settings, ports: Ports, name: str) -> None:
    """Learn the current uuid and its age, so due-ness can be judged without a rotation."""
    step = _context(settings, ports, name, Trigger.SCHEDULED)
    now = ports.clock()
    store, adobe = ports.store, ports.adobe
    row = store.credential_rows().get(name)
    seen = row.last_rotated_at if row else None
    try:
        secret = step.current_secret()
        listed = adobe.list_secrets(step.ref, secret)
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
        store.record_survey(
            name,
            seen_rotated_at=seen,
            surveyed_at=now,
            last_error=None if found or bound else "current uuid unknown: run `rotator adopt`",
            **values,
        )
    except StepError as exc:
        store.record_survey(name, seen_rotated_at=seen, surveyed_at=now, last_error=str(exc))
        log.warning("survey failed", credential=name, error=str(exc))
