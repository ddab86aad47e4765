"""What the daemon's next tick does with a credential, and why: a pure judgment.

The daemon's tick (`rotator.daemon.service.Daemon._start_due`) and `rotator plan` both call
`judge`, so what `plan` says is what the tick does: survey first, start a scheduled
rotation, step an unfinished one, or wait (and for what). Everything here is a function of
the state database's rows, the credential's merged policy, its window and cron schedule,
and the one clock (the store's, I10); nothing is read or written.

A cron schedule enters as a function (`NextFire`: the first fire time after a moment), so
the domain needs no scheduler library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from rotator.domain import machine
from rotator.domain import policy as rules
from rotator.domain.machine import human_duration as _human
from rotator.domain.model import Policy, Rotation, State

NextFire = Callable[[datetime], datetime | None]
Tick = Literal["survey", "start", "step", "wait"]

# A credential whose age is known is surveyed again daily (its secret may be replaced
# outside rotator); one whose age is still unknown every poll_interval.
SURVEY_EVERY = timedelta(hours=24)


@dataclass(frozen=True)
class Facts:
    """What the state database records of a credential (its `credentials` row)."""

    current_uuid: str | None = None
    secret_created_at: datetime | None = None
    last_rotated_at: datetime | None = None
    last_failed_at: datetime | None = None
    surveyed_at: datetime | None = None
    last_error: str | None = None
    held_at: datetime | None = None
    held_by: str | None = None
    hold_reason: str | None = None


@dataclass(frozen=True)
class Rules:
    """A credential's timing rules: the merged policy, its window, its cron schedule."""

    policy: Policy
    window: rules.Window | None = None
    schedule: str | None = None  # the crontab text, for people
    next_fire: NextFire | None = None  # the first cron time after a moment


@dataclass(frozen=True)
class Hold:
    """Something that keeps a credential from rotating now."""

    kind: Literal["not_surveyed", "hold", "cooldown", "window", "needs_attention", "lease"]
    text: str
    until: datetime | None = None  # None: until a person acts, or unknown


@dataclass(frozen=True)
class Step:
    """The next step of an unfinished rotation: when, what it calls, what it waits for."""

    state: State  # the step that runs (a needs_attention rotation retries its resume state)
    at: datetime | None  # when it is due; None: at once
    does: str
    adobe: tuple[str, ...]  # calls at Adobe, in order (writes only where the text says)
    aws: tuple[str, ...]  # calls at AWS Secrets Manager
    waits_for: str | None = None
    deadline: datetime | None = None  # draining: when the old secret counts as quiet
    alert_at: datetime | None = None  # draining: when a person is asked (max_drain)
    old_last_used_at: datetime | None = None  # the evidence behind the deadline
    new_last_used_at: datetime | None = None


@dataclass(frozen=True)
class Outlook:
    """One credential, judged now."""

    name: str
    now: datetime
    tick: Tick  # what the next tick does with it
    due: bool  # a scheduled rotation starts on the next tick
    due_at: datetime | None  # when it is (or was) due by age or cron; None: unknown or never
    starts_at: datetime | None  # the earliest a scheduled rotation may start, holds included
    why: tuple[str, ...]  # why it is (or becomes) due
    holds: tuple[Hold, ...]
    survey: bool  # the next tick surveys it (AWSCURRENT's uuid, its age at Adobe) first
    rotation: Rotation | None = None
    step: Step | None = None

    @property
    def surveyed(self) -> bool:
        """The current secret's age is known (a survey, or the promotion that made it)."""
        return not any(h.kind == "not_surveyed" for h in self.holds)


