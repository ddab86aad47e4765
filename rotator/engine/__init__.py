"""The engine: claim a rotation, run one step's effects through the ports, save under the fence.

Modules, one concept each: `driver` (Engine: requests, claim, drive, step, save),
`lease` (owner and heartbeat), `outcome` (what a step did), `context` (what a step sees),
`steps` (one function per state), `operator` (cancel, pre-emption, retry of needs_attention),
`deletes` (the single destroy gate), `survey` (read-only looks: list, adopt, survey).
"""

from rotator.engine.driver import MAX_STEPS_PER_DRIVE, Engine
from rotator.engine.lease import default_owner
from rotator.engine.outcome import Outcome

__all__ = ["MAX_STEPS_PER_DRIVE", "Engine", "Outcome", "default_owner"]
