"""`rolling_back`: give back what this rotation created; AWSCURRENT untouched."""

from __future__ import annotations

from datetime import datetime

from rotator.domain import machine
from rotator.domain.events import EventKind
from rotator.domain.evidence import UNNAMED_ABSENCE_ANSWERS, Absence, confirm_delay
from rotator.domain.model import AdobeSecret, Rotation, State
from rotator.engine.context import CURRENT, StepContext, holder
from rotator.engine.deletes import delete
from rotator.engine.outcome import Outcome
from rotator.engine.steps.intents import unanswered_adds
from rotator.engine.steps.promoting import drop_pending, promote


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
    homes = _own_secrets(step, rotation)
    shown, unlisted = _give_back(step, rotation, secret, listed, homes)
    deleted = list(rotation.detail.get("rolled_back") or [])
    deleted += [u for u in shown + unlisted if u not in deleted]
    # Adobe's answer to a delete is a first "gone"; an answer that lists nothing of ours,
    # one more in the run.
    absence = (
        Absence(now, 1) if shown else Absence.from_dict(rotation.detail.get("gone")).absent(now)
    )
    drop_pending(step, stages, spare=holder(stages, CURRENT))
    step.fresh.pop(rotation.id, None)
    # A secret known only from a lost add's answer can be found only in a list: one that
    # leaves it out twice must not end the rollback, so such a rollback asks for more.
    unnamed = bool(rotation.detail.get("add_unaccounted")) and not homes
    answers = UNNAMED_ABSENCE_ANSWERS if unnamed else 2
    changes = {"detail": {**rotation.detail, "rolled_back": deleted, "gone": absence.as_dict()}}
    if not absence.confirmed(now, step.policy.poll_interval, answers):
        return Outcome.wait(
            State.ROLLING_BACK,
            EventKind.ROLLBACK_CONFIRM,
            until=now + confirm_delay(step.policy.poll_interval),
            changes=changes,
            detail={"deleted": shown + unlisted},
        )
    cancelled = rotation.cancel_requested or bool(rotation.detail.get("preempted"))
    return Outcome.finish(
        State.CANCELLED if cancelled else State.FAILED,
        EventKind.ROLLED_BACK,
        changes=changes,
        detail={"deleted": deleted, "reason": rotation.last_error or ""},
    )


def _give_back(
    step: StepContext,
    rotation: Rotation,
    secret: str,
    listed: list[AdobeSecret],
    homes: dict[str, str],
) -> tuple[list[str], list[str]]:
    """Delete this rotation's own secrets (by uuid, listed or not) and the orphans a list
    shows; returns those listed and those deleted unlisted."""
    keep = {u for u in (rotation.old_uuid, step.current_uuid(), *rotation.known_uuids) if u}
    version = step.current().version_id
    own = [u for u, home in homes.items() if u not in keep and home != version]
    orphans = machine.find_orphans(
        listed,
        keep | set(own),
        intents=unanswered_adds(step, rotation),
        evidence=rotation.evidence,
    )
    uuids = {s.uuid for s in listed}
    shown = [u for u in (*own, *orphans) if u in uuids]
    deleted = list(rotation.detail.get("rolled_back") or [])
    unlisted = [u for u in own if u not in uuids and u not in deleted]
    for uuid in shown + unlisted:
        delete(step, secret, uuid, home=homes.get(uuid))
    return shown, unlisted


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
