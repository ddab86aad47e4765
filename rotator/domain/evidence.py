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
    # First answer of the current run that contradicted the old secret's recorded use
    # (`went_back`): while it lasts, nothing is deleted (I13).
    stale_since: datetime | None = None
    # Per uuid, on the store's clock (so no comparison with Adobe's clock is needed): when
    # rotator first saw it listed, and when it first saw its latest reported use (a time
    # after the use itself). Carried from one rotation to the next (`carried`).
    first_seen: Mapping[str, datetime] = field(default_factory=dict)
    use_seen: Mapping[str, datetime] = field(default_factory=dict)
    # Old secrets an earlier rotation promoted away from and kept (cancelled past
    # promotion, or gone from every list): uuid -> that promotion, a sign of life.
    kept: Mapping[str, datetime] = field(default_factory=dict)

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
        first_seen, use_seen = dict(self.first_seen), dict(self.use_seen)
        for uuid, used in listed.items():
            first_seen.setdefault(uuid, at)
            known = self.last_use(uuid, old_uuid=old_uuid, new_uuid=new_uuid)
            if used is not None and (known is None or used > known):
                use_seen[uuid] = at
            if uuid not in {old_uuid, new_uuid} and used is not None:
                strays[uuid] = latest(strays.get(uuid), used) or used
        old_listed = old_uuid is not None and old_uuid in listed
        return replace(
            self,
            polled_at=latest(self.polled_at, at),
            old_last_used_at=latest(
                self.last_use(old_uuid, old_uuid=old_uuid) if old_uuid else None,
                listed.get(old_uuid) if old_uuid else None,
            ),
            new_last_used_at=latest(
                self.last_use(new_uuid, new_uuid=new_uuid) if new_uuid else None,
                listed.get(new_uuid) if new_uuid else None,
            ),
            old_absent_since=None if old_listed else (self.old_absent_since or at),
            old_absences=0 if old_listed else self.old_absences + 1,
            strays=strays,
            first_seen=first_seen,
            use_seen=use_seen,
        )

    def last_use(
        self, uuid: str, *, old_uuid: str | None = None, new_uuid: str | None = None
    ) -> datetime | None:
        """The latest use ever reported for `uuid` (Adobe's clock), in this rotation or
        carried from an earlier one: the secret this rotation drains is often the one the
        last rotation made and watched being used (I10: evidence per secret only grows)."""
        if uuid == old_uuid:
            return latest(self.old_last_used_at, self.strays.get(uuid))
        if uuid == new_uuid:
            return latest(self.new_last_used_at, self.strays.get(uuid))
        return self.strays.get(uuid)

    def contradicted_by(
        self,
        listed: Mapping[str, datetime | None],
        *,
        old_uuid: str | None = None,
        new_uuid: str | None = None,
    ) -> list[str]:
        """The uuids this answer shows with no use, or an older one, than already recorded
        (I13: while an answer contradicts what was seen, nothing is deleted on it)."""
        return sorted(
            uuid
            for uuid, used in listed.items()
            if went_back_to(self.last_use(uuid, old_uuid=old_uuid, new_uuid=new_uuid), used)
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
            "first_seen": _times_out(self.first_seen),
            "use_seen": _times_out(self.use_seen),
            "kept": _times_out(self.kept),
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
            first_seen=_times_in(data.get("first_seen")),
            use_seen=_times_in(data.get("use_seen")),
            kept=_times_in(data.get("kept")),
        )


def carried(
    before: Evidence | None,
    *,
    old_uuid: str | None,
    new_uuid: str | None,
    kept_since: datetime | None,
    deleted: tuple[str, ...] = (),
) -> Evidence:
    """What a finished rotation knew, as the start of the next one's evidence (I10: evidence
    per secret only grows, across rotations too). Its old secret, if it was not deleted
    (`kept_since`: the promotion away from it), is a kept old secret: the next rotation
    drains it like its own old secret, from that promotion and its latest use."""
    before = before or NO_EVIDENCE
    strays = dict(before.strays)
    kept = dict(before.kept)
    if old_uuid and kept_since is not None:
        if before.old_last_used_at is not None:
            strays[old_uuid] = latest(strays.get(old_uuid), before.old_last_used_at) or (
                before.old_last_used_at
            )
        kept[old_uuid] = latest(kept.get(old_uuid), kept_since) or kept_since
    if new_uuid and before.new_last_used_at is not None:
        strays[new_uuid] = latest(strays.get(new_uuid), before.new_last_used_at) or (
            before.new_last_used_at
        )
    gone = set(deleted)  # a secret it deleted and a list still shows starts afresh

    def alive(times: Mapping[str, datetime]) -> dict[str, datetime]:
        return {u: t for u, t in times.items() if u not in gone}

    return Evidence(
        polled_at=before.polled_at,
        old_last_used_at=None,
        strays=alive(strays),
        first_seen=alive(before.first_seen),
        use_seen=alive(before.use_seen),
        kept=alive(kept),
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
    """An answer that shows an older use of the old secret than one already seen (or none
    at all) contradicts what was seen: no delete on it, however long it lasts (I13)."""
    return went_back_to(before.old_last_used_at if before else None, answered)


def went_back_to(seen: datetime | None, answered: datetime | None) -> bool:
    """`answered` is no use, or an older one, where `seen` was recorded."""
    return seen is not None and (answered is None or answered < seen)


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


def _times_out(times: Mapping[str, datetime]) -> dict[str, str]:
    return {uuid: at.isoformat() for uuid, at in sorted(times.items())}


def _times_in(data: Any) -> dict[str, datetime]:
    if not isinstance(data, Mapping):
        return {}
    return {str(u): datetime.fromisoformat(t) for u, t in data.items() if isinstance(t, str)}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None
