"""The rotation state machine and its decisions, as pure functions of values.

Nothing here touches Adobe, AWS or a database: every decision the engine acts on is checked
against the design (docs: /work/shared/design/rotation.md) with plain values and fixed clocks.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.domain import machine
from rotator.domain import policy as rules
from rotator.domain.errors import (
    AccessDenied,
    ConfigError,
    InvalidClient,
    LeaseLost,
    NeedsAttention,
    NotFound,
    PermanentError,
    RotatorError,
    SecretLimit,
    StepError,
    TransientError,
)
from rotator.domain.evidence import NO_EVIDENCE, carried
from rotator.domain.machine import (
    TRANSITIONS,
    IllegalTransition,
    after_promotion,
    check_transition,
    find_orphans,
    judge_drain,
    judge_strays,
    on_step_error,
    verify_gives_up,
)
from rotator.domain.model import TERMINAL, AdobeSecret, Evidence, Policy, Rotation, State, Trigger

S = State
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)
# quiet 25h, max_drain 14d, poll 15m, verify 5m, prune_strays on; no usage lag, so these
# tests see the quiet period alone (tests/unit/test_evidence.py covers the lag).
POLICY = Policy(usage_lag=timedelta(0))

# The design's machine, written out independently of the implementation: the happy path,
# rolling back before promotion, cancellation, the emergency shortcut past draining, crash
# recovery into promoted, and needs_attention returning to any step or ending.
EXPECTED: dict[State, set[State]] = {
    S.PLANNED: {S.CREATING, S.NEEDS_ATTENTION, S.FAILED, S.CANCELLED, S.ROLLING_BACK},
    S.CREATING: {S.STAGED, S.ROLLING_BACK, S.NEEDS_ATTENTION, S.CANCELLED},
    S.STAGED: {S.VERIFIED, S.ROLLING_BACK, S.NEEDS_ATTENTION},
    S.VERIFIED: {S.PROMOTED, S.ROLLING_BACK, S.NEEDS_ATTENTION},
    S.PROMOTED: {S.DRAINING, S.RETIRING, S.NEEDS_ATTENTION, S.CANCELLED},
    S.DRAINING: {S.RETIRING, S.COMPLETED, S.NEEDS_ATTENTION, S.CANCELLED},
    S.RETIRING: {S.COMPLETED, S.NEEDS_ATTENTION, S.DRAINING},  # a use seen at the re-check
    S.ROLLING_BACK: {S.FAILED, S.CANCELLED, S.NEEDS_ATTENTION, S.PROMOTED},
    S.NEEDS_ATTENTION: set(State) - {S.NEEDS_ATTENTION},
    S.COMPLETED: set(),
    S.FAILED: set(),
    S.CANCELLED: set(),
    S.ABANDONED: set(),
}
for _unfinished in [s for s in EXPECTED if s not in TERMINAL]:  # an emergency abandons any
    EXPECTED[_unfinished] |= {S.ABANDONED}


def rotation(state: State = S.PLANNED, **changes: object) -> Rotation:
    base = Rotation(
        id=7,
        credential="analytics",
        trigger=Trigger.SCHEDULED,
        state=state,
        created_at=T0,
        state_since=T0,
        old_uuid="old-uuid",
    )
    return base.evolve(**changes)


def secret(uuid: str, created: datetime, used: datetime | None = None) -> AdobeSecret:
    return AdobeSecret(uuid=uuid, created_at=created, last_used_at=used)


# --- transitions -----------------------------------------------------------------------------


def test_every_state_has_a_transition_entry() -> None:
    assert set(TRANSITIONS) == set(State)


def test_transition_table_matches_the_design() -> None:
    assert {k: set(v) for k, v in TRANSITIONS.items()} == EXPECTED


@pytest.mark.parametrize(
    ("current", "target"), list(itertools.product(State, State)), ids=lambda s: s.value
)
def test_check_transition_allows_exactly_the_designed_moves(current: State, target: State) -> None:
    if target is current or target in EXPECTED[current]:
        check_transition(current, target)
    else:
        with pytest.raises(IllegalTransition, match=f"{current} -> {target}"):
            check_transition(current, target)


def test_illegal_transition_is_a_value_error() -> None:
    assert issubclass(IllegalTransition, ValueError)


def test_the_happy_path_is_a_chain_of_allowed_moves() -> None:
    path = [
        S.PLANNED,
        S.CREATING,
        S.STAGED,
        S.VERIFIED,
        S.PROMOTED,
        S.DRAINING,
        S.RETIRING,
        S.COMPLETED,
    ]
    for current, target in itertools.pairwise(path):
        check_transition(current, target)
    assert path[-1].terminal


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_have_no_way_out(state: State) -> None:
    assert state.terminal
    for target in set(State) - {state}:
        with pytest.raises(IllegalTransition):
            check_transition(state, target)


@pytest.mark.parametrize("state", [S.PROMOTED, S.DRAINING, S.RETIRING])
def test_nothing_rolls_back_or_fails_after_promotion(state: State) -> None:
    # AWSCURRENT already holds the new secret: deleting it (rolling back) would break I1.
    assert state.promoted
    for target in (S.ROLLING_BACK, S.FAILED):
        with pytest.raises(IllegalTransition):
            check_transition(state, target)


@pytest.mark.parametrize("state", [S.PLANNED, S.CREATING, S.STAGED])
def test_only_a_verified_secret_can_be_promoted(state: State) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(state, S.PROMOTED)


@pytest.mark.parametrize("state", [S.STAGED, S.VERIFIED])
def test_a_staged_secret_is_rolled_back_not_cancelled(state: State) -> None:
    # A new secret exists at Adobe: cancelling here would leave it behind.
    with pytest.raises(IllegalTransition):
        check_transition(state, S.CANCELLED)
    check_transition(state, S.ROLLING_BACK)


def test_staying_put_is_always_allowed() -> None:
    for state in State:
        check_transition(state, state)


def test_promoted_property_marks_states_after_awscurrent_moved() -> None:
    assert {s for s in State if s.promoted} == {S.PROMOTED, S.DRAINING, S.RETIRING, S.COMPLETED}
    assert {S.COMPLETED, S.FAILED, S.CANCELLED, S.ABANDONED} == TERMINAL


def test_leftovers_before_promotion_are_the_new_secret_and_its_pending_version() -> None:
    staged = rotation(S.NEEDS_ATTENTION, resume_state=S.STAGED, new_uuid="n", request_token="t")
    assert machine.leftovers(staged) == {"new_uuid": "n", "aws_pending_version": "t"}
    assert "possible orphan" in machine.leftovers(rotation(S.CREATING))["new_uuid"]
    assert machine.leftovers(rotation(S.PLANNED)) == {}


def test_leftovers_after_promotion_are_the_unretired_old_secret() -> None:
    draining = rotation(S.DRAINING, new_uuid="n", request_token="t", promoted_at=T0)
    assert machine.leftovers(draining) == {"old_uuid": "old-uuid"}


# --- planned: strays -------------------------------------------------------------------------


def _watched(first: datetime, **uses: datetime) -> Evidence:
    """Evidence of strays first listed at `first`, with these uses seen then."""
    listed: dict[str, datetime | None] = {"cur": None, **uses}
    return NO_EVIDENCE.fold(first, listed, old_uuid="cur", new_uuid=None)


def test_judge_strays_with_no_stray_does_nothing() -> None:
    assert judge_strays([], POLICY, T0, evidence=NO_EVIDENCE) == machine.StrayVerdict()


def test_a_stray_is_never_judged_unused_on_its_first_answer() -> None:
    # Adobe says it was last used 90 h ago and created 100 h ago: on Adobe's clock, which
    # may be skewed by any amount against ours, and on one answer. Rotator watches it.
    listed = [secret("stray", T0 - 100 * H, T0 - 90 * H)]
    verdict = judge_strays(listed, POLICY, T0, evidence=_watched(T0, stray=T0 - 90 * H))
    assert verdict.delete == () and verdict.attention is None
    assert verdict.wait_until == T0 + POLICY.poll_interval


def test_a_stray_watched_unused_for_the_quiet_period_is_deleted() -> None:
    listed = [secret("stray", T0 - 100 * H, T0 - 90 * H)]
    watched = _watched(T0 - 25 * H, stray=T0 - 90 * H)
    verdict = judge_strays(listed, POLICY, T0, evidence=watched)
    assert verdict.delete == ("stray",)
    just_before = T0 - timedelta(microseconds=1)
    assert judge_strays(listed, POLICY, just_before, evidence=watched).delete == ()


def test_a_stray_seen_used_while_watched_asks_a_person() -> None:
    watched = _watched(T0 - 30 * H, **{"busy-stray": T0 - 40 * H})
    last_use = T0 - 3 * H
    watched = watched.fold(T0 - 3 * H, {"busy-stray": last_use}, old_uuid="cur", new_uuid=None)
    listed = [secret("busy-stray", T0 - 90 * H, last_use)]
    verdict = judge_strays(listed, POLICY, T0, evidence=watched)
    assert verdict.delete == ()
    assert verdict.attention is not None
    assert "busy-stray" in verdict.attention and last_use.isoformat() in verdict.attention
    assert "saw it used while watching it" in verdict.attention
    assert "\n" not in verdict.attention


def test_two_null_answers_do_not_make_a_stray_seen_used_unused() -> None:
    watched = _watched(T0 - 30 * H, stray=T0 - 40 * H)
    watched = watched.fold(T0 - 3 * H, {"stray": T0 - 3 * H}, old_uuid="cur", new_uuid=None)
    for _ in range(2):  # answers that hide the use: the evidence does not go back
        watched = watched.fold(T0, {"stray": None}, old_uuid="cur", new_uuid=None)
    verdict = judge_strays([secret("stray", T0 - 90 * H)], POLICY, T0, evidence=watched)
    assert verdict.delete == () and verdict.attention is not None


def test_a_kept_old_secret_is_drained_not_asked_about() -> None:
    kept = carried(
        replace(NO_EVIDENCE, old_last_used_at=T0 - 2 * H),
        old_uuid="kept",
        new_uuid="cur",
        kept_since=T0 - 5 * H,
    ).fold(T0 - H, {"cur": None, "kept": T0 - H}, old_uuid="cur", new_uuid=None)
    listed = [secret("kept", T0 - 100 * H, T0 - H)]
    verdict = judge_strays(listed, POLICY, T0, evidence=kept)
    assert verdict.delete == () and verdict.attention is None
    assert verdict.wait_until is not None
    later = T0 + 27 * H
    assert judge_strays(listed, POLICY, later, evidence=kept).delete == ("kept",)


def test_judge_strays_keeps_even_a_quiet_stray_when_pruning_is_off() -> None:
    listed = [secret("stray", T0 - 90 * H, T0 - 80 * H)]
    verdict = judge_strays(
        listed, Policy(prune_strays=False), T0, evidence=_watched(T0 - 80 * H, stray=T0 - 80 * H)
    )
    assert verdict.delete == ()
    assert verdict.attention is not None
    assert "prune_strays is false" in verdict.attention


# --- creating: orphans -----------------------------------------------------------------------


def test_find_orphans_reports_a_new_unused_secret_after_an_add_of_unknown_outcome() -> None:
    listed = [secret("cur", T0), secret("lost", T0 + H)]
    assert find_orphans(listed, ["cur"], intents=[["cur"]]) == ["lost"]


def test_with_no_add_of_unknown_outcome_nothing_is_an_orphan() -> None:
    # A person's new secret after a throttled add (Adobe answered: nothing added).
    listed = [secret("cur", T0), secret("persons", T0 + H)]
    assert find_orphans(listed, ["cur"], intents=[]) == []


def test_find_orphans_spares_known_used_and_earlier_seen_secrets() -> None:
    listed = [secret("cur", T0), secret("used", T0 + H, T0 + H), secret("seen", T0 + H)]
    assert find_orphans(listed, ["cur"], intents=[["seen"]]) == []  # listed before the add
    used = NO_EVIDENCE.fold(T0, {"late": T0}, old_uuid="cur", new_uuid=None)
    late = [secret("late", T0)]  # a use seen once, shown null now: not an orphan
    assert find_orphans(late, ["cur"], intents=[[]], evidence=used) == []
    assert find_orphans([], ["cur"], intents=[["cur"]]) == []


# --- staged: verification --------------------------------------------------------------------


def test_verify_gives_up_only_after_verify_timeout_in_the_state() -> None:
    staged = rotation(S.STAGED, state_since=T0)
    timeout = timedelta(minutes=5)
    assert not verify_gives_up(staged, T0 + timeout - timedelta(seconds=1), timeout)
    assert verify_gives_up(staged, T0 + timeout, timeout)
    assert verify_gives_up(staged, T0 + 2 * timeout, timeout)


def test_verify_gives_up_counts_from_creation_when_state_since_is_unknown() -> None:
    staged = rotation(S.STAGED, state_since=None, created_at=T0 - H)
    assert verify_gives_up(staged, T0, timedelta(minutes=5))


# --- draining --------------------------------------------------------------------------------


def draining(promoted_at: datetime = T0) -> Rotation:
    return rotation(S.DRAINING, promoted_at=promoted_at, new_uuid="new-uuid")


def evidence(now: datetime, old_used: datetime | None) -> Evidence:
    return Evidence(polled_at=now, old_last_used_at=old_used, new_last_used_at=None)


def test_an_absent_old_secret_does_not_cut_the_quiet_period_short() -> None:
    # Changed in 0.2 (issue 11, finding 1, and the long run's find): an answer without the
    # old uuid proves nothing, and even a run of them does not end draining early: a list may
    # leave a secret out for longer than rotator waits, while a consumer still uses it.
    quiet_end = T0 + 25 * H
    evidence_ = Evidence(None, None)
    for minutes in range(0, 25 * 60, 60):
        now = T0 + timedelta(minutes=minutes)
        evidence_ = evidence_.fold(now, {}, old_uuid="old-uuid", new_uuid="new-uuid")
        verdict = judge_drain(draining(), evidence_, False, POLICY, now)
        assert not verdict.retire, now
        assert verdict.next_poll_at is not None and verdict.next_poll_at <= quiet_end


def test_judge_drain_retires_at_the_deadline_once_absence_is_confirmed() -> None:
    at_deadline = T0 + 25 * H
    first = Evidence(None, None).fold(at_deadline, {}, old_uuid="old-uuid", new_uuid="new")
    verdict = judge_drain(draining(), first, False, POLICY, at_deadline)
    assert not verdict.retire  # one answer without it is no fresh look: confirm first
    assert verdict.next_poll_at is not None and verdict.next_poll_at > at_deadline
    later = verdict.next_poll_at
    second = first.fold(later, {}, old_uuid="old-uuid", new_uuid="new")
    verdict = judge_drain(draining(), second, False, POLICY, later)
    assert verdict.retire and verdict.gone


def test_a_contradicting_answer_never_retires_the_old_secret_however_long_it_lasts() -> None:
    seen = evidence(T0 + H, T0 + H)
    for hours in (26, 48, 24 * 13, 24 * 30):  # past the deadline, usage_lag and max_drain
        now = T0 + hours * H
        stale = replace(seen, stale_since=T0 + 2 * H)
        verdict = judge_drain(draining(), stale, True, POLICY, now, contradicted=True)
        assert not verdict.retire, hours
    assert verdict.overdue is not None and "keeps answering" in verdict.overdue
    assert (T0 + 2 * H).isoformat() in verdict.overdue  # since when Adobe answers so


def test_the_drain_deadline_counts_from_when_rotator_first_saw_the_use() -> None:
    # Adobe's clock 3 h behind ours: it reports a use at T0 + 1h that rotator first saw at
    # T0 + 4h. The quiet period counts from the later of the two (no skew shortens it).
    seen = Evidence(None, None).fold(
        T0 + 4 * H, {"old-uuid": T0 + H}, old_uuid="old-uuid", new_uuid="new-uuid"
    )
    assert machine.drain_deadline(draining(), seen, POLICY) == T0 + 4 * H + 25 * H


def test_judge_drain_waits_for_the_quiet_period_after_promotion() -> None:
    now = T0 + 24 * H
    verdict = judge_drain(draining(), evidence(now, None), True, POLICY, now)
    assert not verdict.retire
    assert verdict.overdue is None
    assert verdict.next_poll_at == now + POLICY.poll_interval


def test_judge_drain_retires_once_quiet_since_promotion() -> None:
    now = T0 + 25 * H
    assert judge_drain(draining(), evidence(now, None), True, POLICY, now).retire


def test_judge_drain_ignores_old_uses_from_before_promotion() -> None:
    # A use before promotion is older than promotion itself, which counts as a sign of life.
    now = T0 + 25 * H
    verdict = judge_drain(draining(), evidence(now, T0 - 10 * H), True, POLICY, now)
    assert verdict.retire


def test_judge_drain_restarts_the_quiet_period_at_the_old_secrets_last_use() -> None:
    last_use = T0 + 10 * H
    now = T0 + 30 * H  # 30h after promotion, but only 20h after the last use
    verdict = judge_drain(draining(), evidence(now, last_use), True, POLICY, now)
    assert not verdict.retire
    assert judge_drain(draining(), evidence(now, last_use), True, POLICY, last_use + 25 * H).retire


def test_judge_drain_polls_no_later_than_the_quiet_deadline() -> None:
    now = T0 + 25 * H - timedelta(minutes=2)
    verdict = judge_drain(draining(), evidence(now, None), True, POLICY, now)
    assert not verdict.retire
    assert verdict.next_poll_at == T0 + 25 * H


def test_judge_drain_past_max_drain_raises_an_overdue_alert_and_keeps_watching() -> None:
    last_use = T0 + 14 * 24 * H
    now = last_use + H
    verdict = judge_drain(draining(), evidence(now, last_use), True, POLICY, now)
    assert not verdict.retire
    assert verdict.overdue is not None
    assert "old secret old-uuid last used at" in verdict.overdue
    assert last_use.isoformat() in verdict.overdue
    assert "max_drain 14d" in verdict.overdue
    assert "\n" not in verdict.overdue
    assert verdict.next_poll_at is not None
    assert now < verdict.next_poll_at <= last_use + POLICY.quiet_period


def test_judge_drain_is_not_overdue_before_max_drain() -> None:
    now = T0 + 14 * 24 * H - timedelta(seconds=1)
    verdict = judge_drain(draining(), evidence(now, now - H), True, POLICY, now)
    assert verdict.overdue is None
    assert not verdict.retire


def test_judge_drain_retires_rather_than_alerts_when_both_apply() -> None:
    now = T0 + 20 * 24 * H
    verdict = judge_drain(draining(), evidence(now, T0 + 2 * 24 * H), True, POLICY, now)
    assert verdict.retire
    assert verdict.overdue is None


@settings(max_examples=300, deadline=None)
@given(
    since_promotion=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
    last_use=st.one_of(
        st.none(), st.timedeltas(min_value=timedelta(days=-5), max_value=timedelta(days=30))
    ),
    quiet=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3)),
    poll=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(hours=6)),
)
def test_judge_drain_never_retires_before_the_quiet_deadline(
    since_promotion: timedelta,
    last_use: timedelta | None,
    quiet: timedelta,
    poll: timedelta,
) -> None:
    now = T0 + since_promotion
    old_used = T0 + last_use if last_use is not None else None
    if old_used is not None and old_used > now:
        old_used = now  # Adobe cannot report a use from the future
    pol = Policy(quiet_period=quiet, poll_interval=poll, usage_lag=timedelta(0))
    verdict = judge_drain(draining(), evidence(now, old_used), True, pol, now)
    deadline = max(T0, old_used or T0) + quiet
    assert verdict.retire == (now >= deadline)
    if not verdict.retire:
        assert verdict.next_poll_at is not None
        assert now < verdict.next_poll_at <= deadline
        assert verdict.next_poll_at <= now + poll


def test_after_promotion_drains_normal_rotations_and_retires_emergencies_at_once() -> None:
    assert after_promotion(rotation(S.PROMOTED)) is S.DRAINING
    assert after_promotion(rotation(S.PROMOTED, trigger=Trigger.EMERGENCY)) is S.RETIRING


# --- failures --------------------------------------------------------------------------------


def test_transient_error_keeps_the_state_and_backs_off() -> None:
    rot = rotation(S.STAGED, attempts=3, new_uuid="n", resume_state=None)
    failure = on_step_error(rot, TransientError("Adobe answered 503"), T0)
    assert failure.state is S.STAGED
    assert failure.next_attempt_at == T0 + rules.backoff(4)
    assert failure.resume_state is None
    assert failure.message == "Adobe answered 503"


def test_transient_error_backoff_respects_the_retry_cap() -> None:
    rot = rotation(S.CREATING, attempts=30)
    failure = on_step_error(rot, TransientError("throttled"), T0, retry_cap=timedelta(seconds=7))
    assert failure.next_attempt_at == T0 + timedelta(seconds=7)


def test_transient_error_in_needs_attention_keeps_the_resume_state() -> None:
    rot = rotation(S.NEEDS_ATTENTION, resume_state=S.DRAINING)
    failure = on_step_error(rot, TransientError("timeout"), T0)
    assert failure.state is S.NEEDS_ATTENTION
    assert failure.resume_state is S.DRAINING


@pytest.mark.parametrize("state", [S.CREATING, S.STAGED, S.VERIFIED])
def test_permanent_error_before_promotion_with_a_new_secret_rolls_back(state: State) -> None:
    rot = rotation(state, new_uuid="new-uuid", attempts=2)
    failure = on_step_error(rot, InvalidClient("new secret refused"), T0)
    assert failure.state is S.ROLLING_BACK
    assert failure.next_attempt_at == T0
    assert failure.resume_state is None
    check_transition(state, failure.state)


@pytest.mark.parametrize("state", [S.PLANNED, S.CREATING])
def test_permanent_error_without_a_new_secret_asks_a_person(state: State) -> None:
    rot = rotation(state, new_uuid=None)
    failure = on_step_error(rot, AccessDenied("scope missing"), T0)
    assert failure.state is S.NEEDS_ATTENTION
    assert failure.resume_state is state
    assert failure.next_attempt_at is not None
    assert failure.next_attempt_at >= T0 + timedelta(minutes=1)


@pytest.mark.parametrize("state", [S.PROMOTED, S.DRAINING, S.RETIRING, S.ROLLING_BACK])
def test_permanent_error_after_promotion_or_in_rollback_asks_a_person(state: State) -> None:
    rot = rotation(state, new_uuid="new-uuid", promoted_at=T0)
    failure = on_step_error(rot, NotFound("credential gone", credential="analytics"), T0)
    assert failure.state is S.NEEDS_ATTENTION
    assert failure.resume_state is state
    assert "credential 'analytics'" in failure.message


def test_permanent_error_in_needs_attention_keeps_the_original_resume_state() -> None:
    rot = rotation(S.NEEDS_ATTENTION, resume_state=S.VERIFIED, new_uuid="n")
    failure = on_step_error(rot, SecretLimit("third secret"), T0)
    assert failure.state is S.NEEDS_ATTENTION
    assert failure.resume_state is S.VERIFIED


@settings(max_examples=200, deadline=None)
@given(
    state=st.sampled_from(sorted(set(State) - TERMINAL)),
    transient=st.booleans(),
    attempts=st.integers(min_value=0, max_value=100),
    new_uuid=st.one_of(st.none(), st.just("new-uuid")),
)
def test_on_step_error_only_ever_asks_for_a_legal_move(
    state: State, transient: bool, attempts: int, new_uuid: str | None
) -> None:
    error: StepError = TransientError("x") if transient else PermanentError("x")
    rot = rotation(state, attempts=attempts, new_uuid=new_uuid)
    failure = on_step_error(rot, error, T0)
    check_transition(state, failure.state)
    assert failure.next_attempt_at is not None
    assert T0 <= failure.next_attempt_at <= T0 + timedelta(minutes=5)
    if state.promoted:
        assert failure.state is not S.ROLLING_BACK


# --- errors ----------------------------------------------------------------------------------


def test_step_error_names_the_credential_and_step() -> None:
    err = TransientError("503 from Adobe", credential="analytics", step="creating")
    assert str(err) == "credential 'analytics' creating: 503 from Adobe"
    assert err.transient
    assert not PermanentError("x").transient


def test_located_fills_in_where_and_keeps_the_kind_and_extras() -> None:
    err = InvalidClient("refused")
    err.status = 400  # type: ignore[attr-defined]
    located = err.located(credential="analytics", step="staged")
    assert type(located) is InvalidClient
    assert str(located) == "credential 'analytics' staged: refused"
    assert located.status == 400  # type: ignore[attr-defined]
    assert located.detail == "refused"
    assert str(err) == "refused"  # the original is untouched


def test_located_keeps_an_error_that_already_knows_where_it_happened() -> None:
    err = NotFound("gone", credential="a", step="retiring")
    assert err.located(credential="b", step="planned") is err


def test_error_exit_codes() -> None:
    assert RotatorError().exit_code == 1
    assert ConfigError().exit_code == 2
    assert NeedsAttention().exit_code == 3
    assert issubclass(LeaseLost, RotatorError)
    for kind in (InvalidClient, AccessDenied, NotFound, SecretLimit):
        assert issubclass(kind, PermanentError)


# --- what a rotation gives back ----------------------------------------------------------------


def test_own_secrets_are_the_new_one_and_the_one_an_abandoned_rotation_staged() -> None:
    assert machine.own_secrets(rotation()) == {}
    own = rotation(S.STAGED, new_uuid="n", request_token="tok")
    assert machine.own_secrets(own) == {"n": "tok"}
    inherits = {"rotation_id": 6, "uuid": "left", "version_id": "tok-6"}
    emergency = rotation(S.PLANNED, trigger=Trigger.EMERGENCY, detail={"inherits": inherits})
    assert machine.own_secrets(emergency) == {"left": "tok-6"}
    assert machine.has_leftovers(emergency) and not machine.has_leftovers(own)