def judge(
    name: str,
    facts: Facts | None,
    active: Rotation | None,
    rules_: Rules,
    now: datetime,
    *,
    lease_owner: str | None = None,
) -> Outlook:
    """What the next tick does with this credential, with its reasons (see the module)."""
    policy = rules_.policy
    due_at, why = due_time(facts, rules_)
    holds = list(_holds(facts, rules_, now, due_at))
    if active is not None:
        step = next_step(active, policy, now)
        if active.state is State.NEEDS_ATTENTION:
            holds.append(
                Hold(
                    "needs_attention",
                    f"rotation {active.id} needs attention: {active.last_error or 'see history'}",
                )
            )
        if lease_owner and step.at is None:
            holds.append(Hold("lease", f"being worked on by {lease_owner}"))
        tick: Tick = "step" if has_work(active, now) else "wait"
        return Outlook(name, now, tick, False, due_at, None, why, tuple(holds), False, active, step)
    survey = needs_survey(facts, policy, now)
    due = facts is not None and facts.secret_created_at is not None and facts.held_at is None
    due = due and rules.is_due(
        secret_created_at=facts.secret_created_at if facts else None,
        last_rotated_at=facts.last_rotated_at if facts else None,
        last_scheduled_at=last_scheduled(facts, rules_, now),
        last_failed_at=facts.last_failed_at if facts else None,
        policy=policy,
        window=rules_.window,
        now=now,
    )
    starts_at = _starts_at(facts, rules_, now, due_at, holds)
    tick = "start" if due else ("survey" if survey else "wait")
    return Outlook(name, now, tick, due, due_at, starts_at, why, tuple(holds), survey)


def needs_survey(facts: Facts | None, policy: Policy, now: datetime) -> bool:
    """The tick surveys a credential never surveyed, or not for a while."""
    if facts is None or facts.surveyed_at is None:
        return True
    return now - facts.surveyed_at >= survey_period(facts, policy)


def survey_period(facts: Facts | None, policy: Policy) -> timedelta:
    """How often a credential is surveyed: daily once its age is known, else every poll."""
    return SURVEY_EVERY if facts is not None and facts.secret_created_at else policy.poll_interval


def has_work(rotation: Rotation, now: datetime) -> bool:
    """An unfinished rotation a worker would take now (its next attempt came, or a request)."""
    return (
        rotation.next_attempt_at is None
        or rotation.next_attempt_at <= now
        or rotation.emergency_requested
        or rotation.cancel_requested
    )


def last_scheduled(facts: Facts | None, rules_: Rules, now: datetime) -> datetime | None:
    """The first cron time after the last rotation (or the secret's birth), if it has passed."""
    fire = _first_fire(facts, rules_)
    return fire if fire is not None and fire <= now else None


def due_time(facts: Facts | None, rules_: Rules) -> tuple[datetime | None, tuple[str, ...]]:
    """When the credential is due by age (created_at + max_age) or by cron, and why."""
    if facts is None or facts.secret_created_at is None:
        return None, ()
    policy = rules_.policy
    candidates: list[tuple[datetime, str]] = []
    by_age = facts.secret_created_at + policy.max_age
    candidates.append(
        (
            by_age,
            f"age: secret created {_iso(facts.secret_created_at)} reaches max_age "
            f"{_human(policy.max_age)} at {_iso(by_age)}",
        )
    )
    fire = _first_fire(facts, rules_)
    if fire is not None:
        since = "last rotation" if facts.last_rotated_at else "secret's creation"
        candidates.append(
            (fire, f"cron {rules_.schedule!r}: fires {_iso(fire)}, after the {since}")
        )
    at = min(moment for moment, _ in candidates)
    return at, tuple(text for moment, text in sorted(candidates, key=lambda c: c[0]))


