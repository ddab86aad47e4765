"""`planned`: learn which uuid AWSCURRENT holds, clear what may go, persist before any write."""

from __future__ import annotations

import uuid as uuidlib
from datetime import datetime

from rotator.domain import machine
from rotator.domain.errors import InvariantError
from rotator.domain.events import EventKind
from rotator.domain.evidence import NO_EVIDENCE, Evidence, carried, confirm_delay
from rotator.domain.identity import Identity
from rotator.domain.model import CredentialUpdate, Rotation, State
from rotator.engine.context import StepContext
from rotator.engine.deletes import current_identity, delete, used_by_uuid
from rotator.engine.identify import same_value, unknown
from rotator.engine.outcome import Outcome
from rotator.engine.steps.intents import add_intent
from rotator.engine.steps.strays import ask, clear_strays


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
        return ask(rotation, now, step, unknown(step, listed, why), evidence)
    ours = _give_back_own(step, rotation, secret, uuids, old_uuid)
    strays = [s for s in listed if s.uuid != old_uuid and s.uuid not in ours]
    uuids -= set(ours)
    if strays and proven is None:
        why = f"Adobe lists {len(listed)} secrets for credential {step.cfg.credential_id}"
        return ask(rotation, now, step, unknown(step, listed, why), evidence)
    deleted: list[str] = []
    if strays:
        if proven is None:
            raise InvariantError("strays are cleared only once AWSCURRENT's secret is known")
        step.rotation = rotation.evolve(old_uuid=old_uuid, evidence=evidence)
        cleared = clear_strays(step, rotation, now, secret, strays, proven.uuid, evidence)
        if isinstance(cleared, Outcome):
            return cleared
        deleted, evidence = cleared
        if set(deleted) != {s.uuid for s in strays}:
            return Outcome.wait(
                State.PLANNED,
                EventKind.STRAYS_WAIT,
                until=now + confirm_delay(step.policy.poll_interval),
                changes={"evidence": evidence},
                detail={"strays_deleted": deleted},
            )
    guessed = proven is None and claim != old_uuid
    known = sorted(uuids - set(deleted))
    return _planned(step, rotation, old_uuid, proven, known, deleted, evidence, guessed=guessed)


def _give_back_own(
    step: StepContext, rotation: Rotation, secret: str, uuids: set[str], old_uuid: str
) -> list[str]:
    """A secret this rotation (or the one it abandoned) created, whose plaintext lives only
    in a version AWSCURRENT is not on, is known by construction: it is ours to give back."""
    own = {u: home for u, home in machine.own_secrets(rotation).items() if u != old_uuid}
    ours = [u for u in own if u in uuids and not same_value(step, own[u])]
    for uuid in ours:
        delete(step, secret, uuid, home=own[uuid])
    return ours


def _planned(
    step: StepContext,
    rotation: Rotation,
    old_uuid: str,
    proven: Identity | None,
    known: list[str],
    deleted: list[str],
    evidence: Evidence,
    *,
    guessed: bool,
) -> Outcome:
    """Everything the add needs, persisted before it: a fresh token, what was listed."""
    return Outcome.advance(
        State.CREATING,
        EventKind.PLANNED,
        changes={
            "old_uuid": old_uuid,
            "known_uuids": tuple(known),
            "request_token": uuidlib.uuid4().hex,
            "previous_version": step.current().version_id,
            "evidence": evidence,
            "detail": {
                **rotation.detail,
                **({"old_uuid_listed_alone": True} if guessed else {}),
                "add_intent": add_intent(step, known),
            },
        },
        detail={
            "old_uuid": old_uuid,
            "identity": proven.proof if proven else "claim" if not guessed else "listed alone",
            "strays_deleted": deleted,
        },
        credential_update=(
            CredentialUpdate.bound(proven.uuid, proven.version_id) if proven else None
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
