"""`rotator status` shows when a draining rotation may delete the old secret (issue 11)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from tests.system.conftest import System


def test_status_shows_the_effective_drain_deadline_with_usage_lag(system: System) -> None:
    system.credential()
    assert system.rotator("db", "upgrade").code == 0
    ran = system.rotator("rotate", "analytics")  # returns once the rotation is draining
    assert ran.code == 0, ran

    (row,) = json.loads(system.rotator("status", "--json").out)
    rotation = row["rotation"]
    assert rotation["state"] == "draining"
    deadline = datetime.fromisoformat(rotation["drain_deadline"])
    history = json.loads(system.rotator("history", "--json").out)
    promoted = datetime.fromisoformat(next(e["at"] for e in history if e["kind"] == "promoted"))
    # quiet_period 2s (tests/system/conftest.py), usage_lag unset: a tenth of it; the
    # promoted event is written a moment after the step that set promoted_at began.
    assert abs(deadline - promoted - timedelta(seconds=2.2)) < timedelta(seconds=0.5)
    polls = [e for e in history if e["detail"].get("deadline")]
    if polls:  # the engine judged by the same deadline that status shows
        assert datetime.fromisoformat(polls[0]["detail"]["deadline"]) == deadline
    line = system.rotator("status").out
    assert "old secret deleted at" in line
