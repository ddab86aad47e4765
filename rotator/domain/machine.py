"""The rotation state machine: which transitions exist and what each observation means.

Everything here is a pure function of values, so each decision is unit-tested without
Adobe, AWS or a database. The engine performs the effects these decisions ask for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rotator.domain import evidence as proof
from rotator.domain import policy as rules
from rotator.domain.errors import InvariantError, StepError
from rotator.domain.evidence import Evidence
from rotator.domain.model import AdobeSecret, Policy, Rotation, State

S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    S.PLANNED: frozenset({S.CREATING, S.NEEDS_ATTENTION, S.FAILED, S.CANCELLED, S.ROLLING_BACK}),
    S.CREATING: frozenset({S.STAGED, S.ROLLING_BACK, S.NEEDS_ATTENTION, S.CANCELLED}),
    S.STAGED: frozenset({S.VERIFIED, S.ROLLING_BACK, S.NEEDS_ATTENTION}),
    S.VERIFIED: frozenset({S.PROMOTED, S.ROLLING_BACK, S.NEEDS_ATTENTION}),
    S.PROMOTED: frozenset({S.DRAINING, S.RETIRING, S.NEEDS_ATTENTION, S.CANCELLED}),
    S.DRAINING: frozenset({S.RETIRING, S.COMPLETED, S.NEEDS_ATTENTION, S.CANCELLED}),
    # -> draining: the re-check right before the delete saw a use (I9).
    S.RETIRING: frozenset({S.COMPLETED, S.NEEDS_ATTENTION, S.DRAINING}),
    # -> promoted: a crash after AWSCURRENT moved but before the state was saved.
    S.ROLLING_BACK: frozenset({S.FAILED, S.CANCELLED, S.NEEDS_ATTENTION, S.PROMOTED}),
    S.NEEDS_ATTENTION: frozenset(
        {
            S.PLANNED,
            S.CREATING,
            S.STAGED,
            S.VERIFIED,
            S.PROMOTED,
            S.DRAINING,
            S.RETIRING,
            S.ROLLING_BACK,
            S.COMPLETED,
            S.CANCELLED,
            S.FAILED,
        }
    ),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.ABANDONED: frozenset(),
}
# An emergency abandons a normal rotation wherever it stands (see `leftovers`): every
# unfinished state may end there.
for _unfinished in [s for s in TRANSITIONS if not s.terminal]:
    TRANSITIONS[_unfinished] = TRANSITIONS[_unfinished] | {S.ABANDONED}


TRANSIENT_ALERT_AFTER = 8  # about 10 minutes of backoff: then a person is told, retries go on


class IllegalTransition(ValueError):
    pass


def check_transition(current: State, target: State) -> None:
    """Refuse a move the machine does not have; staying put (a retry or a poll) is always fine."""
    if target is not current and target not in TRANSITIONS[current]:
        raise IllegalTransition(f"no transition {current} -> {target}")


# --- planned -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StrayVerdict:
    """What to do with Adobe secrets that are neither AWSCURRENT's nor ours."""

    delete: tuple[str, ...] = ()
    attention: str | None = None


def judge_strays(
    listed: Sequence[AdobeSecret],
    current_uuid: str,
    policy: Policy,
    now: datetime,
    *,
    emergency: bool,
    evidence: Evidence | None = None,
) -> StrayVerdict:
    """A stray blocks the two-secret limit. Delete it only if nobody used it for quiet_period.

    "Used" is the latest use ever seen (`evidence`, grow-only) and the quiet rule adds
    usage_lag, as for the old secret. An emergency deletes strays at once: a leak may have
    come through any of them. `current_uuid` must be proven (see identity.py), not claimed.
    """
    strays = [s for s in listed if s.uuid != current_uuid]
    if not strays or emergency:
        return StrayVerdict(delete=tuple(s.uuid for s in strays))
    seen = evidence.strays if evidence else {}
    deletable: list[AdobeSecret] = []
    blocking: list[AdobeSecret] = []
    for stray in strays:
        used_at = proof.latest(stray.last_used_at, seen.get(stray.uuid))
        deadline = proof.quiet_deadline(
            since=stray.created_at,
            last_used_at=used_at,
            quiet_period=policy.quiet_period,
            usage_lag=policy.lag,
        )
        quiet = now >= deadline
        (deletable if quiet and policy.prune_strays else blocking).append(stray)
    if blocking:
        s = blocking[0]
        last = proof.latest(s.last_used_at, seen.get(s.uuid))
        used = last.isoformat() if last else "never"
        recent = "used" if last and last >= s.created_at else "created"
        why = (
            "prune_strays is false"
            if not policy.prune_strays
            else f"it was {recent} within the quiet period of {_human(policy.quiet_period)}"
        )
        return StrayVerdict(
            attention=(
                f"Adobe holds a second secret {s.uuid} (created {s.created_at.isoformat()}, "
                f"last used {used}) that AWSCURRENT does not record, and {why}; "
                f"find its consumer, then delete it at Adobe or run `rotator cancel`"
            )
        )
    return StrayVerdict(delete=tuple(s.uuid for s in deletable))


