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
    """What to do with Adobe secrets that are neither AWSCURRENT's nor this rotation's:
    delete these now, look again at `wait_until` for the rest, or ask a person."""

    delete: tuple[str, ...] = ()
    wait_until: datetime | None = None
    attention: str | None = None


def stray_deadline(
    stray: AdobeSecret, evidence: Evidence, policy: Policy, now: datetime
) -> datetime:
    """When a stray counts as unused: quiet_period + usage_lag after its last sign of life.

    Signs of life, each on the store's clock so that no skew of Adobe's clock can shorten
    the wait: when rotator first saw it listed (`now` if this is the first answer: a stray
    is never judged on one answer), when it first saw its latest use, and for a kept old
    secret the promotion away from it. Adobe's own last use only ever makes it later.
    """
    uuid = stray.uuid
    since = proof.latest(evidence.first_seen.get(uuid, now), evidence.kept.get(uuid)) or now
    used = proof.latest(stray.last_used_at, evidence.strays.get(uuid), evidence.use_seen.get(uuid))
    return proof.quiet_deadline(
        since=since, last_used_at=used, quiet_period=policy.quiet_period, usage_lag=policy.lag
    )


def judge_strays(
    strays: Sequence[AdobeSecret],
    policy: Policy,
    now: datetime,
    *,
    evidence: Evidence,
) -> StrayVerdict:
    """A stray blocks the two-secret limit. Delete it only once it has been watched unused
    for quiet_period + usage_lag (`stray_deadline`), across answers, polls and rotations.

    While it is not: an old secret an earlier rotation kept, or one nobody was seen using,
    is waited for (polling); one whose use rotator saw grow while watching it has a
    consumer, so a person is asked (and rotator keeps watching). The caller proves which
    secret AWSCURRENT holds first (I12), and re-checks on a fresh answer before a delete.
    An emergency does not ask: it deletes every stray at once.
    """
    if not strays:
        return StrayVerdict()
    deletable: list[str] = []
    waits: list[datetime] = []
    for stray in strays:
        deadline = stray_deadline(stray, evidence, policy, now)
        kept = evidence.kept.get(stray.uuid)
        if now >= deadline and policy.prune_strays:
            deletable.append(stray.uuid)
            continue
        used = proof.latest(stray.last_used_at, evidence.strays.get(stray.uuid))
        seen_use = evidence.use_seen.get(stray.uuid)
        first = evidence.first_seen.get(stray.uuid, now)
        if not policy.prune_strays:
            why = "prune_strays is false"
        elif kept is not None and now - kept < policy.max_drain:
            waits.append(deadline)  # our own old secret, kept: drained like one
            continue
        elif kept is not None:
            why = f"it is still used {human_duration(now - kept)} after the rotation that kept it"
        elif seen_use is not None and seen_use > first:
            why = "rotator saw it used while watching it"
        else:
            waits.append(deadline)  # nobody seen using it yet: watch it to its deadline
            continue
        last = used.isoformat() if used else "never"
        return StrayVerdict(
            attention=(
                f"Adobe holds a second secret {stray.uuid} (created "
                f"{stray.created_at.isoformat()}, last used {last}) that is not AWSCURRENT's, "
                f"and {why}; find its consumer, then delete it at Adobe or run `rotator cancel`"
            )
        )
    wait_until = min([now + policy.poll_interval, *waits]) if waits else None
    return StrayVerdict(delete=tuple(deletable), wait_until=wait_until)


# --- creating ------------------------------------------------------------------------------


