"""One function per state: read the world, make the step's effects, return an Outcome.

Each step reads the world (Adobe's list, AWS's labels) before it writes, so repeating a step
after a crash does nothing twice. The decisions themselves live in `rotator.domain.machine`.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

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
    carried,
    confirm_delay,
    went_back,
)
from rotator.domain.model import AdobeSecret, Rotation, State
from rotator.engine.context import CURRENT, PENDING, StepContext, holder
from rotator.engine.deletes import current_identity, delete, recheck, used_by_uuid
from rotator.engine.identify import same_value, unknown
from rotator.engine.outcome import Outcome, failed

log = structlog.get_logger("rotator.engine")

Step = Callable[[StepContext, Rotation, datetime], Outcome]


def plan(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    """Learn which uuid AWSCURRENT holds, clear strays that are provably unused, then
    persist what was seen and a fresh request token before any write.

    Deleting anything needs AWSCURRENT's uuid known by construction (I12): the binding
    recorded at the last promotion or by `rotator adopt`. Without one, a plan with a
    second secret listed asks a person at once (with what it saw, as a suggestion); a plan
    with a free slot goes on with the AWS value's claim (or the one secret listed): the
    add that follows is the witness (it succeeds only if at most one secret existed), and
    the old secret is deleted only once AWSCURRENT is this rotation's own version.
    """
    current = step.current()
    secret = step.current_secret()
    listed = step.adobe.list_secrets(step.ref, secret)
    uuids = {s.uuid for s in listed}
    proven = current_identity(step)  # a binding, or a secret ours by construction
    claim = step.current_uuid()
    only = next(iter(uuids)) if len(uuids) == 1 else None
    old_uuid = proven.uuid if proven else (claim if claim in uuids else only)
    evidence = _evidence(step, rotation).fold(
        now, used_by_uuid(listed), old_uuid=old_uuid, new_uuid=None
    )
    if old_uuid is None or old_uuid not in uuids:
        how = f" ({proven.proof})" if proven else ""
        why = (
            f"AWSCURRENT of {step.cfg.secret_id!r} holds uuid {old_uuid or claim}{how}, which "
            f"Adobe does not list for credential {step.cfg.credential_id}"
        )
        return _ask(rotation, now, step, unknown(step, listed, why), evidence)
    # A secret this rotation (or the one it abandoned) created, whose plaintext lives only
    # in a version AWSCURRENT is not on, is known by construction: it is ours to give back.
    own = {u: home for u, home in machine.own_secrets(rotation).items() if u != old_uuid}
    ours = [u for u in own if u in uuids and not same_value(step, own[u])]
    for uuid in ours:
        delete(step, secret, uuid, home=own[uuid])
    strays = [s for s in listed if s.uuid != old_uuid and s.uuid not in ours]
    uuids -= set(ours)
    if strays and proven is None:
        why = f"Adobe lists {len(listed)} secrets for credential {step.cfg.credential_id}"
        return _ask(rotation, now, step, unknown(step, listed, why), evidence)
    deleted: list[str] = []
    if strays:
        if proven is None:
            raise InvariantError("strays are cleared only once AWSCURRENT's secret is known")
        step.rotation = rotation.evolve(old_uuid=old_uuid, evidence=evidence)
        cleared = _clear_strays(step, rotation, now, secret, strays, proven.uuid, evidence)
        if isinstance(cleared, Outcome):
            return cleared
        deleted, evidence = cleared
        if set(deleted) != {s.uuid for s in strays}:
            return Outcome(
                State.PLANNED,
                kind="strays_wait",
                changes={"evidence": evidence},
                detail={"strays_deleted": deleted},
                wait_until=now + confirm_delay(step.policy.poll_interval),
            )
    guessed = proven is None and claim != old_uuid
    return Outcome(
        State.CREATING,
        kind="planned",
        changes={
            "old_uuid": old_uuid,
            "known_uuids": tuple(sorted(uuids - set(deleted))),
            "request_token": uuidlib.uuid4().hex,
            "previous_version": current.version_id,
            "evidence": evidence,
            "detail": {
                **rotation.detail,
                **({"old_uuid_listed_alone": True} if guessed else {}),
                "add_intent": _intent(step, sorted(uuids - set(deleted))),
            },
        },
        detail={
            "old_uuid": old_uuid,
            "identity": proven.proof if proven else "claim" if not guessed else "listed alone",
            "strays_deleted": deleted,
        },
        credential_update=(
            {"current_uuid": proven.uuid, "current_version": proven.version_id} if proven else None
        ),
    )


def _evidence(step: StepContext, rotation: Rotation) -> Evidence:
    """This rotation's evidence; on its first look, what the credential's last finished
    rotation knew (grow-only across rotations, I10), its kept old secret included."""
    if rotation.evidence is not None:
        return rotation.evidence
    before = next(
        (r for r in step.store.recent(rotation.credential, limit=5) if r.id < rotation.id), None
    )
    if before is None:
        return NO_EVIDENCE
    deleted = set(before.detail.get("deleted") or ())
    kept = before.promoted_at if before.old_uuid not in deleted else None
    return carried(
        before.evidence,
        old_uuid=before.old_uuid,
        new_uuid=before.new_uuid,
        kept_since=kept,
        deleted=tuple(str(u) for u in deleted),
    )


def _ask(
    rotation: Rotation, now: datetime, step: StepContext, why: str, evidence: Evidence
) -> Outcome:
    """Ask a person, keep watching, and keep what this answer taught (evidence grows)."""
    asked = Outcome.attention(
        why,
        resume=rotation.resume_state or rotation.state,
        wait_until=now + step.policy.poll_interval,
    )
    asked.changes["evidence"] = evidence
    return asked


def _clear_strays(
    step: StepContext,
    rotation: Rotation,
    now: datetime,
    secret: str,
    strays: list[AdobeSecret],
    current_uuid: str,
    evidence: Evidence,
) -> tuple[list[str], Evidence] | Outcome:
    """Delete the strays that may go now; the caller knows AWSCURRENT's uuid (I12).

    An emergency deletes every stray at once. Otherwise a stray goes only once watched
    unused for quiet_period + usage_lag (`machine.judge_strays`), and only on a fresh
    answer, taken right before the delete, that lists it with no contradiction of what
    was seen (I13): a use as new as the one recorded, AWSCURRENT's secret listed too.
    Returns what was deleted and the evidence, or an Outcome to wait or ask a person.
    """
    if rotation.emergency:
        for stray in strays:
            delete(step, secret, stray.uuid)
        return [s.uuid for s in strays], evidence
    verdict = machine.judge_strays(strays, step.policy, now, evidence=evidence)
    if verdict.attention:
        return _ask(rotation, now, step, verdict.attention, evidence)
    if not verdict.delete:
        return Outcome(
            rotation.state,
            kind="strays_wait",
            changes={"evidence": evidence},
            detail={"strays": [s.uuid for s in strays]},
            wait_until=verdict.wait_until,
        )
    relisted = step.adobe.list_secrets(step.ref, secret)
    fresh = used_by_uuid(relisted)
    again = evidence.fold(now, fresh, old_uuid=rotation.old_uuid, new_uuid=rotation.new_uuid)
    contradicted = evidence.contradicted_by(
        fresh, old_uuid=rotation.old_uuid, new_uuid=rotation.new_uuid
    )
    if current_uuid not in fresh or contradicted:
        return Outcome(  # an answer that contradicts what was seen decides nothing (I13)
            rotation.state,
            kind="strays_contradicted",
            changes={"evidence": again},
            detail={"contradicted": contradicted, "current_listed": current_uuid in fresh},
            wait_until=now + confirm_delay(step.policy.poll_interval),
        )
    judged = machine.judge_strays(
        [s for s in relisted if s.uuid in verdict.delete], step.policy, now, evidence=again
    )
    deleted = [u for u in verdict.delete if u in judged.delete]
    for uuid in deleted:
        delete(step, secret, uuid)
    return deleted, again


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
                changes={"new_uuid": staged_uuid, "detail": _no_intent(rotation.detail)},
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
        listed, rotation.known_uuids, intents=_intents(step, rotation), evidence=rotation.evidence
    )
    if orphans:  # an add of ours whose answer was lost: give its secret back
        for orphan in orphans:
            delete(step, secret, orphan)
    if len({s.uuid for s in listed} - set(orphans)) >= 2:
        # No free slot: an add would be refused at the two-secret limit. Make room first
        # (or ask a person) without sending it.
        full = SecretLimit("Adobe lists two secrets", credential=rotation.credential)
        return _make_room(step, rotation.evolve(detail=_no_intent(rotation.detail)), now, full)
    if not isinstance(rotation.detail.get("add_intent"), dict):
        # Recorded before the POST (planning records the first): only an add whose outcome
        # is unknown can leave an orphan, and only a secret no answer showed before it.
        return Outcome(
            State.CREATING,
            kind="adding",
            changes={"detail": {**rotation.detail, "add_intent": _intent(step, sorted(uuids))}},
            detail={"orphans_deleted": orphans},
        )
    step.guard()
    try:
        created = step.adobe.add_secret(step.ref, secret)
    except SecretLimit as exc:
        return _make_room(step, rotation.evolve(detail=_no_intent(rotation.detail)), now, exc)
    except StepError as exc:
        if exc.maybe_applied:
            raise  # the intent stays: a secret it made is an orphan to find
        # Adobe answered (a refusal, a 429): nothing was added, so nothing new is ours.
        answered = failed(rotation, exc.located(credential=rotation.credential, step="add"), now)
        answered.changes["detail"] = _no_intent(rotation.detail)
        return answered
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
    detail = {**_no_intent(rotation.detail), "new_created_at": created.created_at.isoformat()}
    return Outcome(
        State.STAGED,
        kind="staged",
        changes={"new_uuid": created.uuid, "detail": detail},
        detail={"new_uuid": created.uuid, "orphans_deleted": orphans},
    )


def _no_intent(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in detail.items() if k != "add_intent"}


def _intent(step: StepContext, known: list[str]) -> dict[str, Any]:
    """An add about to be sent, recorded before it: the uuids listed before, when, and the
    lease (fence) under which it is sent. Under the same lease no POST has been sent yet
    (this worker would know its answer); under a later one, one may have been."""
    return {
        "known": known,
        "at": step.engine.clock().isoformat(),
        "fence": step.claim.fence if step.claim else None,
    }


def _known_before(intent: dict[str, Any], evidence: Evidence | None) -> list[str]:
    """The uuids listed right before the add, and any seen by an answer before then."""
    known = [str(u) for u in intent.get("known") or ()]
    at = intent.get("at")
    if evidence is not None and isinstance(at, str):
        since = datetime.fromisoformat(at)
        known += [u for u, first in evidence.first_seen.items() if first < since]
    return known


def _intents(step: StepContext, rotation: Rotation) -> list[list[str]]:
    """The adds whose outcome is unknown that this rotation answers for: its own (unless
    armed under this very lease: not sent yet), and for an emergency the one of the
    rotation it abandoned (each with the uuids listed before it)."""
    found = []
    fence = step.claim.fence if step.claim else None
    own = rotation.detail.get("add_intent")
    if isinstance(own, dict) and (fence is None or own.get("fence") != fence):
        found.append(_known_before(own, rotation.evidence))
    followed = _followed_detail(step, rotation)
    inherited = followed.get("add_intent") if followed else None
    if isinstance(inherited, dict):
        found.append(_known_before(inherited, rotation.evidence))
    return found


def _followed_detail(step: StepContext, rotation: Rotation) -> dict[str, Any] | None:
    followed = rotation.detail.get("follows")
    if not isinstance(followed, int):
        return None
    return step.store.get(followed).detail


def _make_room(step: StepContext, rotation: Rotation, now: datetime, limit: SecretLimit) -> Outcome:
    """Adobe refused the add at its two-secret limit: it holds a secret the plan never saw
    (a list that left it out) or still counts one just deleted, and a plan that took the
    one secret listed for AWSCURRENT's learns that guess was wrong. Deleting a stray to make
    room needs AWSCURRENT's uuid known by construction (I12): without a binding a person
    is asked at once; with one, strays are judged as the plan judges them (an emergency
    deletes them at once), and the add is tried again later: never AWSCURRENT's secret."""
    secret = step.current_secret()
    listed = step.adobe.list_secrets(step.ref, secret)
    proven = current_identity(step)
    detail = rotation.detail
    old_uuid = rotation.old_uuid
    if detail.get("old_uuid_listed_alone"):
        detail = {k: v for k, v in detail.items() if k != "old_uuid_listed_alone"}
        old_uuid = None  # the add proved that list incomplete: no guess survives it
    if proven is not None:
        old_uuid = proven.uuid
    step.rotation = rotation = rotation.evolve(old_uuid=old_uuid, detail=detail)
    evidence = (rotation.evidence or NO_EVIDENCE).fold(
        now, used_by_uuid(listed), old_uuid=old_uuid, new_uuid=None
    )
    base = {"old_uuid": old_uuid, "detail": detail, "evidence": evidence}
    if proven is None:
        why = f"Adobe refused a new secret at its two-secret limit ({limit.detail})"
        asked = _ask(rotation, now, step, unknown(step, listed, why), evidence)
        asked.changes.update(base)
        return asked
    strays = [s for s in listed if s.uuid != proven.uuid]
    cleared = _clear_strays(step, rotation, now, secret, strays, proven.uuid, evidence)
    if isinstance(cleared, Outcome):
        cleared.changes = {**base, **cleared.changes}
        return cleared
    deleted, evidence = cleared
    made_room = f"; deleted {', '.join(deleted)}" if deleted else "; no stray listed yet"
    error = TransientError(f"{limit.detail}{made_room}; adding again later", step="add secret")
    error.deleted = {"strays_deleted": deleted} if deleted else {}
    retry = failed(rotation, error.located(credential=rotation.credential, step="add"), now)
    retry.changes.update({**base, "evidence": evidence})
    return retry


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
    before = rotation.evidence or NO_EVIDENCE
    evidence = before.fold(now, used, old_uuid=rotation.old_uuid, new_uuid=rotation.new_uuid)
    old_present = rotation.old_uuid in used
    contradicted = old_present and went_back(before, used.get(rotation.old_uuid or ""))
    stale_since = (evidence.stale_since or now) if contradicted else None
    evidence = replace(evidence, stale_since=stale_since)
    verdict = machine.judge_drain(
        rotation, evidence, old_present, step.policy, now, contradicted=contradicted
    )
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
        kind="poll_contradicted" if contradicted else "poll",
        changes={"evidence": evidence},
        detail=detail,
        wait_until=verdict.next_poll_at,
    )