def next_step(rotation: Rotation, policy: Policy, now: datetime) -> Step:
    """What the engine does next with an unfinished rotation (see `engine/driver._decide`)."""
    at = None if has_work(rotation, now) else rotation.next_attempt_at
    request = operator_request(rotation)
    if request == "abandon":
        return Step(
            rotation.state,
            None,
            "abandon this rotation where it stands; the emergency rotation starts",
            (),
            (),
        )
    if request == "cancel":
        effective = _effective(rotation)
        if effective.promoted:
            return Step(
                rotation.state,
                None,
                "cancel: stop draining, keep both secrets valid",
                (),
                (),
            )
        if effective is State.PLANNED and not machine.has_leftovers(rotation):
            return Step(rotation.state, None, "cancel: nothing was written yet", (), ())
        return Step(State.ROLLING_BACK, None, *_CALLS[State.ROLLING_BACK])
    state = _effective(rotation)
    does, adobe, aws = _CALLS[state]
    if state is State.RETIRING and machine.retires_everything_else(rotation):
        does, adobe, aws = _EMERGENCY_RETIRE
    if state is State.PROMOTED and machine.retires_everything_else(rotation):
        does = "go on to retiring: every other secret is deleted at once (emergency)"
    if rotation.state is State.NEEDS_ATTENTION:
        does = f"retry the {state.value} step that needed a person: {does}"
    waits = None
    deadline = alert = old = new = None
    if state in {State.DRAINING, State.RETIRING} and rotation.promoted_at is not None:
        deadline = machine.drain_deadline(rotation, rotation.evidence, policy)
        alert = rotation.promoted_at + policy.max_drain
        evidence = rotation.evidence
        old = evidence.old_last_used_at if evidence else None
        new = evidence.new_last_used_at if evidence else None
        if state is State.DRAINING:
            used = f"last used {_iso(old)}" if old else "no use seen since promotion"
            waits = (
                f"the old secret {rotation.old_uuid} to stay unused until {_iso(deadline)} "
                f"({used}; quiet_period {_human(policy.quiet_period)} + usage_lag "
                f"{_human(policy.lag)} after the later of promotion and its last use); "
                f"a person is asked at {_iso(alert)} (max_drain {_human(policy.max_drain)})"
            )
    elif at is not None and rotation.last_error:
        waits = f"a retry of a failed step: {rotation.last_error}"
    return Step(state, at, does, adobe, aws, waits, deadline, alert, old, new)


def operator_request(rotation: Rotation) -> Literal["abandon", "cancel"] | None:
    """Which operator request the driver acts on now, if any: an emergency outranks
    everything; a cancel outranks the step due next, except where stopping would break a
    promise (a normal rotation already retiring, or an emergency past its promotion)."""
    if rotation.emergency_requested and not rotation.emergency:
        return "abandon"
    if not rotation.cancel_requested:
        return None
    if State.ROLLING_BACK in {rotation.state, rotation.resume_state} or (
        rotation.state is State.RETIRING
    ):
        # Retiring finishes; a rollback (the cancel, acted on) runs its course, also while
        # it asks a person (re-entering it would only flap and hide the question).
        return None
    if rotation.emergency and machine.past_promotion(rotation):
        return None  # the store refuses such a cancel; one that raced the promotion is moot
    return "cancel"


# --- what each step calls (read from engine/steps.py; keep them in step) -----------------

_MINT = "POST /ims/token/v3 (a management token from AWSCURRENT's secret, reused while valid)"
_LIST = "GET .../credentials/{id}/secrets (the list, with last_used_at)"
_READ_CURRENT = "GetSecretValue AWSCURRENT"
_CALLS: dict[State, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    State.PLANNED: (
        "learn which secret AWSCURRENT holds, delete a stray only if provably unused, "
        "persist a request token; then creating",
        (_MINT, _LIST, "DELETE a stray secret, only if unused for quiet_period"),
        (_READ_CURRENT,),
    ),
    State.CREATING: (
        "add a secret at Adobe and stage it in AWS as AWSPENDING",
        (_LIST, "POST .../credentials/{id}/secrets (writes: the new secret)"),
        (
            "GetSecretValue (the rotation's request token)",
            "PutSecretValue AWSPENDING (writes: the new secret)",
        ),
    ),
    State.STAGED: (
        "verify the new secret: mint a token with it (retried up to verify_timeout)",
        ("POST /ims/token/v3 with the new secret",),
        ("GetSecretValue AWSPENDING, if the value is not in memory",),
    ),
    State.VERIFIED: (
        "promote: move AWSCURRENT to the new version, then remove AWSPENDING",
        (),
        (
            "DescribeSecret (labels)",
            "UpdateSecretVersionStage AWSCURRENT (writes)",
            "UpdateSecretVersionStage AWSPENDING removed (writes)",
        ),
    ),
    State.PROMOTED: ("go on to draining", (), ()),
    State.DRAINING: (
        "poll the old secret's use; retire it once quiet",
        (_MINT, _LIST),
        (_READ_CURRENT,),
    ),
    State.RETIRING: (
        "re-check the old secret is still quiet, then delete it",
        (_LIST, "DELETE .../credentials/{id}/secrets/{old uuid} (writes)"),
        (_READ_CURRENT,),
    ),
    State.ROLLING_BACK: (
        "roll back: delete the new secret at Adobe, drop AWSPENDING; AWSCURRENT untouched",
        (_LIST, "DELETE .../credentials/{id}/secrets/{new uuid} (writes)"),
        ("DescribeSecret (labels)", "UpdateSecretVersionStage AWSPENDING removed (writes)"),
    ),
}
_EMERGENCY_RETIRE = (
    "delete every secret but the new one at once, and invalidate tokens minted with them",
    (
        _LIST,
        "DELETE .../credentials/{id}/secrets/{uuid} for every other secret (writes)",
        "POST /ims/invalidate_token/v2 (writes)",
    ),
    (
        _READ_CURRENT,
        "GetSecretValue (the previous version: the leaked value, to invalidate its tokens)",
    ),
)


