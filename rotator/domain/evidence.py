"""Evidence that only grows: what Adobe's answers proved about a secret's use, across answers.

Adobe is eventually consistent: one list may leave a secret out, report `last_used_at`
late, or go back to `null` or to an older time. So no single answer decides a delete
(I9, I10): the latest use ever seen is kept and never lowered, "the secret is gone" needs
two answers in a row apart in time, and the quiet rule counts from the latest use seen
plus a bound on how late Adobe reports a use (`usage_lag`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

# "Gone" is confirmed by a second answer at least this long after the first absent one
# (or one poll interval, when that is shorter): long enough for a list replica to catch up,
# short enough that a long poll interval does not hold a finished rotation for hours.
ABSENCE_CONFIRM_DELAY = timedelta(seconds=60)
# Answers in a row that must leave out a secret rotator cannot name (an add whose answer
# was lost) before it counts as never made: a list that forgets a secret for a moment
# must not leave one at Adobe that no AWS version holds (I7).
UNNAMED_ABSENCE_ANSWERS = 4
# Unset usage_lag: a tenth of quiet_period, at most this (see `effective_usage_lag`).
DEFAULT_USAGE_LAG = timedelta(hours=1)


def latest(*times: datetime | None) -> datetime | None:
    """The latest of the known times; None only when none is known (grow-only merge)."""
    known = [t for t in times if t is not None]
    return max(known) if known else None


@dataclass(frozen=True)
class Evidence:
    """Everything a rotation has learnt about its secrets' use, folded answer by answer.

    `old_last_used_at` / `new_last_used_at` / `strays` hold the latest `last_used_at` ever
    reported; `old_absent_since` is the time of the first answer of the current run of
    answers without the old uuid (None once an answer lists it again).
    """

    polled_at: datetime | None
    old_last_used_at: datetime | None
    new_last_used_at: datetime | None = None
    old_absent_since: datetime | None = None
    old_absences: int = 0
    strays: Mapping[str, datetime] = field(default_factory=dict)
    # First re-check before a delete whose answer went backwards (see `went_back`).
    stale_since: datetime | None = None

    def fold(
        self,
        at: datetime,
        listed: Mapping[str, datetime | None],
        *,
        old_uuid: str | None,
        new_uuid: str | None,
    ) -> Evidence:
        """Add one list answer (uuid -> its reported last_used_at) taken at `at`."""
        strays = dict(self.strays)
        for uuid, used in listed.items():
            if uuid not in {old_uuid, new_uuid} and used is not None:
                strays[uuid] = latest(strays.get(uuid), used) or used
        old_listed = old_uuid is not None and old_uuid in listed
        return replace(
            self,
            polled_at=latest(self.polled_at, at),
            old_last_used_at=latest(
                self.old_last_used_at, listed.get(old_uuid) if old_uuid else None
            ),
            new_last_used_at=latest(
                self.new_last_used_at, listed.get(new_uuid) if new_uuid else None
            ),
            old_absent_since=None if old_listed else (self.old_absent_since or at),
            old_absences=0 if old_listed else self.old_absences + 1,
            strays=strays,
        )

    def deleted(self, at: datetime) -> Evidence:
        """Adobe answered a delete of the old secret: that is a first answer without it."""
        if self.old_absent_since is not None:
            return self
        return replace(self, old_absent_since=at, old_absences=1)

    def old_gone(self, now: datetime, poll_interval: timedelta) -> bool:
        """Two answers in a row without the old uuid, apart in time: it really is gone."""
        return Absence(self.old_absent_since, self.old_absences).confirmed(now, poll_interval)

    def as_dict(self) -> dict[str, Any]:
        return {
            "polled_at": _iso(self.polled_at),
            "old_last_used_at": _iso(self.old_last_used_at),
            "new_last_used_at": _iso(self.new_last_used_at),
            "old_absent_since": _iso(self.old_absent_since),
            "old_absences": self.old_absences,
            "strays": {uuid: used.isoformat() for uuid, used in sorted(self.strays.items())},
            "stale_since": _iso(self.stale_since),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """Read a stored record; rows written before 0.2 hold only the first three keys."""
        strays = data.get("strays") or {}
        return cls(
            polled_at=_parse(data.get("polled_at")),
            old_last_used_at=_parse(data.get("old_last_used_at")),
            new_last_used_at=_parse(data.get("new_last_used_at")),
            old_absent_since=_parse(data.get("old_absent_since")),
            old_absences=int(data.get("old_absences") or 0),
            strays={uuid: datetime.fromisoformat(used) for uuid, used in strays.items()},
            stale_since=_parse(data.get("stale_since")),
        )


NO_EVIDENCE = Evidence(polled_at=None, old_last_used_at=None)


@dataclass(frozen=True)
class Absence:
    """A run of answers in a row that did not list something: `count` answers since `since`.

    One answer that leaves a secret out proves nothing (a list replica may lag); two in a
    row, apart by `confirm_delay`, do. Adobe's answer to a delete counts as a first one.
    """

    since: datetime | None = None
    count: int = 0

    def absent(self, at: datetime) -> Absence:
        """One more answer without it."""
        return Absence(self.since or at, self.count + 1)

    def confirmed(self, now: datetime, poll_interval: timedelta, answers: int = 2) -> bool:
        """`answers` in a row without it, each `confirm_delay` after the one before."""
        if self.count < answers or self.since is None:
            return False
        return now - self.since >= (answers - 1) * confirm_delay(poll_interval)

    def as_dict(self) -> dict[str, Any]:
        return {"since": _iso(self.since), "count": self.count}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Absence:
        data = data or {}
        return cls(_parse(data.get("since")), int(data.get("count") or 0))


def went_back(before: Evidence | None, answered: datetime | None) -> bool:
    """An answer that shows an older use than one already seen (or none at all) is stale."""
    seen = before.old_last_used_at if before else None
    return seen is not None and (answered is None or answered < seen)


def wait_for_fresh(evidence: Evidence, now: datetime, usage_lag: timedelta) -> bool:
    """The answer right before a delete went backwards: look again rather than delete on it,
    for up to usage_lag (a glitch hides a use for less than that). An Adobe that keeps
    answering so for longer is not hiding a use that bound covers: then the rule decides."""
    return evidence.stale_since is None or now - evidence.stale_since < usage_lag


def confirm_delay(poll_interval: timedelta) -> timedelta:
    """How far apart the two answers that confirm an absence must be."""
    return min(poll_interval, ABSENCE_CONFIRM_DELAY)


def effective_usage_lag(usage_lag: timedelta | None, quiet_period: timedelta) -> timedelta:
    """The configured bound on Adobe's reporting delay, or the default when unset.

    Unset: a tenth of quiet_period, at most an hour. Production quiet periods (a day or
    more) get the full hour; a demo's quiet_period of seconds is not held for an hour.
    """
    if usage_lag is not None:
        return usage_lag
    return min(DEFAULT_USAGE_LAG, quiet_period / 10)


def quiet_deadline(
    *,
    since: datetime,
    last_used_at: datetime | None,
    quiet_period: timedelta,
    usage_lag: timedelta,
) -> datetime:
    """The instant a secret counts as unused: quiet_period + usage_lag after its last sign.

    `since` (promotion, or a stray's creation) is a sign of life: consumers may hold
    tokens minted with the old secret until they re-read AWSCURRENT. `usage_lag` covers a
    use that happened but that Adobe has not reported yet.
    """
    return (latest(since, last_used_at) or since) + quiet_period + usage_lag


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None