# --- creating ------------------------------------------------------------------------------


# Adobe's created_at and the store's clock may disagree by this much at most.
ORPHAN_CLOCK_MARGIN = timedelta(minutes=10)


def find_orphans(
    listed: Iterable[AdobeSecret],
    known_uuids: Iterable[str],
    adopted: str | None,
    *,
    planned_at: datetime | None = None,
    evidence: Evidence | None = None,
) -> list[str]:
    """Secrets that appeared at Adobe since planning and that AWS does not hold under our token.

    Their plaintext was lost in a crash between Adobe's answer and the AWS put: nobody can
    ever use them, and they take a slot of the two-secret limit, so they are deleted. A list
    may have left a secret out at planning, so "not known" alone is no proof: a secret that
    anyone ever used, or that existed before the rotation was planned, is not an orphan.
    """
    known = set(known_uuids)
    seen = evidence.strays if evidence else {}
    return [
        s.uuid
        for s in listed
        if s.uuid not in known
        and s.uuid != adopted
        and s.last_used_at is None
        and s.uuid not in seen
        and (planned_at is None or s.created_at >= planned_at - ORPHAN_CLOCK_MARGIN)
    ]


# --- staged --------------------------------------------------------------------------------


def verify_gives_up(rotation: Rotation, now: datetime, verify_timeout: timedelta) -> bool:
    """Adobe may take a moment to accept a new secret; after verify_timeout it never will."""
    since = rotation.state_since or rotation.created_at
    return now - since >= verify_timeout


# --- draining ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainVerdict:
    retire: bool
    next_poll_at: datetime | None = None
    overdue: str | None = None
    deadline: datetime | None = None  # the effective quiet deadline, for `status`
    gone: bool = False  # confirmed absent: nothing is left to delete


def drain_deadline(rotation: Rotation, evidence: Evidence | None, policy: Policy) -> datetime:
    """When the old secret counts as quiet: quiet_period + usage_lag after its last sign of
    life (promotion, or the latest use ever seen)."""
    if rotation.promoted_at is None:
        raise InvariantError("draining starts at promotion")
    return proof.quiet_deadline(
        since=rotation.promoted_at,
        last_used_at=evidence.old_last_used_at if evidence else None,
        quiet_period=policy.quiet_period,
        usage_lag=policy.lag,
    )


def judge_drain(
    rotation: Rotation, evidence: Evidence, old_present: bool, policy: Policy, now: datetime
) -> DrainVerdict:
    """Retire the old secret once quiet (I9, I10); past max_drain, alert.

    `evidence` already holds this answer, folded grow-only. An answer without the old uuid
    proves nothing alone, and even a confirmed absence (two answers in a row, apart in time)
    does not cut the quiet period short: a list may leave a secret out for longer than any
    run of answers rotator waits for. So the old secret is retired at the quiet deadline
    whatever the lists say, deleted by uuid (already gone is a 404, which counts as done);
    an absent answer at the deadline is confirmed first, since it is no fresh look.
    """
    if rotation.promoted_at is None:
        raise InvariantError("draining starts at promotion")
    deadline = drain_deadline(rotation, evidence, policy)
    if not old_present:
        if now < deadline:
            return DrainVerdict(
                retire=False,
                next_poll_at=min(now + policy.poll_interval, deadline),
                deadline=deadline,
            )
        if evidence.old_gone(now, policy.poll_interval):
            return DrainVerdict(retire=True, deadline=deadline, gone=True)
        confirm = now + proof.confirm_delay(policy.poll_interval)
        return DrainVerdict(retire=False, next_poll_at=confirm, deadline=deadline)
    if now >= deadline:
        return DrainVerdict(retire=True, deadline=deadline)
    next_poll = min(now + policy.poll_interval, deadline)
    if now - rotation.promoted_at >= policy.max_drain:
        used = evidence.old_last_used_at.isoformat() if evidence.old_last_used_at else "never"
        return DrainVerdict(
            retire=False,
            next_poll_at=next_poll,
            overdue=(
                f"old secret {rotation.old_uuid} last used at {used} by some consumer, "
                f"{_human(now - rotation.promoted_at)} after promotion (max_drain "
                f"{_human(policy.max_drain)}); update that consumer to read AWSCURRENT, "
                f"or `rotator cancel` to keep both secrets"
            ),
        )
    return DrainVerdict(retire=False, next_poll_at=next_poll, deadline=deadline)


def retires_everything_else(rotation: Rotation) -> bool:
    """An emergency, or a rotation an emergency pre-empted, deletes every other secret."""
    return rotation.emergency or bool(rotation.detail.get("preempted"))


