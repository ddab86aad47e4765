"""Follow one rotation from the outside (`rotator rotate`, `cancel`, the demo): work on it
while this process holds its lease, watch while another does, and go on with the
emergency that follows a rotation it pre-empted (`operator.successor`, as the driver does).

Nothing here prints: what happens is told through the callbacks, and the CLI says it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from rotator.domain.model import Rotation, State
from rotator.engine import operator
from rotator.engine.driver import Engine

Seen = tuple[int, State, int, str | None]


def drains(rotation: Rotation) -> bool:
    """Draining with nothing asked of it: a rotate without --wait may leave it here."""
    return rotation.state is State.DRAINING and not (
        rotation.emergency_requested or rotation.cancel_requested
    )


class _Reporter:
    """Tells `show` of each new step and `on_poll` of each new draining evidence between."""

    def __init__(
        self, show: Callable[[Rotation], None], on_poll: Callable[[Rotation], None] | None
    ) -> None:
        self.show, self.on_poll = show, on_poll
        self.last_seen: Seen | None = None
        self.last_evidence: object = None

    def __call__(self, current: Rotation) -> None:
        seen = (current.id, current.state, current.attempts, current.last_error)
        if seen != self.last_seen:
            self.last_seen, self.last_evidence = seen, current.evidence
            self.show(current)
        elif self.on_poll is not None and current.evidence != self.last_evidence:
            self.last_evidence = current.evidence
            self.on_poll(current)


def follow(
    engine: Engine,
    rotation: Rotation,
    *,
    wait: bool,
    show: Callable[[Rotation], None],
    note: Callable[[str], None],
    poll: float = 1.0,
    deadline: float | None = None,
    on_poll: Callable[[Rotation], None] | None = None,
) -> Rotation:
    """Work on (or watch) a credential's rotation until it drains or ends.

    Whoever holds the lease does the work: if a daemon has it, this says so once (`note`)
    and watches, taking over only if the lease is let go (the daemon waits between
    draining polls, or it died and its lease ran out). When an emergency pre-empts a
    normal rotation, the emergency rotation that follows is followed. `show` hears of each
    step, `on_poll` of each new draining evidence in between.
    """
    store = engine.store
    report = _Reporter(show, on_poll)
    watched_owner: str | None = None
    report(rotation)
    asked_now = True  # the operator asked for this step now; later ones wait until due
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return rotation
        claim = engine.claim(rotation.id, due_only=not asked_now)
        asked_now = False
        if claim is not None:
            watched_owner = None
            rotation = engine.drive(claim, on_step=report, stop=lambda r: not wait and drains(r))
            report(rotation)
        else:
            lease = store.lease(rotation.id)
            rotation = store.get(rotation.id)
            if lease.owner and lease.owner not in {engine.owner, watched_owner}:
                watched_owner = lease.owner
                note(f"rotation {rotation.id} is being worked on by {lease.owner}; watching")
            report(rotation)
        if rotation.state.terminal:
            successor = operator.successor(store, rotation)
            if successor is not None:
                rotation = successor
                report(rotation)
                asked_now = True
                continue
            return rotation
        if rotation.state is State.NEEDS_ATTENTION or (not wait and drains(rotation)):
            return rotation
        time.sleep(_pause(rotation, poll, watching=watched_owner is not None))


def _pause(rotation: Rotation, poll: float, *, watching: bool) -> float:
    """Seconds until the next look: soon when watching another worker; when our own step
    is due otherwise (within 0.05 s to 30 s)."""
    if watching or rotation.next_attempt_at is None:
        return poll
    pause = (rotation.next_attempt_at - datetime.now(UTC)).total_seconds()
    return min(max(pause, 0.05), 30.0)
