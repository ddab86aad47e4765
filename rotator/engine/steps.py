"""One function per state: read the world, make the step's effects, return an Outcome.

Each step reads the world (Adobe's list, AWS's labels) before it writes, so repeating a step
after a crash does nothing twice. The decisions themselves live in `rotator.domain.machine`.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from rotator.domain import machine
from rotator.domain.errors import (
    InvalidClient,
    InvariantError,
    LeaseLost,
    NeedsAttention,
    SecretLimit,
    StepError,
    TransientError,
)
from rotator.domain.evidence import (
    NO_EVIDENCE,
    UNNAMED_ABSENCE_ANSWERS,
    Absence,
    Evidence,
    confirm_delay,
    wait_for_fresh,
    went_back,
)
from rotator.domain.identity import OBSERVED
from rotator.domain.model import AdobeSecret, Rotation, State
from rotator.engine.context import CURRENT, PENDING, StepContext, holder
from rotator.engine.deletes import current_identity, delete, recheck, used_by_uuid
from rotator.engine.identify import known_current, prove_current, recorded
from rotator.engine.outcome import Outcome

log = structlog.get_logger("rotator.engine")

Step = Callable[[StepContext, Rotation, datetime], Outcome]


def plan(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    """Learn which uuid AWSCURRENT holds, clear strays that are provably unused, then
    persist what was seen and a fresh request token before any write.

    Deleting a stray needs proof of AWSCURRENT's uuid (I9): a binding for this exact AWS
    version, or an observation, which waits at least twice usage_lag for Adobe to show
    two test tokens' uses. A plan that deletes nothing goes on with the AWS value's claim
    (or the one secret listed): the old secret is then deleted only after its own quiet
    period, once AWSCURRENT is this rotation's own version.
    """
    current = step.current()
    secret = step.current_secret()
    listed = step.adobe.list_secrets(step.ref, secret)
    uuids = {s.uuid for s in listed}
    proven = known_current(step, rotation, listed)
    only = next(iter(uuids)) if len(uuids) == 1 else None
    old_uuid = proven.uuid if proven else (step.current_uuid() or only)
    if proven is None and old_uuid is not None and old_uuid in uuids:
        verdict = _strays(step, rotation, now, listed, old_uuid)
        needs_proof = bool(verdict.delete)
    else:
        needs_proof = proven is None
    if needs_proof:
        observed = prove_current(step, rotation, now, listed)
        if isinstance(observed, Outcome):
            return observed  # Adobe has not shown the test token's use yet: look again soon
        proven, old_uuid = observed, observed.uuid
    step.identity = proven
    if old_uuid is None or old_uuid not in uuids:
        how = f" ({proven.proof})" if proven else ""
        raise NeedsAttention(
            f"AWSCURRENT of {step.cfg.secret_id!r} holds uuid {old_uuid}{how}, which Adobe "
            f"does not list for credential {step.cfg.credential_id}; check the "
            f"configuration, or run `rotator adopt {step.cfg.name} --uuid <uuid>`"
        )
    evidence = (rotation.evidence or NO_EVIDENCE).fold(
        now, used_by_uuid(listed), old_uuid=old_uuid, new_uuid=None
    )
    verdict = _strays(step, rotation, now, listed, old_uuid, evidence)
    if verdict.attention:
        raise NeedsAttention(verdict.attention)
    deleted: list[str] = []
    if verdict.delete:  # re-check right before the delete: a fresh answer, judged again
        step.rotation = rotation.evolve(old_uuid=old_uuid, evidence=evidence)
        relisted, evidence = recheck(step, secret, now)
        again = machine.judge_strays(
            relisted, old_uuid, step.policy, now, emergency=rotation.emergency, evidence=evidence
        )
        if again.attention:
            raise NeedsAttention(again.attention)
        deleted = [u for u in verdict.delete if u in again.delete]
        for stray in deleted:
            delete(step, secret, stray)
        uuids |= {s.uuid for s in relisted}
    return Outcome(
        State.CREATING,
        kind="planned",
        changes={
            "old_uuid": old_uuid,
            "known_uuids": tuple(sorted(uuids - set(deleted))),
            "request_token": uuidlib.uuid4().hex,
            "previous_version": current.version_id,
            "evidence": evidence,
            "detail": recorded(rotation.detail, proven) if proven else rotation.detail,
        },
        detail={
            "old_uuid": old_uuid,
            "identity": proven.proof if proven else "claim",
            "strays_deleted": deleted,
        },
        credential_update=(
            {"current_uuid": proven.uuid, "current_version": proven.version_id}
            if proven and proven.proof == OBSERVED
            else None
        ),
    )


def _strays(
    step: StepContext,
    rotation: Rotation,
    now: datetime,
    listed: list[AdobeSecret],
    old_uuid: str,
    evidence: Evidence | None = None,
) -> machine.StrayVerdict:
    return machine.judge_strays(
        listed, old_uuid, step.policy, now, emergency=rotation.emergency, evidence=evidence
    )


def create(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    secret = step.current_secret()
    listed = step.adobe.list_secrets(step.ref, secret)
    uuids = {s.uuid for s in listed}
    token = rotation.request_token
    if token is None:
        raise InvariantError("planned persists the request token before any write")
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
        # One list does not show the secret our version holds: Adobe lost it, or the list
        # left it out. It is ours either way (its plaintext lives only in this version), so
        # give it back by uuid (a 404 means gone) before a fresh token: one answer must not
        # leave it at Adobe under no AWS label (I7, I9). A version is immutable, so the next
        # attempt needs a fresh token (persisted before it is used).
        if staged_uuid:
            delete(step, secret, str(staged_uuid), home=token)
        return Outcome(
            State.CREATING,
            kind="token_renewed",
            changes={"request_token": uuidlib.uuid4().hex},
            detail={"stale_uuid": str(staged_uuid), "deleted": bool(staged_uuid)},
        )
    orphans = machine.find_orphans(
        listed,
        rotation.known_uuids,
        adopted=None,
        planned_at=rotation.created_at,
        evidence=rotation.evidence,
    )
    if orphans:  # deleting needs proof of AWSCURRENT's uuid (plan records it)
        proven = prove_current(step, rotation, now, listed)
        if isinstance(proven, Outcome):
            return proven
        step.identity = proven
        for orphan in orphans:
            delete(step, secret, orphan)
    step.guard()
    try:
        created = step.adobe.add_secret(step.ref, secret)
    except SecretLimit as exc:
        return _make_room(step, rotation, now, secret, exc)
    value = {
        **step.current().value,
        step.secret_key: created.value,
        step.uuid_key: created.uuid,
    }
    try:
        step.guard()
        step.aws.put_pending(step.cfg.secret_id, token, value)
    except (StepError, LeaseLost) as exc:
        # The plaintext exists only in this memory: if AWS did not take it (or the lease
        # went before the put), nobody can ever use it, so give the slot back to Adobe now
        # rather than leave an orphan for the next owner to find.
        if delete(step, secret, created.uuid, unpublished=True) and isinstance(exc, StepError):
            exc.deleted = {"given_back": [created.uuid]}
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


def _make_room(
    step: StepContext, rotation: Rotation, now: datetime, secret: str, limit: SecretLimit
) -> Outcome:
    """Adobe refused the add at its two-secret limit: it holds a secret the plan never saw
    (a list that left it out) or still counts one just deleted. List again, prove which
    uuid AWSCURRENT holds (I9), judge every other secret as a stray by the plan's rule (an
    emergency deletes them at once), delete only what two answers in a row agree on, then
    add again later like after a transient fault: never AWSCURRENT's secret (I1, I2)."""
    listed = step.adobe.list_secrets(step.ref, secret)
    proven = prove_current(step, rotation, now, listed)
    if isinstance(proven, Outcome):
        return proven  # Adobe has not shown the test token's use yet: look again soon
    step.identity = proven
    verdict = _strays(step, rotation, now, listed, proven.uuid, rotation.evidence)
    if verdict.attention:
        raise NeedsAttention(verdict.attention)
    deleted: list[str] = []
    if verdict.delete:  # a second, fresh answer right before the delete, judged again
        relisted, evidence = recheck(step, secret, now)
        again = _strays(step, rotation, now, relisted, proven.uuid, evidence)
        if again.attention:
            raise NeedsAttention(again.attention)
        deleted = [u for u in verdict.delete if u in again.delete]
        for stray in deleted:
            delete(step, secret, stray)
    made_room = f"; deleted {', '.join(deleted)}" if deleted else "; no stray listed yet"
    again_later = TransientError(
        f"{limit.detail}{made_room}; adding again later", step="add secret"
    )
    again_later.deleted = {"strays_deleted": deleted} if deleted else {}
    raise again_later


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
    _drop_pending(step, stages, spare=None)  # off our version too: it is AWSCURRENT now
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
    promoted = rotation if rotation.promoted_at else rotation.evolve(promoted_at=now)
    first_poll = min(
        now + step.policy.poll_interval,
        machine.drain_deadline(promoted, rotation.evidence, step.policy),
    )
    return Outcome(
        target,
        kind="draining",
        wait_until=first_poll,
        detail={"quiet_period": str(step.policy.quiet_period)},
    )