# --- helpers -------------------------------------------------------------------------------


def _effective(rotation: Rotation) -> State:
    if rotation.state is State.NEEDS_ATTENTION:
        return rotation.resume_state or State.PLANNED
    return rotation.state


def _first_fire(facts: Facts | None, rules_: Rules) -> datetime | None:
    if rules_.next_fire is None or facts is None or facts.secret_created_at is None:
        return None
    return rules_.next_fire(facts.last_rotated_at or facts.secret_created_at)


def _holds(
    facts: Facts | None, rules_: Rules, now: datetime, due_at: datetime | None
) -> list[Hold]:
    policy, window = rules_.policy, rules_.window
    holds: list[Hold] = []
    # The age decides: a secret whose age a promotion recorded needs no survey first.
    if facts is None or (facts.surveyed_at is None and facts.secret_created_at is None):
        holds.append(
            Hold("not_surveyed", "not surveyed yet: the next tick (or `rotator run`) surveys it")
        )
    elif facts.secret_created_at is None:
        why = facts.last_error or "the survey could not tell the current secret's age"
        holds.append(Hold("not_surveyed", f"age unknown: {why}"))
    if facts is not None and facts.held_at is not None:
        by = f" by {facts.held_by}" if facts.held_by else ""
        reason = f" ({facts.hold_reason})" if facts.hold_reason else ""
        holds.append(
            Hold(
                "hold",
                f"on hold since {_iso(facts.held_at)}{by}{reason}: `rotator resume` lifts it",
            )
        )
    if facts is not None and facts.last_failed_at is not None:
        until = facts.last_failed_at + policy.failure_cooldown
        if now < until:
            holds.append(
                Hold(
                    "cooldown",
                    f"a rotation failed at {_iso(facts.last_failed_at)}: no scheduled retry "
                    f"before {_iso(until)} (failure_cooldown {_human(policy.failure_cooldown)})",
                    until,
                )
            )
    if window is not None:
        moment = max(now, due_at) if due_at else now
        if not window.contains(moment):
            opens = next_open(window, moment)
            holds.append(
                Hold("window", f"outside the rotation window; it opens {_iso(opens)}", opens)
            )
    return holds


def _starts_at(
    facts: Facts | None,
    rules_: Rules,
    now: datetime,
    due_at: datetime | None,
    holds: list[Hold],
) -> datetime | None:
    """The earliest moment a scheduled rotation may start; None while a person must act or
    the age is unknown."""
    if due_at is None or any(h.kind in {"hold", "not_surveyed"} for h in holds):
        return None
    moment = max(now, due_at)
    if facts is not None and facts.last_failed_at is not None:
        moment = max(moment, facts.last_failed_at + rules_.policy.failure_cooldown)
    if rules_.window is not None and not rules_.window.contains(moment):
        moment = next_open(rules_.window, moment)
    return moment


def next_open(window: rules.Window, after: datetime) -> datetime:
    """The first moment at or after `after` inside the window (UTC)."""
    after = after.astimezone(UTC) if after.tzinfo else after.replace(tzinfo=UTC)
    if window.contains(after):
        return after
    for days in range(8):
        day = (after + timedelta(days=days)).date()
        opening = datetime.combine(day, window.start, tzinfo=UTC)
        if opening >= after and window.contains(opening):
            return opening
    return after  # a window with no day in it: never opens (config validation refuses it)


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "never"
