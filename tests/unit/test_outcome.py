"""What a step did is written by name, and a wrong combination cannot be (engine/outcome.py)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from rotator.domain.errors import InvariantError
from rotator.domain.events import EventKind
from rotator.domain.model import CredentialUpdate, State
from rotator.engine.outcome import Outcome

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_an_ending_neither_goes_on_nor_waits() -> None:
    with pytest.raises(InvariantError):
        Outcome.advance(State.COMPLETED, EventKind.COMPLETED)
    with pytest.raises(InvariantError):
        Outcome.wait(State.FAILED, EventKind.ROLLED_BACK, until=T0)
    with pytest.raises(InvariantError):
        Outcome.finish(State.DRAINING, EventKind.POLL, detail={})


def test_needs_attention_is_entered_only_by_asking_with_a_time_to_look_again() -> None:
    with pytest.raises(InvariantError):
        Outcome.advance(State.NEEDS_ATTENTION, EventKind.NEEDS_ATTENTION)
    asked = Outcome.attention("why", resume=State.DRAINING, wait_until=T0, detail={"a": 1})
    assert asked.changes == {"last_error": "why", "resume_state": State.DRAINING}
    assert asked.detail == {"a": 1, "why": "why"} and asked.wait_until == T0


def test_an_outcome_is_frozen_and_changed_only_into_a_new_one() -> None:
    waiting = Outcome.wait(State.DRAINING, EventKind.POLL, until=T0, changes={"attempts": 2})
    with pytest.raises(dataclasses.FrozenInstanceError):
        waiting.state = State.NEEDS_ATTENTION  # type: ignore[misc]
    blocked = waiting.still_asking(State.DRAINING)
    assert blocked.state is State.NEEDS_ATTENTION and waiting.state is State.DRAINING
    assert blocked.changes == {"resume_state": State.DRAINING, "attempts": 2}
    assert waiting.with_defaults(attempts=0, last_error=None).changes == {
        "attempts": 2,
        "last_error": None,
    }
    assert waiting.with_changes(attempts=0).changes == {"attempts": 0}


def test_event_kinds_are_the_stored_strings() -> None:
    assert EventKind.STRAYS_WAIT == "strays_wait" and f"{EventKind.POLL}" == "poll"
    assert len({k.value for k in EventKind}) == len(EventKind)


def test_a_credential_update_writes_the_binding_whole_and_only_what_it_names() -> None:
    assert CredentialUpdate.bound("u", "v").columns() == {
        "current_uuid": "u",
        "current_version": "v",
    }
    promoted = CredentialUpdate.promoted(None, "v", at=T0, secret_created_at=T0)
    assert promoted.columns() == {
        "current_uuid": None,  # a binding is replaced whole, never half of it (I12)
        "current_version": "v",
        "last_rotated_at": T0,
        "secret_created_at": T0,
        "last_error": None,
    }
    assert CredentialUpdate().failed_at(T0).columns() == {"last_failed_at": T0}
