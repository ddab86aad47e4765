"""The single destroy gate: every delete at Adobe goes through `delete` (I2, I9).

A delete needs (1) proof of which uuid AWSCURRENT's value is, for the exact AWS version
that holds AWSCURRENT now (see `rotator.domain.identity`), (2) the lease, proven right
before the call, and (3) for the old secret, a fresh answer from Adobe folded into the
evidence and the quiet rule judged again (`recheck`). A uuid rotator created itself and
never published to AWSCURRENT needs no proof beyond that.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from rotator.domain import machine
from rotator.domain.errors import NeedsAttention, StepError
from rotator.domain.evidence import NO_EVIDENCE, Evidence
from rotator.domain.identity import Identity
from rotator.domain.model import AdobeSecret
from rotator.engine.context import StepContext

log = structlog.get_logger("rotator.engine")

OWN_VERSION = "own version"  # AWSCURRENT is the version this rotation wrote itself


def current_identity(step: StepContext) -> Identity | None:
    """What is proven about AWSCURRENT's uuid for the version AWSCURRENT is on now."""
    rotation, version = step.rotation, step.current().version_id
    if rotation.request_token and version == rotation.request_token and rotation.new_uuid:
        return Identity(rotation.new_uuid, version, OWN_VERSION)
    for known in (step.identity, Identity.from_dict(rotation.detail.get("identity"))):
        if known is not None and known.version_id == version:
            return known
    return None


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
    rotation, current = step.rotation, step.current()
    if uuid == step.current_uuid():
        raise NeedsAttention(f"refusing to delete {uuid}: AWSCURRENT holds it")
    if not unpublished:
        # A secret rotator created lives only in the version it wrote: while AWSCURRENT is
        # elsewhere, it is not AWSCURRENT's, whatever any list says.
        home = home or machine.own_secrets(rotation).get(uuid)
        ours = home is not None and current.version_id != home
        allowed = {rotation.previous_version, rotation.request_token} - {None}
        if allowed and current.version_id not in allowed and not (ours and _apart(step, home)):
            raise NeedsAttention(
                f"AWSCURRENT of {step.cfg.secret_id!r} is version {current.version_id}, "
                f"which this rotation did not plan for; refusing to delete {uuid}"
            )
        if uuid == rotation.old_uuid and current.version_id != rotation.request_token:
            raise NeedsAttention(f"refusing to delete {uuid}: AWSCURRENT was not moved off it")
        if not ours:
            identity = current_identity(step)
            if identity is None:
                raise NeedsAttention(
                    f"cannot prove which Adobe secret AWSCURRENT of {step.cfg.secret_id!r} "
                    f"(version {current.version_id}) holds; refusing to delete {uuid}. "
                    f"Run `rotator adopt {step.cfg.name} --uuid <uuid>`"
                )
            if uuid == identity.uuid:
                raise NeedsAttention(
                    f"refusing to delete {uuid}: AWSCURRENT holds it ({identity.proof})"
                )
            if not identity.covers(uuid):
                raise NeedsAttention(
                    f"refusing to delete {uuid}: the test tokens that showed AWSCURRENT holds "
                    f"{identity.uuid} were judged on lists that left {uuid} out. Run "
                    f"`rotator adopt {step.cfg.name} --uuid <uuid>`"
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


def _apart(step: StepContext, home: str | None) -> bool:
    """The plaintext in our own version `home` is not AWSCURRENT's: a person who moved
    AWSCURRENT by hand did not paste our secret there, so it is still ours to give back."""
    staged = step.aws.read(step.cfg.secret_id, version_id=home) if home else None
    value = staged.value.get(step.secret_key) if staged is not None else None
    return bool(value) and value != step.current().value.get(step.secret_key)


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
