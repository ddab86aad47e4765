"""One function per state: read the world, make the step's effects, return an Outcome.

Each step reads the world (Adobe's list, AWS's labels) before it writes, so repeating a step
after a crash does nothing twice. The decisions themselves live in `rotator.domain.machine`.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from rotator.domain import machine
from rotator.domain.errors import InvalidClient, NeedsAttention, StepError
from rotator.domain.model import AdobeSecret, Evidence, Rotation, State
from rotator.engine.context import CURRENT, PENDING, StepContext, holder
from rotator.engine.deletes import delete
from rotator.engine.outcome import Outcome

log = structlog.get_logger("rotator.engine")

Step = Callable[[StepContext, Rotation, datetime], Outcome]


def plan(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    current = step.current()
    secret = step.current_secret()
    listed = step.adobe.list_secrets(step.ref, secret)
    old_uuid = step.current_uuid() or _known_uuid(step, listed, secret)
    uuids = {s.uuid for s in listed}
    if old_uuid not in uuids:
        raise NeedsAttention(
            f"AWSCURRENT of {step.cfg.secret_id!r} records uuid {old_uuid}, which Adobe does "
            f"not list for credential {step.cfg.credential_id}; check the configuration, or "
            f"run `rotator adopt {step.cfg.name} --uuid <uuid>`"
        )
    verdict = machine.judge_strays(listed, old_uuid, step.policy, now, emergency=rotation.emergency)
    if verdict.attention:
        raise NeedsAttention(verdict.attention)
    for stray in verdict.delete:
        delete(step, secret, stray)
    return Outcome(
        State.CREATING,
        kind="planned",
        changes={
            "old_uuid": old_uuid,
            "known_uuids": tuple(sorted(uuids - set(verdict.delete))),
            "request_token": uuidlib.uuid4().hex,
            "previous_version": current.version_id,
        },
        detail={"old_uuid": old_uuid, "strays_deleted": list(verdict.delete)},
    )


def _known_uuid(step: StepContext, listed: list[AdobeSecret], secret: str) -> str:
    """Bootstrap: which Adobe uuid is AWSCURRENT's value, when AWS does not say."""
    row = step.store.credential_rows().get(step.cfg.name)
    if row and row.current_uuid and row.current_version == step.current().version_id:
        return row.current_uuid  # adopted (or promoted) for this very AWSCURRENT version
    if len(listed) == 1:
        return listed[0].uuid
    before = {s.uuid: s.last_used_at for s in listed}
    step.adobe.verify(step.ref, secret)  # a use of the current secret moves its last_used_at
    moved = [
        s.uuid
        for s in step.adobe.list_secrets(step.ref, secret)
        if s.uuid in before and s.last_used_at != before[s.uuid]
    ]
    if len(moved) == 1:
        return moved[0]
    raise NeedsAttention(
        f"cannot tell which of Adobe's secrets {sorted(before)} AWSCURRENT holds "
        f"(AWS records no {step.uuid_key!r} and a test token moved {len(moved)} of them); "
        f"run `rotator adopt {step.cfg.name} --uuid <uuid>`"
    )


