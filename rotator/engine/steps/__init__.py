"""One function per state: read the world, make the step's effects, return an Outcome.

Each step reads the world (Adobe's list, AWS's labels) before it writes, so repeating a step
after a crash does nothing twice. The decisions themselves live in `rotator.domain.machine`.

Modules, in the order they import each other: `intents` (adds whose answer may be lost),
`strays` (secrets that are nobody's), `planning`, `creating`, `promoting` (verify and
promote), `draining` (drain and retire), `rolling_back`; this module only maps states.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from rotator.domain.model import Rotation, State
from rotator.engine.context import StepContext
from rotator.engine.outcome import Outcome
from rotator.engine.steps.creating import create
from rotator.engine.steps.draining import drain, retire
from rotator.engine.steps.planning import plan
from rotator.engine.steps.promoting import after_promotion, promote, verify
from rotator.engine.steps.rolling_back import roll_back

Step = Callable[[StepContext, Rotation, datetime], Outcome]

STEPS: dict[State, Step] = {
    State.PLANNED: plan,
    State.CREATING: create,
    State.STAGED: verify,
    State.VERIFIED: promote,
    State.PROMOTED: after_promotion,
    State.DRAINING: drain,
    State.RETIRING: retire,
    State.ROLLING_BACK: roll_back,
}

__all__ = [
    "STEPS",
    "Step",
    "after_promotion",
    "create",
    "drain",
    "plan",
    "promote",
    "retire",
    "roll_back",
    "verify",
]