def retire(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    """Delete the old secret (an emergency: every other), on a fresh answer judged again.

    A normal rotation deletes the old secret only on an answer that lists it with a use at
    least as new as the one recorded (I13); one that leaves it out, or shows it with no use
    or an older one, sends it back to draining, for as long as Adobe answers so. Answers
    that agree it is gone (two in a row, apart in time) end the rotation with no delete.
    """
    secret = step.current_secret()
    identity = current_identity(step)
    if identity is None or identity.uuid != rotation.new_uuid:
        listed = step.adobe.list_secrets(step.ref, secret)
        raise NeedsAttention(
            unknown(
                step,
                listed,
                f"AWSCURRENT of {step.cfg.secret_id!r} is no longer known to hold the new "
                f"secret {rotation.new_uuid}; refusing to delete anything",
            )
        )
    listed, evidence = recheck(step, secret, now)
    uuids = [s.uuid for s in listed]
    if machine.retires_everything_else(rotation):
        return _retire_everything_else(step, rotation, now, secret, uuids, evidence)
    old_present = rotation.old_uuid in uuids
    answered = next((s.last_used_at for s in listed if s.uuid == rotation.old_uuid), None)
    contradicted = old_present and went_back(rotation.evidence, answered)
    if contradicted:
        evidence = replace(evidence, stale_since=evidence.stale_since or now)
        return Outcome(
            State.DRAINING,
            kind="recheck_stale",
            changes={"evidence": evidence},
            detail={"evidence": evidence.as_dict(), "old_present": True},
            wait_until=now + confirm_delay(step.policy.poll_interval),
        )
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
    # Only on an answer that lists it, judged quiet: an old secret that answers agree is
    # gone is not deleted by uuid on a view that does not show it (I13).
    doomed = [rotation.old_uuid] if rotation.old_uuid and old_present else []
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
        listed, keep | set(own), intents=_intents(step, rotation), evidence=rotation.evidence
    )
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
