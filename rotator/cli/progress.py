"""What `rotate`, `cancel` and `resume`-style commands show while a rotation moves.

Two audiences. On a terminal, a person watching: each step as a line, and below it one
live line (rich) with the current step, the evidence (when the old and new secrets were
last used) and the drain deadline, refreshed in place, never a flood. Piped, a log or a
script: plain lines, one per change of state and at most one a minute while draining,
each with the deadline.
With `--json`: nothing while it moves, the final rotation as one JSON object.

Every string passes the redactor (`say`, or `redact` before rich sees it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from rotator import redaction
from rotator.cli.output import say, ts
from rotator.domain.machine import drain_deadline
from rotator.domain.model import Policy, Rotation, State

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.live import Live as RichLive


class Progress(Protocol):
    def step(self, rotation: Rotation) -> None:
        """The rotation changed state (or failed a step, or was retried)."""

    def poll(self, rotation: Rotation) -> None:
        """A draining poll recorded new evidence."""

    def note(self, text: str) -> None:
        """A one-off message (who else is working on it, an emergency pre-empting)."""

    def close(self) -> None: ...


def describe(rotation: Rotation) -> str:
    """One line for a step: `rotation N (trigger) of NAME: state — ...`."""
    parts = [
        f"rotation {rotation.id} ({rotation.trigger.value}) of {rotation.credential}: "
        f"{rotation.state.value}"
    ]
    if rotation.new_uuid and rotation.state in {State.STAGED, State.VERIFIED, State.PROMOTED}:
        parts.append(f"new secret {rotation.new_uuid}")
    if rotation.state is State.DRAINING and rotation.evidence:
        ev = rotation.evidence
        parts.append(
            f"old last used {ts(ev.old_last_used_at)}, "
            f"new last used {ts(ev.new_last_used_at)}, "
            f"next check {ts(rotation.next_attempt_at)}"
        )
    # A cancelled rotation's last error is what it needed before the cancel (with advice
    # such as "run `rotator cancel`" that is now done): not shown.
    if rotation.last_error and rotation.state is not State.CANCELLED:
        if rotation.state in {State.NEEDS_ATTENTION, State.FAILED}:
            parts.append(rotation.last_error)
        elif not rotation.state.terminal:  # a step failed and is retried when due
            parts.append(f"retry at {ts(rotation.next_attempt_at)}: {rotation.last_error}")
    return " — ".join(parts)


def deadlines(rotation: Rotation, policy: Policy | None) -> str:
    """When a draining rotation can delete the old secret, and when it would alert."""
    if policy is None or rotation.promoted_at is None or rotation.state is not State.DRAINING:
        return ""
    quiet = drain_deadline(rotation, rotation.evidence, policy)  # quiet_period + usage_lag
    alert = rotation.promoted_at + policy.max_drain
    return f"old secret deleted at {ts(quiet)} if unused until then (alert at {ts(alert)})"


def as_json(rotation: Rotation) -> dict[str, Any]:
    """The rotation as `--json` prints it (no secret values: a Rotation holds none)."""

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "id": rotation.id,
        "credential": rotation.credential,
        "trigger": rotation.trigger.value,
        "state": rotation.state.value,
        "resume_state": rotation.resume_state.value if rotation.resume_state else None,
        "actor": rotation.actor,
        "reason": rotation.reason,
        "old_uuid": rotation.old_uuid,
        "new_uuid": rotation.new_uuid,
        "created_at": iso(rotation.created_at),
        "promoted_at": iso(rotation.promoted_at),
        "finished_at": iso(rotation.finished_at),
        "next_attempt_at": iso(rotation.next_attempt_at),
        "attempts": rotation.attempts,
        "evidence": rotation.evidence.as_dict() if rotation.evidence else None,
        "last_error": rotation.last_error if rotation.state is not State.CANCELLED else None,
    }


class Plain:
    """Lines, for a pipe or a log: one per change of state (or of a step's error), and
    while draining at most one per `POLL_LINE_EVERY` when the evidence moved, so a log
    shows progress without a line per poll."""

    POLL_LINE_EVERY = 60.0  # seconds

    def __init__(self, policy: Policy | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._state: tuple[Any, ...] | None = None
        self._seen: tuple[Any, ...] | None = None
        self._said_at = float("-inf")

    def step(self, rotation: Rotation) -> None:
        state = (rotation.id, rotation.state, rotation.last_error)
        if state == self._state:  # a retry count or a wait: nothing new to say
            self.poll(rotation)
            return
        self._state = state
        self._say(rotation)

    def poll(self, rotation: Rotation) -> None:
        if rotation.state is not State.DRAINING or _evidence(rotation) == self._seen:
            return
        if self.clock() - self._said_at < self.POLL_LINE_EVERY:
            return
        self._say(rotation)

    def _say(self, rotation: Rotation) -> None:
        line = describe(rotation)
        if deadline := deadlines(rotation, self.policy):
            line += f" — {deadline}"
        say(line)
        self._seen = _evidence(rotation)
        self._said_at = self.clock()

    def note(self, text: str) -> None:
        say(text)

    def close(self) -> None:
        pass


class Quiet:
    """`--json`: nothing until the end."""

    def step(self, rotation: Rotation) -> None:
        pass

    def poll(self, rotation: Rotation) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class Live:
    """A terminal: step lines above one live line that rich redraws in place."""

    def __init__(self, policy: Policy | None) -> None:
        from rich.console import Console
        from rich.live import Live as RichLive

        self.policy = policy
        self.current: Rotation | None = None
        self.console = Console(highlight=False)
        self._live: RichLive = RichLive(
            _Line(self), console=self.console, refresh_per_second=2, transient=True
        )
        self._live.start()

    def step(self, rotation: Rotation) -> None:
        self.current = rotation
        self.console.print(redaction.redact(describe(rotation)), markup=False)

    def poll(self, rotation: Rotation) -> None:
        self.current = rotation

    def note(self, text: str) -> None:
        self.console.print(redaction.redact(text), markup=False)

    def close(self) -> None:
        self._live.stop()

    def line(self) -> str:
        rotation = self.current
        if rotation is None:
            return "starting…"
        text = f"{rotation.credential}: {rotation.state.value}"
        if rotation.evidence and rotation.state is State.DRAINING:
            ev = rotation.evidence
            text += (
                f" · old last used {ts(ev.old_last_used_at)}"
                f" · new last used {ts(ev.new_last_used_at)}"
            )
        if deadline := deadlines(rotation, self.policy):
            text += f" · {deadline}"
        if rotation.next_attempt_at and not rotation.state.terminal:
            wait = rotation.next_attempt_at - datetime.now(UTC)
            if wait > timedelta(seconds=1):
                text += f" · next check in {human(wait)}"
        return redaction.redact(text)


class _Line:
    """Rendered by rich on each refresh, so the countdown moves between polls."""

    def __init__(self, owner: Live) -> None:
        self.owner = owner

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.spinner import Spinner

        yield Spinner("dots", text=self.owner.line(), style="cyan")


def choose(*, as_json: bool, policy: Policy | None) -> Progress:
    """Quiet for --json, live on a terminal, plain lines otherwise."""
    if as_json:
        return Quiet()
    if sys.stdout.isatty():
        return Live(policy)
    return Plain(policy)


def _evidence(rotation: Rotation) -> tuple[Any, ...]:
    ev = rotation.evidence
    return (
        rotation.id,
        rotation.state,
        ev.old_last_used_at if ev else None,
        ev.new_last_used_at if ev else None,
    )


def human(delta: timedelta) -> str:
    """A wait, rounded for a glance: 45s, 12m, 3h05m, 4d."""
    seconds = int(delta.total_seconds())
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 5400:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d"
