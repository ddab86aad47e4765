"""Timing rules: when a credential is due, how retries back off, when the old secret is quiet."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.domain.model import Policy
from rotator.domain.policy import WEEKDAYS, Window, backoff, is_due, quiet_deadline

MONDAY = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
assert MONDAY.weekday() == 0
D = timedelta(days=1)
H = timedelta(hours=1)
POLICY = Policy(max_age=timedelta(days=90), failure_cooldown=timedelta(hours=6))
WEEKDAYS_ONLY = frozenset(range(5))


def due(
    now: datetime = MONDAY,
    *,
    created: datetime | None = None,
    rotated: datetime | None = None,
    scheduled: datetime | None = None,
    failed: datetime | None = None,
    window: Window | None = None,
    policy: Policy = POLICY,
) -> bool:
    return is_due(
        secret_created_at=created,
        last_rotated_at=rotated,
        last_scheduled_at=scheduled,
        last_failed_at=failed,
        policy=policy,
        window=window,
        now=now,
    )


def at(day: datetime, hh: int, mm: int = 0) -> datetime:
    return day.replace(hour=hh, minute=mm)


# --- max_age ---------------------------------------------------------------------------------


def test_a_secret_reaching_max_age_is_due() -> None:
    assert due(created=MONDAY - 90 * D)
    assert due(created=MONDAY - 400 * D)


def test_a_younger_secret_is_not_due() -> None:
    assert not due(created=MONDAY - 90 * D + timedelta(seconds=1))


def test_an_unknown_secret_age_is_not_due() -> None:
    assert not due(created=None, rotated=None, scheduled=None)


def test_max_age_follows_the_policy() -> None:
    assert due(created=MONDAY - 2 * D, policy=Policy(max_age=timedelta(days=2)))
    assert not due(created=MONDAY - 2 * D, policy=Policy(max_age=timedelta(days=3)))


# --- cron schedule ---------------------------------------------------------------------------


def test_a_cron_tick_after_the_last_rotation_makes_it_due() -> None:
    assert due(created=MONDAY - D, rotated=MONDAY - 2 * D, scheduled=MONDAY - H)


def test_a_cron_tick_before_the_last_rotation_is_already_served() -> None:
    assert not due(created=MONDAY - D, rotated=MONDAY - H, scheduled=MONDAY - 2 * H)


def test_a_cron_tick_at_the_same_instant_as_the_rotation_is_served() -> None:
    assert not due(created=MONDAY - D, rotated=MONDAY - H, scheduled=MONDAY - H)


def test_a_cron_tick_with_no_rotation_yet_is_due_even_for_an_unknown_age() -> None:
    assert due(created=None, rotated=None, scheduled=MONDAY - H)


# --- failure cooldown ------------------------------------------------------------------------


def test_a_recent_failure_holds_the_credential_back() -> None:
    assert not due(created=MONDAY - 100 * D, failed=MONDAY - 5 * H)


def test_the_failure_cooldown_ends() -> None:
    assert due(created=MONDAY - 100 * D, failed=MONDAY - 6 * H)
    assert due(created=MONDAY - 100 * D, failed=MONDAY - 7 * H)


def test_the_cooldown_also_holds_back_a_cron_tick() -> None:
    assert not due(scheduled=MONDAY - H, failed=MONDAY - H)


# --- windows ---------------------------------------------------------------------------------


def test_outside_the_window_nothing_is_due() -> None:
    office = Window(start=time(9), end=time(17), days=WEEKDAYS_ONLY)
    old = MONDAY - 100 * D
    assert due(at(MONDAY, 10), created=old, window=office)
    assert not due(at(MONDAY, 18), created=old, window=office)
    saturday = MONDAY + 5 * D
    assert not due(at(saturday, 10), created=old, window=office)


def test_window_start_is_inclusive_and_end_exclusive() -> None:
    office = Window(start=time(9), end=time(17))
    assert office.contains(at(MONDAY, 9))
    assert not office.contains(at(MONDAY, 8, 59))
    assert office.contains(at(MONDAY, 16, 59))
    assert not office.contains(at(MONDAY, 17))


def test_window_across_midnight_covers_late_evening_and_early_morning() -> None:
    night = Window(start=time(22), end=time(2))
    assert night.contains(at(MONDAY, 22))
    assert night.contains(at(MONDAY, 23, 30))
    assert night.contains(at(MONDAY, 0))
    assert night.contains(at(MONDAY, 1, 59))
    assert not night.contains(at(MONDAY, 2))
    assert not night.contains(at(MONDAY, 12))
    assert not night.contains(at(MONDAY, 21, 59))


def test_window_weekday_set_is_honoured() -> None:
    weekend = Window(start=time(0), end=time(6), days=frozenset({5, 6}))
    for offset in range(7):
        day = MONDAY + offset * D
        assert weekend.contains(at(day, 3)) == (day.weekday() in (5, 6)), WEEKDAYS[offset]


def test_a_window_across_midnight_belongs_to_the_day_it_opens() -> None:
    friday_night = Window(start=time(22), end=time(2), days=frozenset({4}))
    friday = MONDAY + 4 * D
    saturday = friday + D
    assert friday_night.contains(at(friday, 23))
    assert friday_night.contains(at(saturday, 1))  # still Friday night
    assert not friday_night.contains(at(friday, 1))  # that is Thursday night


def test_a_window_judges_an_aware_moment_in_utc() -> None:
    office = Window(start=time(9), end=time(17))
    tokyo = timezone(timedelta(hours=9))
    ten_utc_in_tokyo = at(MONDAY, 10).astimezone(tokyo)  # 19:00 local
    assert office.contains(ten_utc_in_tokyo)


# --- backoff ---------------------------------------------------------------------------------


def test_backoff_doubles_from_the_base() -> None:
    assert [backoff(n).total_seconds() for n in range(1, 6)] == [1, 2, 4, 8, 16]


def test_backoff_is_capped() -> None:
    assert backoff(9) == timedelta(seconds=256)
    assert backoff(10) == timedelta(minutes=5)  # 512 s, capped at 300 s
    assert backoff(30, cap=timedelta(seconds=10)) == timedelta(seconds=10)


def test_backoff_of_huge_attempt_counts_does_not_overflow() -> None:
    assert backoff(10**9) == timedelta(minutes=5)
    assert backoff(10**9, cap=timedelta(days=365)) == timedelta(seconds=2**20)


def test_backoff_before_the_first_attempt_is_the_base_never_zero() -> None:
    assert backoff(0) == timedelta(seconds=1)
    assert backoff(-5, base=timedelta(milliseconds=250)) == timedelta(milliseconds=250)


@settings(max_examples=300, deadline=None)
@given(
    attempts=st.integers(min_value=-3, max_value=200),
    base_ms=st.integers(min_value=1, max_value=60_000),
    cap_ms=st.integers(min_value=1, max_value=3_600_000),
)
def test_backoff_is_monotonic_and_capped(attempts: int, base_ms: int, cap_ms: int) -> None:
    base, cap = timedelta(milliseconds=base_ms), timedelta(milliseconds=cap_ms)
    here = backoff(attempts, base=base, cap=cap)
    later = backoff(attempts + 1, base=base, cap=cap)
    assert min(base, cap) <= here <= cap
    assert here <= later


# --- quiet deadline --------------------------------------------------------------------------


def test_quiet_deadline_counts_from_promotion_when_the_old_secret_was_not_used_since() -> None:
    assert (
        quiet_deadline(promoted_at=MONDAY, old_last_used_at=None, quiet_period=25 * H)
        == MONDAY + 25 * H
    )
    assert (
        quiet_deadline(promoted_at=MONDAY, old_last_used_at=MONDAY - D, quiet_period=25 * H)
        == MONDAY + 25 * H
    )


def test_quiet_deadline_counts_from_the_last_use_after_promotion() -> None:
    assert (
        quiet_deadline(promoted_at=MONDAY, old_last_used_at=MONDAY + 3 * H, quiet_period=25 * H)
        == MONDAY + 28 * H
    )