def create(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    secret = step.current_secret()
    listed = step.adobe.list_secrets(step.ref, secret)
    uuids = {s.uuid for s in listed}
    token = rotation.request_token
    assert token is not None, "planned persists the request token before any write"
    pending = step.aws.read(step.cfg.secret_id, version_id=token)
    if pending is not None:
        staged_uuid = pending.value.get(step.uuid_key)
        if staged_uuid in uuids:  # the put landed before a crash: adopt it
            return Outcome(
                State.STAGED,
                kind="staged",
                changes={"new_uuid": staged_uuid},
                detail={"new_uuid": staged_uuid, "resumed": True},
            )
        # Our version holds a secret Adobe no longer has; a version is immutable, so the
        # next attempt needs a fresh token (persisted before it is used).
        return Outcome(
            State.CREATING,
            kind="token_renewed",
            changes={"request_token": uuidlib.uuid4().hex},
            detail={"stale_uuid": str(staged_uuid)},
        )
    orphans = machine.find_orphans(listed, rotation.known_uuids, adopted=None)
    for orphan in orphans:
        delete(step, secret, orphan)
    step.guard()
    created = step.adobe.add_secret(step.ref, secret)
    value = {
        **step.current().value,
        step.secret_key: created.value,
        step.uuid_key: created.uuid,
    }
    try:
        step.guard()
        step.aws.put_pending(step.cfg.secret_id, token, value)
    except StepError:
        # The plaintext exists only in this memory: if AWS did not take it, nobody can
        # ever use it, so give the slot back to Adobe now rather than as an orphan later.
        delete(step, secret, created.uuid, quiet=True)
        raise
    step.fresh[rotation.id] = created.value
    return Outcome(
        State.STAGED,
        kind="staged",
        changes={
            "new_uuid": created.uuid,
            "detail": {**rotation.detail, "new_created_at": created.created_at.isoformat()},
        },
        detail={"new_uuid": created.uuid, "orphans_deleted": orphans},
    )


def _pending_secret(step: StepContext, rotation: Rotation) -> str | None:
    value = step.fresh.get(rotation.id)
    if value is not None:
        return value
    version = step.aws.read(step.cfg.secret_id, version_id=rotation.request_token)
    return step.secret_in(version, "AWSPENDING") if version else None


def verify(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    secret = _pending_secret(step, rotation)
    if secret is None:
        return Outcome(
            State.ROLLING_BACK,
            kind="error",
            changes={"last_error": "the staged AWS version disappeared"},
            detail={"error": "the staged AWS version disappeared"},
        )
    try:
        step.adobe.verify(step.ref, secret)
    except InvalidClient as exc:
        if machine.verify_gives_up(rotation, now, step.policy.verify_timeout):
            reason = f"Adobe did not accept the new secret within verify_timeout: {exc}"
            return Outcome(
                State.ROLLING_BACK,
                kind="verification_failed",
                changes={"last_error": reason},
                detail={"error": reason},
            )
        delay = min(timedelta(seconds=2 ** min(rotation.attempts, 5)), step.policy.verify_timeout)
        return Outcome(
            State.STAGED,
            kind="verify_pending",
            changes={
                "attempts": rotation.attempts + 1,
                "last_error": "Adobe does not accept the new secret yet",
            },
            detail={"attempt": rotation.attempts + 1},
            wait_until=now + delay,
        )
    return Outcome(
        State.VERIFIED,
        kind="verified",
        changes={"last_error": None},
        detail={"new_uuid": rotation.new_uuid},
    )


def promote(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    secret_id, token = step.cfg.secret_id, rotation.request_token
    assert token is not None, "planned persists the request token"
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
    if PENDING in stages.get(token, ()):
        step.guard()
        step.move(PENDING, to_version=None, from_version=token)
    step.forget_current()
    step.fresh.pop(rotation.id, None)
    created = rotation.detail.get("new_created_at")
    return Outcome(
        State.PROMOTED,
        kind="promoted",
        changes={"promoted_at": now},
        detail={"new_uuid": rotation.new_uuid, "old_uuid": rotation.old_uuid},
        credential_update={
            "current_uuid": rotation.new_uuid,
            "current_version": token,
            "last_rotated_at": now,
            "secret_created_at": datetime.fromisoformat(created) if created else now,
            "last_error": None,
        },
    )


def after_promotion(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    target = machine.after_promotion(rotation)
    if target is State.RETIRING:
        return Outcome(target, kind="retiring", detail={"retire_all_others": True})
    first_poll = min(
        now + step.policy.poll_interval,
        (rotation.promoted_at or now) + step.policy.quiet_period,
    )
    return Outcome(
        target,
        kind="draining",
        wait_until=first_poll,
        detail={"quiet_period": str(step.policy.quiet_period)},
    )


def drain(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    listed = {s.uuid: s for s in step.adobe.list_secrets(step.ref, step.current_secret())}
    old, new = listed.get(rotation.old_uuid or ""), listed.get(rotation.new_uuid or "")
    evidence = Evidence(now, old.last_used_at if old else None, new.last_used_at if new else None)
    verdict = machine.judge_drain(rotation, evidence, old is not None, step.policy, now)
    detail = {"evidence": evidence.as_dict(), "old_present": old is not None}
    if verdict.retire:
        return Outcome(State.RETIRING, kind="quiet", changes={"evidence": evidence}, detail=detail)
    if verdict.overdue:
        return Outcome(
            State.NEEDS_ATTENTION,
            kind="needs_attention",
            changes={
                "evidence": evidence,
                "last_error": verdict.overdue,
                "resume_state": State.DRAINING,
            },
            detail={**detail, "why": verdict.overdue},
            wait_until=verdict.next_poll_at,
        )
    return Outcome(
        State.DRAINING,
        kind="poll",
        changes={"evidence": evidence},
        detail=detail,
        wait_until=verdict.next_poll_at,
    )


def retire(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    secret = step.current_secret()
    if step.current_uuid() != rotation.new_uuid:
        raise NeedsAttention(
            f"AWSCURRENT of {step.cfg.secret_id!r} no longer holds the new secret "
            f"{rotation.new_uuid}; refusing to delete anything"
        )
    listed = [s.uuid for s in step.adobe.list_secrets(step.ref, secret)]
    emergency = machine.retires_everything_else(rotation)
    doomed = (
        [u for u in listed if u != rotation.new_uuid]
        if emergency
        else ([rotation.old_uuid] if rotation.old_uuid in listed else [])
    )
    invalidated = 0
    if emergency and doomed:
        invalidated = _invalidate_old_tokens(step, rotation)
    for uuid in doomed:
        delete(step, secret, uuid)
    return Outcome(
        State.COMPLETED,
        kind="completed",
        changes={"last_error": None, "detail": {**rotation.detail, "deleted": doomed}},
        detail={"deleted": doomed, "tokens_invalidated": invalidated},
    )


def _invalidate_old_tokens(step: StepContext, rotation: Rotation) -> int:
    """Tokens this process minted with the leaked secret die with it (others cannot)."""
    previous = step.aws.read(step.cfg.secret_id, version_id=rotation.previous_version)
    if previous is None:
        return 0
    try:
        old_secret = step.secret_in(previous, "AWSPREVIOUS")
        return step.adobe.invalidate_tokens(step.ref, old_secret)
    except StepError as exc:  # the deletion that follows matters more than this courtesy
        log.warning("token invalidation failed", error=str(exc))
        return 0


def roll_back(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    secret_id, token = step.cfg.secret_id, rotation.request_token
    stages = step.aws.stages(secret_id) if token else {}
    if CURRENT in stages.get(token or "", ()):
        # AWSCURRENT already holds the new secret (a move that took effect before a crash
        # or a refused retry): it works, and deleting it would break I2. Finish the
        # promotion instead, as if nothing had gone wrong.
        return promote(step, rotation, now)
    secret = step.current_secret()
    keep = {rotation.old_uuid, step.current_uuid(), *rotation.known_uuids}
    listed = [s.uuid for s in step.adobe.list_secrets(step.ref, secret)]
    doomed = [u for u in listed if u not in keep]
    for uuid in doomed:
        delete(step, secret, uuid)
    if PENDING in stages.get(token or "", ()):
        step.guard()
        step.move(PENDING, to_version=None, from_version=token)
    step.fresh.pop(rotation.id, None)
    cancelled = rotation.cancel_requested or bool(rotation.detail.get("preempted"))
    return Outcome(
        State.CANCELLED if cancelled else State.FAILED,
        kind="rolled_back",
        detail={"deleted": doomed, "reason": rotation.last_error or ""},
    )


STEPS: dict[State, Step] = {
    State.PLANNED: plan,
    State.CREATING: create,
    State.STAGED: verify,
    State.VERIFIED: promote,
    State.PROMOTED: after_promotion,
    State.DRAINING: drain,
    State.RETIRING: retire,
    State.ROLLING_BACK: roll_back,
}
