"""`FakeClock`: time that moves only when a test moves it (set `now`, or `advance`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

#: Where every fake clock starts: a Monday morning, far from any host's real date.
START = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


class FakeClock:
    """A `Callable[[], datetime]` for the fakes, the store and the engine alike."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta
