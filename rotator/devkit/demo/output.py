"""What `rotator demo` shows: every line redacted and remembered (for the final leak check),
and each rotation as a live board on a terminal or one plain line per step in a pipe."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rotator.devkit.console import say
from rotator.devkit.demo.consumer import Consumer

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from rotator.domain.model import Rotation, State

__all__ = ["DOING", "Board", "Output"]


class Output:
    """Every line the demo prints: redacted, and remembered for the final leak check.

    On a terminal the rotations are drawn as live boards with `rich`; otherwise (a pipe, a
    CI log) each step is one plain line as it happens.
    """

    def __init__(self) -> None:
        from rich.console import Console

        probe = Console()
        self.console: Console | None = (
            Console(record=True, highlight=False)
            if probe.is_terminal and not probe.is_dumb_terminal
            else None
        )
        self._plain: list[str] = []

    @property
    def live(self) -> bool:
        return self.console is not None

    def line(self, text: str = "", *, style: str | None = None) -> None:
        from rotator import redaction

        text = redaction.redact(text)
        if self.console is not None:
            from rich.text import Text

            self.console.print(Text(text, style=style or ""), soft_wrap=True)
        else:
            self._plain.append(text)
            say(text)

    def printed(self) -> str:
        """All output so far (the live boards' frames included)."""
        recorded = self.console.export_text(clear=False) if self.console is not None else ""
        return "\n".join(self._plain) + "\n" + recorded

    @contextmanager
    def board(self, board: Board) -> Iterator[None]:
        if self.console is None:
            yield
            return
        from rich.live import Live

        with Live(board, console=self.console, refresh_per_second=10, transient=False):
            yield


DOING = {
    "planned": "requested",
    "creating": "planned: old secret and Adobe's list read, request token persisted",
    "staged": "new secret created at Adobe, put to AWS as AWSPENDING",
    "verified": "the new secret mints a token at Adobe",
    "promoted": "AWSCURRENT holds the new secret, AWSPREVIOUS the old; AWSPENDING removed",
    "draining": "waiting until no consumer has used the old secret for the quiet period",
    "retiring": "the old secret is quiet: deleting it at Adobe",
    "completed": "done",
}


class Board:
    """One rotation as a checklist of the states it passes, redrawn ten times a second."""

    def __init__(
        self, title: str, path: list[State], consumer: Consumer, phase: str, quiet: str
    ) -> None:
        self.title, self.path, self.consumer, self.phase = title, path, consumer, phase
        self.quiet = quiet
        self.started = time.monotonic()
        self.reached: dict[str, float] = {}
        self.rotation: Rotation | None = None

    def update(self, rotation: Rotation) -> None:
        self.rotation = rotation
        self.reached.setdefault(rotation.state.value, time.monotonic() - self.started)

    def uuids(self) -> dict[str, str]:
        r = self.rotation
        found = {"old": r.old_uuid if r else None, "new": r.new_uuid if r else None}
        return {k: v for k, v in found.items() if v}

    def detail(self, state: str) -> str:
        from rotator.domain.model import Trigger

        r = self.rotation
        if r is None:
            return DOING[state]
        if state == "planned":
            return f"requested ({r.trigger.value}) by {r.actor}"
        if state == "creating" and r.old_uuid:
            return f"planned: AWSCURRENT holds Adobe secret {r.old_uuid}; request token persisted"
        if state == "staged" and r.new_uuid:
            return f"new Adobe secret {r.new_uuid} put to AWS as AWSPENDING"
        if state == "draining":
            text = f"deleting the old secret after {self.quiet} without use"
            last = self.consumer.last_used.get(r.old_uuid or "")
            if r.state.value == "draining" and last is not None:
                text += f" (the consumer last used it {time.monotonic() - last:.1f}s ago)"
            return text
        if state == "retiring" and r.trigger is Trigger.EMERGENCY:
            return "emergency: deleting every other secret now, invalidating our old tokens"
        if state == "completed" and r.state.value == "completed":
            return f"done: Adobe lists only {r.new_uuid}"
        return DOING.get(state, state)

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        from rotator import redaction

        table = Table.grid(padding=(0, 1))
        table.add_column(width=2)
        table.add_column(justify="right", width=7)
        table.add_column(width=11)
        table.add_column()
        current = self.rotation.state.value if self.rotation else "planned"
        finished = self.rotation is not None and self.rotation.state.terminal
        for state in self.path:
            name = state.value
            at = self.reached.get(name)
            when = Text(f"+{at:.2f}s" if at is not None else "", style="dim")
            text = Text(redaction.redact(self.detail(name)))
            mark: RenderableType
            if name == current and not finished:
                mark = Spinner("dots", style="cyan")
            elif at is not None:
                mark = Text("✓", style="green")
            else:
                mark = Text("·", style="dim")
                text.stylize("dim")
            table.add_row(mark, when, Text(name, style="bold" if name == current else ""), text)
        if self.rotation is not None and self.rotation.state.value not in {
            s.value for s in self.path
        }:
            table.add_row(
                Text("!", style="red"),
                Text(""),
                Text(self.rotation.state.value, style="bold red"),
                Text(redaction.redact(self.rotation.last_error or "")),
            )
        consumer = Text(
            "consumer: " + self.consumer.describe(self.phase, self.uuids()), style="magenta"
        )
        return Group(Text(self.title, style="bold"), table, consumer)
