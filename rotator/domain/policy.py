"""Pure timing rules: when a credential is due, how to back off, when the old secret is quiet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from rotator.domain.model import Policy

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    """Hours (UTC) and weekdays in which scheduled rotations may start. Emergencies ignore it."""

    start: time
    end: time
    days: frozenset[int] = frozenset(range(7))

    def contains(self, moment: datetime) -> bool:
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        now = moment.time().replace(tzinfo=None)
        day = moment.weekday()
        if self.start <= self.end:
            return day in self.days and self.start <= now < self.end
        if now >= self.start:  # a window across midnight belongs to the day it opens
            return day in self.days
        return now < self.end and (day - 1) % 7 in self.days


def is_due(
    *,
    secret_created_at: datetime | None,
    last_rotated_at: datetime | None,
    last_scheduled_at: datetime | None,
    last_failed_at: datetime | None = None,
    policy: Policy,
    window: Window | None,
    now: datetime,
) -> bool:
    """Due when the current secret reached max_age or a cron tick passed since the last rotation.

    An unknown secret age is not due: the daemon surveys the credential first, rather than
    rotating a secret it knows nothing about.
    """
    if window is not None and not window.contains(now):
        return False
    if last_failed_at is not None and now - last_failed_at < policy.failure_cooldown:
        return False  # a rotation that just failed is not retried in a loop: a person looks first
    if secret_created_at is not None and now - secret_created_at >= policy.max_age:
        return True
    if last_scheduled_at is not None:
        return last_rotated_at is None or last_rotated_at < last_scheduled_at
    return False


def backoff(
    attempts: int, *, base: timedelta = timedelta(seconds=1), cap: timedelta = timedelta(minutes=5)
) -> timedelta:
    """Exponential delay before retry number `attempts` (1-based); never a tight loop."""
    exponent = max(0, min(attempts - 1, 20))
    delay: timedelta = base * (2**exponent)
    return min(cap, delay)


def quiet_deadline(
    *,
    promoted_at: datetime,
    old_last_used_at: datetime | None,
    quiet_period: timedelta,
    usage_lag: timedelta = timedelta(0),
) -> datetime:
    """The instant the old secret counts as unused: quiet_period (+ usage_lag) after its last
    sign of life. Prefer `machine.drain_deadline`, which takes the lag from the policy.

    Promotion counts as a sign of life because consumers may still hold tokens minted
    with the old secret until they re-read AWSCURRENT, up to one token lifetime later.
    """
    last_sign = max(promoted_at, old_last_used_at) if old_last_used_at else promoted_at
    return last_sign + quiet_period + usage_lag
