"""The grow-only evidence record and the quiet rule with usage_lag (issue 11, I9/I10)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.domain.evidence import (
    ABSENCE_CONFIRM_DELAY,
    NO_EVIDENCE,
    Absence,
    Evidence,
    carried,
    confirm_delay,
    effective_usage_lag,
    quiet_deadline,
    went_back,
)

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
OLD, NEW = "old", "new"

answers = st.lists(
    st.tuples(
        st.booleans(),  # the old uuid is listed
        st.one_of(st.none(), st.integers(min_value=-100, max_value=100)),  # its last use, hours
        st.dictionaries(st.sampled_from(["s1", "s2"]), st.integers(-100, 100), max_size=2),
    ),
    max_size=12,
)


def _fold(
    evidence: Evidence, at: datetime, listed: bool, used: int | None, strays: dict[str, int]
) -> Evidence:
    answer: dict[str, datetime | None] = {u: T0 + h * H for u, h in strays.items()}
    if listed:
        answer[OLD] = T0 + used * H if used is not None else None
    return evidence.fold(at, answer, old_uuid=OLD, new_uuid=NEW)


@settings(max_examples=200, deadline=None)
@given(answers)
def test_the_latest_use_never_goes_down_whatever_the_answers(seq: list) -> None:
    evidence = NO_EVIDENCE
    seen_max: datetime | None = None
    stray_max: dict[str, datetime] = {}
    for i, (listed, used, strays) in enumerate(seq):
        before = evidence
        evidence = _fold(evidence, T0 + i * H, listed, used, strays)
        if listed and used is not None:
            seen_max = max(seen_max or T0 + used * H, T0 + used * H)
        for uuid, h in strays.items():
            stray_max[uuid] = max(stray_max.get(uuid, T0 + h * H), T0 + h * H)
        if before.old_last_used_at is not None:
            assert evidence.old_last_used_at is not None
            assert evidence.old_last_used_at >= before.old_last_used_at
    assert evidence.old_last_used_at == seen_max
    assert dict(evidence.strays) == stray_max


def test_a_null_or_older_answer_does_not_lower_the_latest_use() -> None:
    seen = NO_EVIDENCE.fold(T0, {OLD: T0 - H}, old_uuid=OLD, new_uuid=NEW)
    assert seen.fold(T0 + H, {OLD: None}, old_uuid=OLD, new_uuid=NEW).old_last_used_at == T0 - H
    older = seen.fold(T0 + H, {OLD: T0 - 5 * H}, old_uuid=OLD, new_uuid=NEW)
    assert older.old_last_used_at == T0 - H


def test_absence_needs_two_answers_in_a_row_apart_in_time() -> None:
    poll = timedelta(minutes=15)
    once = NO_EVIDENCE.fold(T0, {NEW: None}, old_uuid=OLD, new_uuid=NEW)
    assert not once.old_gone(T0 + 10 * H, poll)  # one answer, however long ago
    quick = once.fold(T0 + timedelta(seconds=5), {}, old_uuid=OLD, new_uuid=NEW)
    assert not quick.old_gone(T0 + timedelta(seconds=5), poll)  # two answers, too close
    assert quick.old_gone(T0 + ABSENCE_CONFIRM_DELAY, poll)
    back = quick.fold(T0 + H, {OLD: None}, old_uuid=OLD, new_uuid=NEW)  # listed again
    assert back.old_absences == 0 and not back.old_gone(T0 + 2 * H, poll)


def test_the_confirmation_delay_is_a_poll_or_a_minute_whichever_is_shorter() -> None:
    assert confirm_delay(timedelta(seconds=1)) == timedelta(seconds=1)
    assert confirm_delay(timedelta(hours=6)) == ABSENCE_CONFIRM_DELAY


def test_a_deletes_answer_counts_as_the_first_absence() -> None:
    deleted = NO_EVIDENCE.deleted(T0)
    assert not deleted.old_gone(T0, H)
    again = deleted.fold(T0 + ABSENCE_CONFIRM_DELAY, {NEW: None}, old_uuid=OLD, new_uuid=NEW)
    assert again.old_gone(T0 + ABSENCE_CONFIRM_DELAY, H)


def test_a_run_of_absent_answers_confirms_only_when_two_are_apart_in_time() -> None:
    """The rollback's "nothing of ours left": the same rule as the old secret's absence."""
    poll = timedelta(minutes=15)
    first = Absence().absent(T0)
    assert not first.confirmed(T0 + 10 * H, poll)  # one answer, however long ago
    second = first.absent(T0 + timedelta(seconds=5))
    assert not second.confirmed(T0 + timedelta(seconds=5), poll)
    assert second.confirmed(T0 + ABSENCE_CONFIRM_DELAY, poll)
    assert Absence.from_dict(second.as_dict()) == second
    assert Absence.from_dict(None) == Absence()


def test_an_absence_that_asks_for_more_answers_needs_them_all_apart_in_time() -> None:
    """A rollback that cannot name what it looks for (a lost add) asks for four answers."""
    poll, step = timedelta(minutes=15), ABSENCE_CONFIRM_DELAY
    run = Absence()
    for i in range(3):
        run = run.absent(T0 + i * step)
    assert run.confirmed(T0 + 2 * step, poll)
    assert not run.confirmed(T0 + 10 * H, poll, answers=4)  # three answers, however long
    run = run.absent(T0 + 3 * step - timedelta(seconds=1))
    assert not run.confirmed(T0 + 3 * step - timedelta(seconds=1), poll, answers=4)
    assert run.confirmed(T0 + 3 * step, poll, answers=4)


def test_the_quiet_deadline_adds_usage_lag_to_the_latest_sign_of_life() -> None:
    lag = timedelta(minutes=30)
    assert quiet_deadline(since=T0, last_used_at=None, quiet_period=25 * H, usage_lag=lag) == (
        T0 + 25 * H + lag
    )
    used = T0 + 3 * H
    assert quiet_deadline(since=T0, last_used_at=used, quiet_period=25 * H, usage_lag=lag) == (
        used + 25 * H + lag
    )
    before = T0 - 3 * H  # a use before promotion: promotion is the later sign
    assert (
        quiet_deadline(since=T0, last_used_at=before, quiet_period=H, usage_lag=lag) == T0 + H + lag
    )


def test_an_unset_usage_lag_is_a_tenth_of_the_quiet_period_at_most_an_hour() -> None:
    assert effective_usage_lag(None, 25 * H) == H
    assert effective_usage_lag(None, timedelta(seconds=10)) == timedelta(seconds=1)
    assert effective_usage_lag(timedelta(0), 25 * H) == timedelta(0)


def test_a_stored_record_reads_back_the_same_and_old_rows_still_read() -> None:
    evidence = NO_EVIDENCE.fold(T0, {OLD: T0 - H, "s1": T0 - 2 * H}, old_uuid=OLD, new_uuid=NEW)
    evidence = evidence.fold(T0 + H, {}, old_uuid=OLD, new_uuid=NEW)
    assert Evidence.from_dict(evidence.as_dict()) == evidence
    legacy = {"polled_at": T0.isoformat(), "old_last_used_at": None, "new_last_used_at": None}
    assert Evidence.from_dict(legacy) == Evidence(T0, None, None)


def test_an_answer_that_goes_back_is_a_contradiction_however_long_it_lasts() -> None:
    seen = NO_EVIDENCE.fold(T0, {OLD: T0 - H}, old_uuid=OLD, new_uuid=NEW)
    assert went_back(seen, None) and went_back(seen, T0 - 2 * H)
    assert not went_back(seen, T0 - H) and not went_back(NO_EVIDENCE, None)
    assert seen.contradicted_by({OLD: None, NEW: None}, old_uuid=OLD, new_uuid=NEW) == [OLD]
    stale = replace(seen, stale_since=T0)
    assert Evidence.from_dict(stale.as_dict()) == stale


def test_a_use_seen_by_the_last_rotation_is_known_to_the_next_one() -> None:
    """The secret a rotation drains is usually the one the rotation before made: a use
    Adobe showed then is not forgotten, so an answer that now shows it unused (null)
    contradicts it and blocks the delete (I10, I13; a soak example once deleted such a
    secret under a consumer when every answer of the new rotation hid its use)."""
    before = NO_EVIDENCE.fold(T0, {OLD: None, NEW: T0 - H}, old_uuid=OLD, new_uuid=NEW)
    after = carried(before, old_uuid=OLD, new_uuid=NEW, kept_since=None, deleted=(OLD,))
    newer = "s-newer"
    assert after.contradicted_by({NEW: None}, old_uuid=NEW, new_uuid=newer) == [NEW]
    planned = after.fold(T0 + H, {NEW: None, newer: None}, old_uuid=NEW, new_uuid=newer)
    assert planned.old_last_used_at == T0 - H
    assert went_back(planned, None) and went_back(planned, T0 - 2 * H)
    assert not went_back(planned, T0 - H)
    control = NO_EVIDENCE.fold(T0 + H, {NEW: None}, old_uuid=NEW, new_uuid=newer)
    assert not went_back(control, None)  # nothing carried: a null contradicts nothing
