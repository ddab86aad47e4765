"""Secrets at Adobe that are neither AWSCURRENT's nor this rotation's (strays): judged,
re-checked on a fresh answer, and deleted only once provably unused; or a person asked."""

from __future__ import annotations

from datetime import datetime

from rotator.domain import machine
from rotator.domain.events import EventKind
from rotator.domain.evidence import Evidence, confirm_delay
from rotator.domain.model import AdobeSecret, Rotation
from rotator.engine.context import StepContext
from rotator.engine.deletes import delete, used_by_uuid
from rotator.engine.outcome import Outcome


def ask(
    rotation: Rotation, now: datetime, step: StepContext, why: str, evidence: Evidence
) -> Outcome:
    """Ask a person, keep watching, and keep what this answer taught (evidence grows)."""
    return Outcome.attention(
        why,
        resume=rotation.resume_state or rotation.state,
        wait_until=now + step.policy.poll_interval,
    ).with_changes(evidence=evidence)


def clear_strays(
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
        return ask(rotation, now, step, verdict.attention, evidence)
    if not verdict.delete:
        changes, detail = {"evidence": evidence}, {"strays": [s.uuid for s in strays]}
        if verdict.wait_until is None:  # no stray listed after all: nothing to wait for
            return Outcome.advance(
                rotation.state, EventKind.STRAYS_WAIT, changes=changes, detail=detail
            )
        return Outcome.wait(
            rotation.state,
            EventKind.STRAYS_WAIT,
            until=verdict.wait_until,
            changes=changes,
            detail=detail,
        )
    relisted = step.adobe.list_secrets(step.ref, secret)
    fresh = used_by_uuid(relisted)
    again = evidence.fold(now, fresh, old_uuid=rotation.old_uuid, new_uuid=rotation.new_uuid)
    contradicted = evidence.contradicted_by(
        fresh, old_uuid=rotation.old_uuid, new_uuid=rotation.new_uuid
    )
    if current_uuid not in fresh or contradicted:
        return Outcome.wait(  # an answer that contradicts what was seen decides nothing (I13)
            rotation.state,
            EventKind.STRAYS_CONTRADICTED,
            until=now + confirm_delay(step.policy.poll_interval),
            changes={"evidence": again},
            detail={"contradicted": contradicted, "current_listed": current_uuid in fresh},
        )
    judged = machine.judge_strays(
        [s for s in relisted if s.uuid in verdict.delete], step.policy, now, evidence=again
    )
    deleted = [u for u in verdict.delete if u in judged.delete]
    for uuid in deleted:
        delete(step, secret, uuid)
    return deleted, again
