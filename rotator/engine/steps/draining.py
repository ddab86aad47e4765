"""`draining` to `completed`: watch the old secret go quiet, then delete it (an emergency:
every other secret) on a fresh answer judged again (I9, I10, I13)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import structlog

from rotator.domain import machine
from rotator.domain.errors import InvariantError, NeedsAttention, StepError
from rotator.domain.events import EventKind
from rotator.domain.evidence import NO_EVIDENCE, Evidence, confirm_delay, went_back
from rotator.domain.model import AdobeSecret, Rotation, State
from rotator.engine.context import StepContext
from rotator.engine.deletes import current_identity, delete, recheck, used_by_uuid
from rotator.engine.identify import unknown
from rotator.engine.outcome import Outcome

log = structlog.get_logger("rotator.engine")


def _next_poll(verdict: machine.DrainVerdict) -> datetime:
    if verdict.next_poll_at is None:
        raise InvariantError("a drain that does not retire polls again")
    return verdict.next_poll_at


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
    changes = {"evidence": evidence}
    if verdict.retire:
        kind = EventKind.GONE if verdict.gone else EventKind.QUIET
        return Outcome.advance(State.RETIRING, kind, changes=changes, detail=detail)
    if verdict.overdue:
        return Outcome.attention(
            verdict.overdue, resume=State.DRAINING, wait_until=_next_poll(verdict), detail=detail
        ).with_changes(**changes)
    return Outcome.wait(
        State.DRAINING,
        EventKind.POLL_CONTRADICTED if contradicted else EventKind.POLL,
        until=_next_poll(verdict),
        changes=changes,
        detail=detail,
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
    if machine.retires_everything_else(rotation):
        uuids = [s.uuid for s in listed]
        return _retire_everything_else(step, rotation, now, secret, uuids, evidence)
    return _retire_old(step, rotation, now, secret, listed, evidence)


def _retire_old(
    step: StepContext,
    rotation: Rotation,
    now: datetime,
    secret: str,
    listed: list[AdobeSecret],
    evidence: Evidence,
) -> Outcome:
    """A normal rotation: delete the old secret only on this answer, judged quiet again."""
    old_present = rotation.old_uuid in [s.uuid for s in listed]
    answered = next((s.last_used_at for s in listed if s.uuid == rotation.old_uuid), None)
    contradicted = old_present and went_back(rotation.evidence, answered)
    if contradicted:
        evidence = replace(evidence, stale_since=evidence.stale_since or now)
        return Outcome.wait(
            State.DRAINING,
            EventKind.RECHECK_STALE,
            until=now + confirm_delay(step.policy.poll_interval),
            changes={"evidence": evidence},
            detail={"evidence": evidence.as_dict(), "old_present": True},
        )
    evidence = replace(evidence, stale_since=None)
    verdict = machine.judge_drain(rotation, evidence, old_present, step.policy, now)
    if not verdict.retire:  # a use (or an unconfirmed absence) seen right before the delete
        return Outcome.wait(
            State.DRAINING,
            EventKind.RECHECK_SAW_USE if old_present else EventKind.RECHECK_ABSENT,
            until=_next_poll(verdict),
            changes={"evidence": evidence},
            detail={
                "evidence": evidence.as_dict(),
                "old_present": old_present,
                "deadline": verdict.deadline.isoformat() if verdict.deadline else None,
            },
        )
    # Only on an answer that lists it, judged quiet: an old secret that answers agree is
    # gone is not deleted by uuid on a view that does not show it (I13).
    doomed = [rotation.old_uuid] if rotation.old_uuid and old_present else []
    for uuid in doomed:
        delete(step, secret, uuid)
    return Outcome.finish(
        State.COMPLETED,
        EventKind.COMPLETED,
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
        return Outcome.wait(
            State.RETIRING,
            EventKind.RETIRE_CONFIRM,
            until=now + confirm_delay(step.policy.poll_interval),
            changes={"evidence": evidence, "detail": {**rotation.detail, "deleted": deleted}},
            detail={"deleted": doomed, "tokens_invalidated": invalidated},
        )
    return Outcome.finish(
        State.COMPLETED,
        EventKind.COMPLETED,
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
