"""The pure judgment `rotator plan` and the daemon's tick share (rotator/domain/outlook.py),
and the piped progress lines of `rotate --wait` (rotator/cli/progress.py)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from rotator.cli.progress import Plain
from rotator.domain import outlook
from rotator.domain.evidence import Evidence
from rotator.domain.model import Policy, Rotation, State, Trigger
from rotator.domain.policy import Window

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday
POLICY = Policy(max_age=timedelta(days=90), failure_cooldown=timedelta(hours=6))


def _facts(age: timedelta | None = timedelta(days=91), **changes: object) -> outlook.Facts:
    values: dict[str, object] = {
        "secret_created_at": NOW - age if age is not None else None,
        "surveyed_at": NOW - timedelta(minutes=1),
        **changes,
    }
    return outlook.Facts(**values)  # type: ignore[arg-type]


def _hourly(after: datetime) -> datetime:
    return after.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def test_due_by_age_names_max_age_and_starts_on_the_next_tick() -> None:
    seen = outlook.judge("a", _facts(), None, outlook.Rules(POLICY), NOW)
    assert seen.due and seen.tick == "start" and not seen.holds
    assert seen.due_at == NOW - timedelta(days=1)
    assert seen.why[0].startswith("age: secret created") and "max_age 90d" in seen.why[0]


def test_not_due_says_when() -> None:
    seen = outlook.judge("a", _facts(timedelta(days=10)), None, outlook.Rules(POLICY), NOW)
    assert not seen.due and seen.tick == "wait"
    assert seen.due_at == seen.starts_at == NOW + timedelta(days=80)


def test_cron_comes_first_when_it_fires_before_max_age() -> None:
    rules = outlook.Rules(POLICY, schedule="0 * * * *", next_fire=_hourly)
    facts = _facts(timedelta(days=10), last_rotated_at=NOW - timedelta(minutes=5))
    seen = outlook.judge("a", facts, None, rules, NOW - timedelta(minutes=1))
    assert not seen.due and seen.due_at == NOW  # the first fire after the last rotation
    assert outlook.judge("a", facts, None, rules, NOW).due
    assert seen.why[0].startswith("cron '0 * * * *'") and "after the last rotation" in seen.why[0]


def test_a_window_moves_the_start_to_its_next_opening() -> None:
    window = Window(time(2), time(5), frozenset(range(5)))  # Mon-Fri 02:00-05:00
    seen = outlook.judge("a", _facts(), None, outlook.Rules(POLICY, window=window), NOW)
    assert not seen.due and [h.kind for h in seen.holds] == ["window"]
    assert seen.starts_at == datetime(2026, 12, 8, 2, 0, tzinfo=UTC)
    friday_night = datetime(2026, 12, 11, 23, 0, tzinfo=UTC)
    assert outlook.next_open(window, friday_night) == datetime(2026, 12, 14, 2, tzinfo=UTC)


def test_a_hold_and_a_cooldown_hold_it_back() -> None:
    held = _facts(held_at=NOW - timedelta(days=1), held_by="cli:ops", hold_reason="audit")
    seen = outlook.judge("a", held, None, outlook.Rules(POLICY), NOW)
    assert not seen.due and seen.starts_at is None
    assert "cli:ops (audit)" in seen.holds[0].text and "rotator resume" in seen.holds[0].text
    cooling = _facts(last_failed_at=NOW - timedelta(hours=1))
    seen = outlook.judge("a", cooling, None, outlook.Rules(POLICY), NOW)
    assert not seen.due and seen.starts_at == NOW + timedelta(hours=5)
    assert seen.holds[0].kind == "cooldown"


@pytest.mark.parametrize(
    ("facts", "survey"),
    [(None, True), (outlook.Facts(), True), (_facts(None), False)],
)
def test_unknown_age_is_not_surveyed_yet_or_age_unknown(
    facts: outlook.Facts | None, survey: bool
) -> None:
    seen = outlook.judge("a", facts, None, outlook.Rules(POLICY), NOW)
    assert not seen.due and seen.due_at is None and not seen.surveyed
    assert seen.survey is survey and seen.tick == ("survey" if survey else "wait")


def _draining(**changes: object) -> Rotation:
    base = Rotation(
        7,
        "a",
        Trigger.MANUAL,
        State.DRAINING,
        NOW - timedelta(hours=2),
        old_uuid="old-uuid",
        new_uuid="new-uuid",
        promoted_at=NOW - timedelta(hours=1),
        next_attempt_at=NOW + timedelta(minutes=10),
        evidence=Evidence(polled_at=NOW, old_last_used_at=NOW - timedelta(minutes=30)),
    )
    return base.evolve(**changes)


def test_a_draining_rotation_waits_for_its_quiet_deadline() -> None:
    seen = outlook.judge("a", _facts(), _draining(), outlook.Rules(POLICY), NOW)
    assert seen.tick == "wait" and not seen.due and seen.step is not None
    step = seen.step
    lag = POLICY.lag
    assert step.deadline == NOW - timedelta(minutes=30) + POLICY.quiet_period + lag
    assert step.alert_at == NOW - timedelta(hours=1) + POLICY.max_drain
    assert step.at == NOW + timedelta(minutes=10)
    assert step.waits_for is not None and "old-uuid" in step.waits_for
    due = outlook.judge("a", _facts(), _draining(next_attempt_at=NOW), outlook.Rules(POLICY), NOW)
    assert due.tick == "step" and due.step is not None and due.step.at is None


def test_requests_and_attention_choose_the_step() -> None:
    rules = outlook.Rules(POLICY)
    cancel = outlook.judge("a", _facts(), _draining(cancel_requested=True), rules, NOW)
    assert cancel.tick == "step" and cancel.step is not None
    assert "keep both secrets" in cancel.step.does
    staged = _draining(state=State.STAGED, promoted_at=None, cancel_requested=True)
    rollback = outlook.judge("a", _facts(), staged, rules, NOW).step
    assert rollback is not None and rollback.state is State.ROLLING_BACK
    attention = _draining(state=State.NEEDS_ATTENTION, resume_state=State.DRAINING)
    seen = outlook.judge("a", _facts(), attention, rules, NOW)
    assert [h.kind for h in seen.holds] == ["needs_attention"]
    assert seen.step is not None and seen.step.state is State.DRAINING
    emergency = _draining(state=State.RETIRING, trigger=Trigger.EMERGENCY)
    step = outlook.judge("a", _facts(), emergency, rules, NOW).step
    assert step is not None and any("every other secret" in call for call in step.adobe)


def test_piped_progress_says_each_state_once_and_polls_at_most_once_a_minute(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = [0.0]
    plain = Plain(POLICY, clock=lambda: clock[0])
    rotation = _draining(state=State.PROMOTED)
    plain.step(rotation)
    plain.step(rotation.evolve(attempts=1))  # same state: nothing new
    draining = _draining()
    plain.step(draining)
    for second in range(1, 120):  # a poll a second, each with new evidence
        clock[0] = second
        used = NOW + timedelta(seconds=second)
        ev = Evidence(polled_at=NOW, old_last_used_at=None, new_last_used_at=used)
        plain.poll(draining.evolve(evidence=ev))
    plain.step(draining.evolve(state=State.RETIRING))
    plain.poll(draining.evolve(state=State.RETIRING, evidence=Evidence(NOW, None)))
    lines = capsys.readouterr().out.splitlines()
    states = [line.split(": ")[1].split(" ")[0] for line in lines]
    assert states == ["promoted", "draining", "draining", "retiring"], lines


def test_an_age_a_promotion_recorded_needs_no_survey_to_be_judged() -> None:
    facts = _facts(timedelta(days=10), surveyed_at=None)
    seen = outlook.judge("a", facts, None, outlook.Rules(POLICY), NOW)
    assert seen.surveyed and not seen.holds and seen.survey  # surveyed, but not held for it
    assert seen.starts_at == NOW + timedelta(days=80)
