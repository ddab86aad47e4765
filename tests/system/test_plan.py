"""`rotator plan` through the installed command (issue 28): what rotator does next, and
when, per credential, changing nothing. (That it says what the daemon's tick then does is
tests/integration/test_plan_matches_tick.py.)"""

from __future__ import annotations

import json
from datetime import datetime

from tests.system.conftest import System


def test_plan_before_a_survey_and_while_draining(system: System) -> None:
    system.credential()
    assert system.rotator("db", "upgrade").code == 0

    fresh = system.rotator("plan")
    assert fresh.code == 0, fresh
    assert "analytics: due unknown" in fresh.out
    assert "not surveyed yet" in fresh.out
    assert "next tick: survey it" in fresh.out
    status = system.rotator("status")
    assert "due unknown (not surveyed yet)" in status.out, status

    assert system.rotator("rotate", "analytics").code == 0  # returns once draining
    events = len(system.events())
    ran = system.rotator("plan", "analytics", "--json")
    assert ran.code == 0, ran
    (seen,) = json.loads(ran.out)
    rotation = seen["rotation"]
    assert rotation["state"] == "draining"
    step = rotation["next_step"]
    assert step["state"] == "draining"
    assert any(call.startswith("GET ") for call in step["adobe"])
    assert step["aws"] == ["GetSecretValue AWSCURRENT"]
    assert rotation["old_uuid"] in step["waits_for"]
    (row,) = json.loads(system.rotator("status", "--json").out)
    # The deadline plan shows is the one status shows (the engine's own rule).
    assert datetime.fromisoformat(step["drain_deadline"]) == datetime.fromisoformat(
        row["rotation"]["drain_deadline"]
    )
    text = system.rotator("plan")
    assert "rotation 1 (manual) draining: next poll the old secret's use" in text.out, text
    assert "waits for the old secret" in text.out
    assert len(system.events()) == events  # plan wrote nothing: no audit event

    helped = system.rotator("plan", "--help")
    assert "It changes nothing" in helped.out
    assert "calls neither Adobe nor AWS" in helped.out
    bad = system.rotator("plan", "nope")
    assert bad.code == 2
    assert bad.err.strip().count("\n") == 0
    assert "unknown credential 'nope'" in bad.err
