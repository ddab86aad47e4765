"""Oracle checks: the rotator judged against what really happened, not what Adobe said.

Both worlds (the HTTP sandbox and the in-memory Adobe of `rotator.devkit.fakes`) keep the same
oracle (`rotator.devkit.sandbox.oracle`): every true use of every secret with who made it, every
refusal, every deletion and whether the value deleted was AWSCURRENT's at that instant.
These functions read it beside the database's rotations and return what is wrong:

- **never the live one** (I1, I2): no deletion ever removed the value AWSCURRENT held,
  in an emergency or not, whatever uuid the AWS value recorded;
- **never under a consumer** (I8, I9, I10): outside an emergency, no secret was deleted
  while consumers were still using it: from promotion (for the secret a rotation
  replaced) or from its first use (for any other secret), every gap between true uses
  was shorter than `quiet_period`, and the deletion came less than `quiet_period` after
  the last one. A consumer that went silent for a whole quiet period and came back is not
  protected (that silence is what the rule deletes on), so a test's consumers that keep
  an old secret keep using it at intervals shorter than the quiet period, as a consumer
  whose token expires does, or stop for good.

Usage lag does not excuse a deletion: the rotator is told a bound (`usage_lag`) and
tests keep the sandbox's lag within it, so a deletion under a consumer is the rotator's.
Times are epoch milliseconds; rotations carry the database's times, which are the same
clock (the model's fake clock; the host clock of the sandbox and the database in the
process tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from rotator.devkit.sandbox.oracle import SecretTruth


@dataclass(frozen=True)
class RotationTimes:
    """What the checks need of one rotation row."""

    id: int
    emergency: bool
    old_uuid: str | None
    created_at: int
    promoted_at: int | None
    finished_at: int | None


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime), value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def rotation_times(rows: Iterable[Any]) -> list[RotationTimes]:
    """From `Store.recent()` rotations or raw `rotations` rows (mappings)."""
    out = []
    for row in rows:
        get = row.get if isinstance(row, Mapping) else lambda k, r=row: getattr(r, k)
        trigger = get("trigger")
        trigger = getattr(trigger, "value", trigger)
        created = _ms(get("created_at"))
        assert created is not None
        out.append(
            RotationTimes(
                id=int(get("id")),
                emergency=trigger == "emergency",
                old_uuid=get("old_uuid"),
                created_at=created,
                promoted_at=_ms(get("promoted_at")),
                finished_at=_ms(get("finished_at")),
            )
        )
    return out


def _in_emergency(at: int, rotations: list[RotationTimes], slack_ms: int) -> bool:
    return any(
        r.emergency
        and r.created_at - slack_ms <= at
        and (r.finished_at is None or at <= r.finished_at + slack_ms)
        for r in rotations
    )


def deleted_under_a_consumer(
    truth: SecretTruth, rotations: list[RotationTimes], quiet_ms: int, *, slack_ms: int = 0
) -> str | None:
    """Why deleting `truth`'s secret broke a consumer that was still using it, or None."""
    deleted_at = truth.deleted_at
    if deleted_at is None:
        return None
    uses = sorted(at for at, who in truth.uses if who == "consumer" and at <= deleted_at)
    if not uses or _in_emergency(deleted_at, rotations, slack_ms):
        return None
    replaced = [r for r in rotations if r.old_uuid == truth.uuid and r.promoted_at is not None]
    promoted = min((r.promoted_at for r in replaced if r.promoted_at is not None), default=None)
    if promoted is not None:
        if promoted > deleted_at:
            return None  # not deleted as a replaced secret (an I2 matter, checked apart)
        start, chain = promoted, [promoted, *(u for u in uses if u > promoted)]
    else:
        start, chain = uses[0], uses
    points = [*chain, deleted_at]
    if any(b - a >= quiet_ms - slack_ms for a, b in pairwise(points)):
        return None  # it was quiet for a whole quiet period at some point: fair
    since = "its promotion" if promoted is not None else "its first use"
    return (
        f"secret {truth.uuid} deleted {(deleted_at - chain[-1]) / 1000:.0f}s after a consumer's "
        f"last use, in use without a quiet period ({quiet_ms / 1000:.0f}s) since {since} "
        f"({(deleted_at - start) / 1000:.0f}s before); Adobe had shown "
        f"{_shown(truth.reported_last_used_at, deleted_at)}, hidden {truth.hidden or 'nothing'}"
    )


def _shown(reported: int | None, deleted_at: int) -> str:
    if reported is None:
        return "no use at all"
    return f"a use {(deleted_at - reported) / 1000:.0f}s before the deletion at the latest"


def oracle_problems(
    truths: Iterable[SecretTruth],
    rotations: Iterable[Any],
    quiet_ms: int,
    *,
    slack_ms: int = 0,
) -> list[str]:
    """Every oracle check on one credential's secrets; `rotations` as rows or records."""
    times = rotation_times(rotations)
    problems = []
    for truth in truths:
        if truth.deleted_while_current:
            problems.append(
                f"oracle: secret {truth.uuid} was deleted while AWSCURRENT held its value"
            )
        early = deleted_under_a_consumer(truth, times, quiet_ms, slack_ms=slack_ms)
        if early:
            problems.append(f"oracle: {early}")
    return problems