def after_promotion(rotation: Rotation) -> State:
    """An emergency retires every other secret at once; a normal rotation drains first."""
    return State.RETIRING if retires_everything_else(rotation) else State.DRAINING


# --- pre-emption ----------------------------------------------------------------------------


def past_promotion(rotation: Rotation) -> bool:
    """AWSCURRENT has (or may have) moved to the new secret, whatever state it waits in.

    An emergency past this point cannot be cancelled: finishing it deletes the leaked secret.
    """
    resume = rotation.resume_state
    return (
        rotation.promoted_at is not None
        or rotation.state.promoted
        or (resume is not None and resume.promoted)
    )


def leftovers(rotation: Rotation) -> dict[str, str]:
    """What a rotation abandoned for an emergency leaves behind, for its audit event.

    It stops where it stands, without a rollback or a retirement that could need a person
    and so block the emergency. Before promotion it leaves its new secret at Adobe and its
    AWSPENDING version (a crash mid-`creating` may also leave a secret whose uuid was never
    saved); after promotion, the old secret it never retired. The emergency deletes every
    Adobe secret but the one it promotes, and its own staging moves AWSPENDING off the
    abandoned version, so each of these is cleaned by the emergency itself.
    """
    left: dict[str, str] = {}
    if rotation.promoted_at is not None:
        if rotation.old_uuid:
            left["old_uuid"] = rotation.old_uuid
        return left
    if rotation.new_uuid:
        left["new_uuid"] = rotation.new_uuid
    elif rotation.state is S.CREATING or rotation.resume_state is S.CREATING:
        left["new_uuid"] = "unknown (creating was interrupted: a possible orphan)"
    if rotation.request_token and rotation.new_uuid:
        left["aws_pending_version"] = rotation.request_token
    return left


def own_secrets(rotation: Rotation) -> dict[str, str]:
    """The Adobe secrets rotator created for this rotation, each with the one AWS version
    its plaintext lives in: the rotation's own new secret, and for an emergency the one the
    rotation it abandoned had staged (`inherits`). While AWSCURRENT is on another version,
    no consumer can read that secret: giving it back needs no further proof."""
    own = {}
    if rotation.new_uuid and rotation.request_token:
        own[rotation.new_uuid] = rotation.request_token
    inherited = rotation.detail.get("inherits") or {}
    if inherited.get("uuid") and inherited.get("version_id"):
        own.setdefault(str(inherited["uuid"]), str(inherited["version_id"]))
    return own


def answers_since(rotation: Rotation) -> datetime:
    """The earliest planning whose adds this rotation answers for: an emergency also answers
    for the rotation it abandoned (a crash mid-add there may have left an orphan)."""
    followed = rotation.detail.get("follows_created_at")
    if not followed:
        return rotation.created_at
    return min(rotation.created_at, datetime.fromisoformat(str(followed)))


def has_leftovers(rotation: Rotation) -> bool:
    """It follows an abandoned rotation whose leftovers only its own run would clean."""
    return bool(rotation.detail.get("inherits") or rotation.detail.get("follows_created_at"))


# --- failures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """How the engine should record a failed step."""

    state: State
    next_attempt_at: datetime | None
    resume_state: State | None
    message: str


def on_step_error(
    rotation: Rotation,
    error: StepError,
    now: datetime,
    *,
    retry_cap: timedelta = timedelta(minutes=5),
) -> Failure:
    """Transient: same state, retried later with backoff. Permanent: roll back or ask a person.

    Before promotion a permanent error rolls back, because AWSCURRENT still holds a working
    secret. Once promoted, rolling back would be wrong, so a person is asked instead.
    """
    message = str(error)
    if error.transient:
        delay = rules.backoff(rotation.attempts + 1, cap=retry_cap)
        asked = getattr(error, "retry_after", None)
        if asked:  # never come back sooner than the provider asked
            delay = max(delay, timedelta(seconds=asked))
        if (
            rotation.attempts + 1 >= TRANSIENT_ALERT_AFTER
            and rotation.state is not S.NEEDS_ATTENTION
        ):
            # Keep retrying, but a person should know: AWSPENDING and a second secret may
            # be sitting there while Adobe or AWS keeps failing.
            return Failure(
                S.NEEDS_ATTENTION,
                now + delay,
                rotation.resume_state or rotation.state,
                f"still failing after {rotation.attempts + 1} attempts: {message}",
            )
        return Failure(rotation.state, now + delay, rotation.resume_state, message)
    if rotation.state in {S.CREATING, S.STAGED, S.VERIFIED} and rotation.new_uuid:
        return Failure(S.ROLLING_BACK, now, None, message)
    retry = now + max(rules.backoff(rotation.attempts + 1, cap=retry_cap), timedelta(minutes=1))
    resume = rotation.resume_state or rotation.state
    return Failure(S.NEEDS_ATTENTION, retry, resume, message)


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds}s"