def find_orphans(
    listed: Iterable[AdobeSecret],
    known_uuids: Iterable[str],
    *,
    intents: Sequence[Iterable[str]],
    evidence: Evidence | None = None,
) -> list[str]:
    """Secrets an add of ours may have made whose answer never came back (I7).

    Only an add whose outcome is unknown can leave one (`intents`: each recorded before
    its POST, with the uuids listed or seen before it, and cleared when Adobe answered
    that nothing was added); with none, nothing is an orphan, whatever appeared (a
    person's new secret, finding 3 of issue 26). A candidate is a secret no answer showed
    before that add, that nobody was ever seen using.
    """
    if not intents:
        return []
    known = set(known_uuids)
    for before in intents:
        known |= set(before)
    seen = evidence or proof.NO_EVIDENCE
    return [
        s.uuid
        for s in listed
        if s.uuid not in known and s.last_used_at is None and s.uuid not in seen.strays
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
    life (promotion, the latest use ever reported, or when rotator first saw that use)."""
    if rotation.promoted_at is None:
        raise InvariantError("draining starts at promotion")
    used = None
    if evidence is not None:
        seen = evidence.use_seen.get(rotation.old_uuid) if rotation.old_uuid else None
        used = proof.latest(evidence.old_last_used_at, seen)
    return proof.quiet_deadline(
        since=rotation.promoted_at,
        last_used_at=used,
        quiet_period=policy.quiet_period,
        usage_lag=policy.lag,
    )


def judge_drain(
    rotation: Rotation,
    evidence: Evidence,
    old_present: bool,
    policy: Policy,
    now: datetime,
    *,
    contradicted: bool = False,
) -> DrainVerdict:
    """Retire the old secret once quiet (I9, I10, I13); past max_drain, alert.

    `evidence` already holds this answer, folded grow-only. The old secret is retired only
    on an answer that lists it with a use at least as new as the one recorded: an answer
    that shows it with no use or an older one (`contradicted`) or leaves it out decides
    nothing, however long Adobe keeps answering so (safety rests on no timing bound).
    Answers that leave it out twice in a row, apart in time, once the deadline has passed,
    end the rotation without a delete (`gone`: there is nothing rotator may delete).
    Past max_drain a person is asked, with what Adobe keeps answering.
    """
    if rotation.promoted_at is None:
        raise InvariantError("draining starts at promotion")
    deadline = drain_deadline(rotation, evidence, policy)
    next_poll = min(now + policy.poll_interval, deadline)
    overdue = now - rotation.promoted_at >= policy.max_drain
    if not old_present:
        if now < deadline:
            return DrainVerdict(retire=False, next_poll_at=next_poll, deadline=deadline)
        if evidence.old_gone(now, policy.poll_interval):
            return DrainVerdict(retire=True, deadline=deadline, gone=True)
        confirm = now + proof.confirm_delay(policy.poll_interval)
        return DrainVerdict(retire=False, next_poll_at=confirm, deadline=deadline)
    used = evidence.old_last_used_at.isoformat() if evidence.old_last_used_at else "never"
    if contradicted:
        since = evidence.stale_since or now
        why = (
            f"Adobe keeps answering that old secret {rotation.old_uuid} has no use, or an "
            f"older one, than its use at {used} that rotator already saw (since "
            f"{since.isoformat()}); rotator deletes nothing while Adobe's answers contradict "
            f"what it saw. Check the secret at Adobe; `rotator cancel` keeps both secrets"
        )
        poll = now + policy.poll_interval
        if overdue:
            return DrainVerdict(retire=False, next_poll_at=poll, overdue=why, deadline=deadline)
        return DrainVerdict(retire=False, next_poll_at=poll, deadline=deadline)
    if now >= deadline:
        return DrainVerdict(retire=True, deadline=deadline)
    if overdue:
        return DrainVerdict(
            retire=False,
            next_poll_at=next_poll,
            overdue=(
                f"old secret {rotation.old_uuid} last used at {used} by some consumer, "
                f"{human_duration(now - rotation.promoted_at)} after promotion (max_drain "
                f"{human_duration(policy.max_drain)}); update that consumer to read AWSCURRENT, "
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


def human_duration(delta: timedelta) -> str:
    """A duration as config spells it (25h, 14d), for the sentences a person reads."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds}s"
