"""Which operator request the driver acts on, and what abandoning leaves (engine/operator.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rotator.domain import machine
from rotator.domain.model import Rotation, State, Trigger
from rotator.engine import operator

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
S = State


def rotation(state: State, trigger: Trigger = Trigger.SCHEDULED, **changes: object) -> Rotation:
    return Rotation(7, "analytics", trigger, state, T0, old_uuid="old").evolve(**changes)


@pytest.mark.parametrize("state", [s for s in State if not s.terminal])
def test_an_emergency_request_abandons_a_normal_rotation_in_any_unfinished_state(
    state: State,
) -> None:
    flagged = rotation(state, emergency_requested=True, cancel_requested=True)
    assert operator.request_for(flagged) == "abandon"
    machine.check_transition(state, S.ABANDONED)


def test_abandoning_names_what_is_left_behind_and_clears_the_resume_state() -> None:
    stuck = rotation(
        S.NEEDS_ATTENTION, resume_state=S.VERIFIED, new_uuid="new", request_token="tok"
    )
    outcome = operator.abandon(stuck, T0)
    assert outcome.state is S.ABANDONED and outcome.kind == "abandoned"
    assert outcome.changes == {"resume_state": None}
    assert outcome.detail["leaves"] == {"new_uuid": "new", "aws_pending_version": "tok"}


def test_a_cancel_is_acted_on_once_and_never_stops_a_retirement() -> None:
    assert operator.request_for(rotation(S.STAGED, cancel_requested=True)) == "cancel"
    assert operator.request_for(rotation(S.ROLLING_BACK, cancel_requested=True)) is None
    assert operator.request_for(rotation(S.RETIRING, cancel_requested=True)) is None
    assert operator.request_for(rotation(S.STAGED)) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"state": S.PROMOTED},
        {"state": S.NEEDS_ATTENTION, "resume_state": S.RETIRING},
        {"state": S.NEEDS_ATTENTION, "resume_state": S.PLANNED, "promoted_at": T0},
    ],
    ids=["promoted", "attention-retiring", "attention-after-promotion"],
)
def test_an_emergency_past_promotion_ignores_a_cancel(changes: dict[str, object]) -> None:
    emergency = rotation(S.PLANNED, Trigger.EMERGENCY, cancel_requested=True).evolve(**changes)
    assert machine.past_promotion(emergency)
    assert operator.request_for(emergency) is None


def test_an_emergency_before_promotion_can_be_cancelled() -> None:
    emergency = rotation(S.STAGED, Trigger.EMERGENCY, cancel_requested=True)
    assert not machine.past_promotion(emergency)
    assert operator.request_for(emergency) == "cancel"


def test_a_planned_rotation_cancels_at_once_unless_it_holds_an_abandoned_ones_leftovers() -> None:
    planned = rotation(S.PLANNED, cancel_requested=True)
    assert operator.cancel(None, planned, T0).state is S.CANCELLED  # type: ignore[arg-type]
    inherits = {"rotation_id": 6, "uuid": "left", "version_id": "tok-6"}
    follows = rotation(S.PLANNED, Trigger.EMERGENCY, cancel_requested=True).evolve(
        detail={"follows": 6, "inherits": inherits}
    )
    # the emergency was to delete what rotation 6 left: a cancel gives it back instead
    assert operator.cancel(None, follows, T0).state is S.ROLLING_BACK  # type: ignore[arg-type]
