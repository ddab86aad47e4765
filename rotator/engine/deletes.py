"""The single destroy gate: every delete at Adobe goes through `delete` (I2, I9, I12).

A delete needs (1) to know which uuid AWSCURRENT's value is, by construction (I12): the
rotation's own version (its value came back from our own add) or a binding (promotion,
adopt, or an earlier version with the same plaintext; `identify.py`), never a guess from
usage times; (2) the lease, proven right before the call, and (3) for the old secret or a
stray, a fresh answer folded into the evidence and judged again (`recheck`). A uuid
rotator created itself, whose plaintext lives only in a version AWSCURRENT is not on,
needs no more than that.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from rotator.domain import machine
from rotator.domain.errors import NeedsAttention, StepError
from rotator.domain.evidence import NO_EVIDENCE, Evidence
from rotator.domain.identity import OWN_VERSION, Identity
from rotator.domain.model import AdobeSecret
from rotator.engine.context import StepContext
from rotator.engine.identify import known_current, same_value, unknown

log = structlog.get_logger("rotator.engine")


def current_identity(step: StepContext) -> Identity | None:
    """What is known by construction about AWSCURRENT's uuid, for the version it is on now:
    a secret this rotation created (its own version, or one holding the same plaintext),
    else the credential's binding."""
    version = step.current().version_id
    for uuid, home in machine.own_secrets(step.rotation).items():
        if same_value(step, home):
            return Identity(uuid, version, OWN_VERSION)
    return known_current(step)


def delete(
    step: StepContext,
    secret: str,
    uuid: str,
    *,
    unpublished: bool = False,
    home: str | None = None,
) -> bool:
    """Delete at Adobe; never what AWSCURRENT holds (I2), never on a guess or a stale lease.
    True once Adobe took the delete (False: an unpublished secret it could not give back).

    `unpublished`: the uuid was created in this very step and its value never reached AWS
    (the put failed, or the lease was lost before it): nobody can use it, so it is given
    back without the lease (another owner would only find it as an orphan) and quietly.
    `home`: the AWS version, written by this rotation and read back just now, whose value
    holds `uuid` (a put whose answer was lost): the uuid is this rotation's own secret.
    """
    rotation = step.rotation
    if uuid == step.current_uuid():
        raise NeedsAttention(f"refusing to delete {uuid}: AWSCURRENT's value records it")
    if not unpublished:
        # A secret rotator created lives only in the version it wrote: while AWSCURRENT
        # holds another plaintext, it is not AWSCURRENT's, whatever any list says.
        home = home or machine.own_secrets(rotation).get(uuid)
        if home is None or same_value(step, home):
            identity = current_identity(step)
            if identity is None:
                listed = step.adobe.list_secrets(step.ref, secret)
                raise NeedsAttention(unknown(step, listed, f"refusing to delete {uuid}"))
            if uuid == identity.uuid:
                raise NeedsAttention(
                    f"refusing to delete {uuid}: AWSCURRENT holds it ({identity.proof})"
                )
        step.guard()
    try:
        step.adobe.delete_secret(step.ref, secret, uuid)
    except StepError as exc:
        if not unpublished:
            raise
        log.warning(
            "could not give back an unpublished secret; it will be found as an orphan",
            uuid=uuid,
            error=str(exc),
        )
        return False
    return True


def recheck(step: StepContext, secret: str, now: datetime) -> tuple[list[AdobeSecret], Evidence]:
    """List once more right before a delete and fold the answer into the evidence."""
    rotation = step.rotation
    listed = step.adobe.list_secrets(step.ref, secret)
    evidence = (rotation.evidence or NO_EVIDENCE).fold(
        now, used_by_uuid(listed), old_uuid=rotation.old_uuid, new_uuid=rotation.new_uuid
    )
    return listed, evidence


def used_by_uuid(listed: list[AdobeSecret]) -> dict[str, datetime | None]:
    return {s.uuid: s.last_used_at for s in listed}
