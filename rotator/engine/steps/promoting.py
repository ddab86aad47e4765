"""`staged` to `promoted`: verify the new secret at Adobe, then move AWSCURRENT to it."""

from __future__ import annotations

from datetime import datetime, timedelta

from rotator.domain import machine
from rotator.domain.errors import InvalidClient, InvariantError, NeedsAttention
from rotator.domain.events import EventKind
from rotator.domain.model import CredentialUpdate, Rotation, State
from rotator.domain.policy import backoff
from rotator.engine.context import CURRENT, PENDING, StepContext, holder
from rotator.engine.outcome import Outcome

# Verification looks again soon after a refusal (Adobe may take a moment to accept a new
# secret): 1 s, 2 s, ... at most this, and never past verify_timeout.
VERIFY_BACKOFF_CAP = timedelta(seconds=32)


def _pending_secret(step: StepContext, rotation: Rotation) -> str | None:
    value = step.fresh.get(rotation.id)
    if value is not None:
        return value
    version = step.aws.read(step.cfg.secret_id, version_id=rotation.request_token)
    return step.secret_in(version, "AWSPENDING") if version else None


def verify(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    secret = _pending_secret(step, rotation)
    if secret is None:
        return Outcome.roll_back("the staged AWS version disappeared", EventKind.ERROR)
    try:
        step.adobe.verify(step.ref, secret)
    except InvalidClient as exc:
        if machine.verify_gives_up(rotation, now, step.policy.verify_timeout):
            reason = f"Adobe did not accept the new secret within verify_timeout: {exc}"
            return Outcome.roll_back(reason, EventKind.VERIFICATION_FAILED)
        cap = min(VERIFY_BACKOFF_CAP, step.policy.verify_timeout)
        return Outcome.retry(
            State.STAGED,
            EventKind.VERIFY_PENDING,
            why="Adobe does not accept the new secret yet",
            attempts=rotation.attempts + 1,
            at=now + backoff(rotation.attempts + 1, cap=cap),
        )
    return Outcome.advance(
        State.VERIFIED,
        EventKind.VERIFIED,
        changes={"last_error": None},
        detail={"new_uuid": rotation.new_uuid},
    )


def promote(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    secret_id, token = step.cfg.secret_id, rotation.request_token
    if token is None:
        raise InvariantError("planned persists the request token")
    stages = step.aws.stages(secret_id)
    current_holder = holder(stages, CURRENT)
    if current_holder != token:
        if current_holder != rotation.previous_version:
            raise NeedsAttention(
                f"AWSCURRENT of {secret_id!r} moved to version {current_holder} during the "
                f"rotation (expected {rotation.previous_version}); someone else wrote the "
                f"secret: check it, then `rotator cancel {step.cfg.name}`"
            )
        step.guard()
        step.move(CURRENT, to_version=token, from_version=current_holder)
    drop_pending(step, stages, spare=None)  # off our version too: it is AWSCURRENT now
    step.forget_current()
    step.fresh.pop(rotation.id, None)
    created = rotation.detail.get("new_created_at")
    return Outcome.advance(
        State.PROMOTED,
        EventKind.PROMOTED,
        changes={"promoted_at": now},
        detail={"new_uuid": rotation.new_uuid, "old_uuid": rotation.old_uuid},
        credential_update=CredentialUpdate.promoted(
            rotation.new_uuid,
            token,
            at=now,
            secret_created_at=datetime.fromisoformat(created) if created else now,
        ),
    )


def after_promotion(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    target = machine.after_promotion(rotation)
    if target is State.RETIRING:
        return Outcome.advance(target, EventKind.RETIRING, detail={"retire_all_others": True})
    promoted = rotation if rotation.promoted_at else rotation.evolve(promoted_at=now)
    first_poll = min(
        now + step.policy.poll_interval,
        machine.drain_deadline(promoted, rotation.evidence, step.policy),
    )
    return Outcome.wait(
        target,
        EventKind.DRAINING,
        until=first_poll,
        detail={"quiet_period": str(step.policy.quiet_period)},
    )


def drop_pending(
    step: StepContext, stages: dict[str, tuple[str, ...]], *, spare: str | None
) -> None:
    """Remove AWSPENDING from whichever version holds it (not only this rotation's token:
    a put whose answer was lost may have staged an earlier token's version), unless that
    version is `spare`. Only a running rotation stages anything, and this one is it."""
    pending = holder(stages, PENDING)
    if pending is not None and pending != spare:
        step.guard()
        step.move(PENDING, to_version=None, from_version=pending)