def drain(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    """Watch the old secret's use; every answer is folded into grow-only evidence."""
    listed = step.adobe.list_secrets(step.ref, step.current_secret())
    used = used_by_uuid(listed)
    evidence = (rotation.evidence or NO_EVIDENCE).fold(
        now, used, old_uuid=rotation.old_uuid, new_uuid=rotation.new_uuid
    )
    old_present = rotation.old_uuid in used
    verdict = machine.judge_drain(rotation, evidence, old_present, step.policy, now)
    detail = {
        "evidence": evidence.as_dict(),
        "old_present": old_present,
        "deadline": verdict.deadline.isoformat() if verdict.deadline else None,
    }
    if verdict.retire:
        kind = "gone" if verdict.gone else "quiet"
        return Outcome(State.RETIRING, kind=kind, changes={"evidence": evidence}, detail=detail)
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
    """Delete the old secret (an emergency: every other), on a fresh answer judged again."""
    secret = step.current_secret()
    if step.current_uuid() != rotation.new_uuid:
        raise NeedsAttention(
            f"AWSCURRENT of {step.cfg.secret_id!r} no longer holds the new secret "
            f"{rotation.new_uuid}; refusing to delete anything"
        )
    listed, evidence = recheck(step, secret, now)
    uuids = [s.uuid for s in listed]
    if machine.retires_everything_else(rotation):
        return _retire_everything_else(step, rotation, now, secret, uuids, evidence)
    old_present = rotation.old_uuid in uuids
    answered = next((s.last_used_at for s in listed if s.uuid == rotation.old_uuid), None)
    if old_present and went_back(rotation.evidence, answered):
        evidence = replace(evidence, stale_since=evidence.stale_since or now)
        if wait_for_fresh(evidence, now, step.policy.lag):  # a stale answer: not this one
            return Outcome(
                State.DRAINING,
                kind="recheck_stale",
                changes={"evidence": evidence},
                detail={"evidence": evidence.as_dict(), "old_present": True},
                wait_until=now + confirm_delay(step.policy.poll_interval),
            )
    elif evidence.stale_since is not None:
        evidence = replace(evidence, stale_since=None)
    verdict = machine.judge_drain(rotation, evidence, old_present, step.policy, now)
    if not verdict.retire:  # a use (or an unconfirmed absence) seen right before the delete
        return Outcome(
            State.DRAINING,
            kind="recheck_saw_use" if old_present else "recheck_absent",
            changes={"evidence": evidence},
            detail={
                "evidence": evidence.as_dict(),
                "old_present": old_present,
                "deadline": verdict.deadline.isoformat() if verdict.deadline else None,
            },
            wait_until=verdict.next_poll_at,
        )
    # Listed or not: a list may leave the old secret out for longer than rotator waits
    # (see `judge_drain`); deleting by uuid makes sure it is gone (404 counts as done).
    doomed = [rotation.old_uuid] if rotation.old_uuid else []
    for uuid in doomed:
        delete(step, secret, uuid)
    return Outcome(
        State.COMPLETED,
        kind="completed",
        changes={
            "last_error": None,
            "evidence": evidence,
            "detail": {**rotation.detail, "deleted": doomed},
        },
        detail={"deleted": doomed, "tokens_invalidated": 0, "evidence": evidence.as_dict()},
    )


def _retire_everything_else(
    step: StepContext,
    rotation: Rotation,
    now: datetime,
    secret: str,
    uuids: list[str],
    evidence: Evidence,
) -> Outcome:
    """An emergency: AWSCURRENT is our own verified version now, so every other secret goes.

    The leaked secret is deleted by uuid whether a list shows it or not (a list may leave it
    out for longer than rotator looks; already gone is a 404, which counts as done). It
    completes only once answers confirm it gone (two in a row apart in time) and nothing
    else is listed: a list that leaves a secret out must not end it.
    """
    deleted = list(rotation.detail.get("deleted") or [])
    doomed = [u for u in uuids if u != rotation.new_uuid]
    if rotation.old_uuid and rotation.old_uuid not in doomed + deleted:
        doomed.append(rotation.old_uuid)  # the leaked secret goes by uuid, listed or not
    invalidated = 0
    if doomed:
        invalidated = _invalidate_old_tokens(step, rotation)
        for uuid in doomed:
            delete(step, secret, uuid)
        deleted += [u for u in doomed if u not in deleted]
        if rotation.old_uuid in doomed:  # Adobe's answer to the delete: a first "gone"
            evidence = evidence.deleted(now)
    if doomed or not evidence.old_gone(now, step.policy.poll_interval):
        return Outcome(
            State.RETIRING,
            kind="retire_confirm",
            changes={"evidence": evidence, "detail": {**rotation.detail, "deleted": deleted}},
            detail={"deleted": doomed, "tokens_invalidated": invalidated},
            wait_until=now + confirm_delay(step.policy.poll_interval),
        )
    return Outcome(
        State.COMPLETED,
        kind="completed",
        changes={
            "last_error": None,
            "evidence": evidence,
            "detail": {**rotation.detail, "deleted": deleted},
        },
        detail={"deleted": deleted, "tokens_invalidated": invalidated},
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
    """Give back what this rotation created; AWSCURRENT untouched (unless it already moved).

    The secrets it created (`own_secrets`) are deleted by uuid, listed or not (a list may
    leave one out), and an orphan as soon as a list shows one. The rollback ends only once
    two answers in a row, apart in time, show nothing of ours left (I9): one list that
    leaves a secret out must not leave it at Adobe with its plaintext in no AWS version (I7).
    """
    secret_id, token = step.cfg.secret_id, rotation.request_token
    stages = step.aws.stages(secret_id)
    if token and CURRENT in stages.get(token, ()):
        # AWSCURRENT already holds the new secret (a move that took effect before a crash
        # or a refused retry): it works, and deleting it would break I2. Finish the
        # promotion instead, as if nothing had gone wrong.
        return promote(step, rotation, now)
    secret = step.current_secret()
    listed = step.adobe.list_secrets(step.ref, secret)
    keep = {u for u in (rotation.old_uuid, step.current_uuid(), *rotation.known_uuids) if u}
    version = step.current().version_id
    homes = _own_secrets(step, rotation)
    own = [u for u, home in homes.items() if u not in keep and home != version]
    orphans = machine.find_orphans(
        listed,
        keep | set(own),
        adopted=None,
        planned_at=machine.answers_since(rotation),
        evidence=rotation.evidence,
    )
    known = current_identity(step)
    if orphans and (known is None or not all(known.covers(u) for u in orphans)):
        # A crash between Adobe's add and the AWS put left a secret nobody can use (I7).
        # Deleting it needs proof of AWSCURRENT's uuid (I9), as `create` does on resume:
        # observe it (waiting here for Adobe to show the test token's use) before any delete.
        proven = prove_current(step, rotation, now, listed)
        if isinstance(proven, Outcome):
            return proven
        step.identity = proven
        orphans = [u for u in orphans if u != proven.uuid]
    uuids = {s.uuid for s in listed}
    shown = [u for u in (*own, *orphans) if u in uuids]
    deleted = list(rotation.detail.get("rolled_back") or [])
    unlisted = [u for u in own if u not in uuids and u not in deleted]
    for uuid in shown + unlisted:
        delete(step, secret, uuid, home=homes.get(uuid))
    deleted += [u for u in shown + unlisted if u not in deleted]
    # Adobe's answer to a delete is a first "gone"; an answer that lists nothing of ours,
    # one more in the run.
    absence = (
        Absence(now, 1) if shown else Absence.from_dict(rotation.detail.get("gone")).absent(now)
    )
    _drop_pending(step, stages, spare=holder(stages, CURRENT))
    step.fresh.pop(rotation.id, None)
    # A secret known only from a lost add's answer can be found only in a list: one that
    # leaves it out twice must not end the rollback, so such a rollback asks for more.
    unnamed = bool(rotation.detail.get("add_unaccounted")) and not homes
    answers = UNNAMED_ABSENCE_ANSWERS if unnamed else 2
    if not absence.confirmed(now, step.policy.poll_interval, answers):
        return Outcome(
            State.ROLLING_BACK,
            kind="rollback_confirm",
            changes={
                "detail": {**rotation.detail, "rolled_back": deleted, "gone": absence.as_dict()}
            },
            detail={"deleted": shown + unlisted},
            wait_until=now + confirm_delay(step.policy.poll_interval),
        )
    cancelled = rotation.cancel_requested or bool(rotation.detail.get("preempted"))
    return Outcome(
        State.CANCELLED if cancelled else State.FAILED,
        kind="rolled_back",
        changes={"detail": {**rotation.detail, "rolled_back": deleted, "gone": absence.as_dict()}},
        detail={"deleted": deleted, "reason": rotation.last_error or ""},
    )


def _own_secrets(step: StepContext, rotation: Rotation) -> dict[str, str]:
    """`machine.own_secrets`, plus the uuid in this rotation's own AWS version: a put that
    took effect before its answer was lost staged a secret the rotation never recorded."""
    own = machine.own_secrets(rotation)
    token = rotation.request_token
    staged = step.aws.read(step.cfg.secret_id, version_id=token) if token else None
    staged_uuid = staged.value.get(step.uuid_key) if staged is not None else None
    if token and staged_uuid:
        own.setdefault(str(staged_uuid), token)
    return own


def _drop_pending(
    step: StepContext, stages: dict[str, tuple[str, ...]], *, spare: str | None
) -> None:
    """Remove AWSPENDING from whichever version holds it (not only this rotation's token:
    a put whose answer was lost may have staged an earlier token's version), unless that
    version is `spare`. Only a running rotation stages anything, and this one is it."""
    pending = holder(stages, PENDING)
    if pending is not None and pending != spare:
        step.guard()
        step.move(PENDING, to_version=None, from_version=pending)


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
