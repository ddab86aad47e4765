"""`creating`: add a secret at Adobe and stage it in AWS as AWSPENDING, exactly once.

Each attempt reads the world first (Adobe's list, this rotation's AWS version): a put that
landed before a crash is adopted, an add whose answer was lost is found as an orphan and
given back, and a full slot is made room for (or a person asked) before any add is sent.
"""

from __future__ import annotations

import uuid as uuidlib
from datetime import datetime

from rotator.domain import machine
from rotator.domain.errors import (
    InvariantError,
    LeaseLost,
    SecretLimit,
    StepError,
    TransientError,
)
from rotator.domain.events import EventKind
from rotator.domain.evidence import NO_EVIDENCE
from rotator.domain.model import Rotation, State
from rotator.engine.context import StepContext
from rotator.engine.deletes import current_identity, delete, used_by_uuid
from rotator.engine.identify import unknown
from rotator.engine.outcome import Outcome, failed
from rotator.engine.steps.intents import add_intent, answered, unanswered_adds, without_intent
from rotator.engine.steps.strays import ask, clear_strays
from rotator.ports import SecretVersion


def create(step: StepContext, rotation: Rotation, now: datetime) -> Outcome:
    secret = step.current_secret()
    listed = step.adobe.list_secrets(step.ref, secret)
    uuids = {s.uuid for s in listed}
    token = rotation.request_token
    if token is None:
        raise InvariantError("planned persists the request token before any write")
    pending = step.aws.read(step.cfg.secret_id, version_id=token)
    if pending is not None:
        return _staged_before(step, rotation, secret, uuids, token, pending)
    orphans = machine.find_orphans(
        listed,
        rotation.known_uuids,
        intents=unanswered_adds(step, rotation),
        evidence=rotation.evidence,
    )
    if orphans:  # an add of ours whose answer was lost: give its secret back
        for orphan in orphans:
            delete(step, secret, orphan)
    if len({s.uuid for s in listed} - set(orphans)) >= 2:
        # No free slot: an add would be refused at the two-secret limit. Make room first
        # (or ask a person) without sending it.
        full = SecretLimit("Adobe lists two secrets", credential=rotation.credential)
        return _make_room(step, rotation.evolve(detail=answered(step, rotation.detail)), now, full)
    if not isinstance(rotation.detail.get("add_intent"), dict):
        # Recorded before the POST (planning records the first): only an add whose outcome
        # is unknown can leave an orphan, and only a secret no answer showed before it.
        return Outcome.advance(
            State.CREATING,
            EventKind.ADDING,
            changes={"detail": {**rotation.detail, "add_intent": add_intent(step, sorted(uuids))}},
            detail={"orphans_deleted": orphans},
        )
    return _add_and_stage(step, rotation, now, secret, token, orphans)


def _staged_before(
    step: StepContext,
    rotation: Rotation,
    secret: str,
    uuids: set[str],
    token: str,
    pending: SecretVersion,
) -> Outcome:
    """This rotation's AWS version exists: an earlier attempt's put landed."""
    staged_uuid = pending.value.get(step.uuid_key)
    if staged_uuid in uuids:  # the put landed before a crash: adopt it
        return Outcome.advance(
            State.STAGED,
            EventKind.STAGED,
            changes={"new_uuid": staged_uuid, "detail": without_intent(rotation.detail)},
            detail={"new_uuid": staged_uuid, "resumed": True},
        )
    # One list does not show the secret our version holds: Adobe lost it, or the list
    # left it out. It is ours either way (its plaintext lives only in this version), so
    # give it back by uuid (a 404 means gone) before a fresh token: one answer must not
    # leave it at Adobe under no AWS label (I7, I9). A version is immutable, so the next
    # attempt needs a fresh token (persisted before it is used).
    if staged_uuid:
        delete(step, secret, str(staged_uuid), home=token)
    return Outcome.advance(
        State.CREATING,
        EventKind.TOKEN_RENEWED,
        changes={"request_token": uuidlib.uuid4().hex},
        detail={"stale_uuid": str(staged_uuid), "deleted": bool(staged_uuid)},
    )


def _add_and_stage(
    step: StepContext,
    rotation: Rotation,
    now: datetime,
    secret: str,
    token: str,
    orphans: list[str],
) -> Outcome:
    """Send the add (its intent is recorded), then put its value as AWSPENDING at once."""
    step.guard()
    try:
        created = step.adobe.add_secret(step.ref, secret)
    except SecretLimit as exc:
        return _make_room(step, rotation.evolve(detail=answered(step, rotation.detail)), now, exc)
    except StepError as exc:
        if exc.maybe_applied:
            raise  # the intent stays: a secret it made is an orphan to find
        # Adobe answered (a refusal, a 429): nothing was added, so nothing new is ours.
        refused = failed(rotation, exc.located(credential=rotation.credential, step="add"), now)
        return refused.with_changes(detail=answered(step, rotation.detail))
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
    detail = {**without_intent(rotation.detail), "new_created_at": created.created_at.isoformat()}
    return Outcome.advance(
        State.STAGED,
        EventKind.STAGED,
        changes={"new_uuid": created.uuid, "detail": detail},
        detail={"new_uuid": created.uuid, "orphans_deleted": orphans},
    )


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
        return ask(rotation, now, step, unknown(step, listed, why), evidence).with_changes(**base)
    strays = [s for s in listed if s.uuid != proven.uuid]
    cleared = clear_strays(step, rotation, now, secret, strays, proven.uuid, evidence)
    if isinstance(cleared, Outcome):
        return cleared.with_defaults(**base)
    deleted, evidence = cleared
    made_room = f"; deleted {', '.join(deleted)}" if deleted else "; no stray listed yet"
    error = TransientError(f"{limit.detail}{made_room}; adding again later", step="add secret")
    error.deleted = {"strays_deleted": deleted} if deleted else {}
    retry = failed(rotation, error.located(credential=rotation.credential, step="add"), now)
    return retry.with_changes(**{**base, "evidence": evidence})
