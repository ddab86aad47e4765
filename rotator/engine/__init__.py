"""The engine: claim a rotation, run one step's effects through the ports, save under the fence.

It reaches the world only through `rotator.ports` (Adobe, AWS, the `RotationStore`) and
never imports an adapter (an import-linter contract says so). Its modules form a one-way
chain; each imports only those above it:

    outcome     what a step did (named constructors: advance, wait, finish, ...)
    lease       the owner's name and the heartbeat that keeps a lease
    context     what a step sees: config, policy, AWSCURRENT, the ports, the lease guard
    identify    which Adobe secret AWSCURRENT is, by construction only (I12)
    deletes     the single destroy gate
    steps       one function per state (intents, strays, planning, creating, promoting,
                draining, rolling_back; `steps.STEPS` maps states to them)
    operator    cancel, emergency pre-emption, retry of needs_attention, the successor
    survey      read-only looks outside a rotation: Adobe's list, adopt, survey
    driver      Engine: requests, claim, drive, step, save
    follow      work on (or watch) one rotation from the outside, as `rotator rotate` does
"""

from rotator.engine.driver import MAX_STEPS_PER_DRIVE, Engine
from rotator.engine.lease import default_owner
from rotator.engine.outcome import Outcome

__all__ = ["MAX_STEPS_PER_DRIVE", "Engine", "Outcome", "default_owner"]
