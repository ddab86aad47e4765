"""One-shot faults for the in-memory fakes: what goes wrong around one named call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rotator.domain.errors import TransientError


class Crash(BaseException):
    """The process died here (kill -9): nothing after this line of the step runs."""


@dataclass
class Armed:
    """A one-shot fault on the next call named `call`."""

    call: str
    phase: str  # "before" | "after" (after: the call took effect, its answer is lost)
    kind: str  # "transient" | "crash" | "action"
    action: Callable[[], None] | None = None  # kind "action": what the world does then


class Faults:
    """The faults armed on one fake, and those that fired (for the figures)."""

    def __init__(self) -> None:
        self.armed: list[Armed] = []
        self.fired: list[str] = []

    def arm(self, call: str, phase: str, kind: str) -> None:
        """A transient error or a crash, the next time `call` reaches `phase`."""
        self.armed.append(Armed(call, phase, kind))

    def arm_action(self, call: str, phase: str, action: Callable[[], None]) -> None:
        """Run `action` (another worker, a person) the next time `call` reaches `phase`;
        with "after", the call took effect and its answer is not back yet."""
        self.armed.append(Armed(call, phase, "action", action))

    def check(self, call: str, phase: str) -> None:
        for armed in self.armed:
            if armed.call == call and armed.phase == phase:
                self.armed.remove(armed)
                self.fired.append(f"{armed.kind} {call} {phase}")
                if armed.action is not None:
                    armed.action()
                    return
                if armed.kind == "crash":
                    raise Crash(f"crash {phase} {call}")
                raise TransientError(f"injected: {call} failed ({phase})", step=call)
