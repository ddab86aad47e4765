"""Eventual consistency: the answers a real, replicated Adobe may give, as switches.

Adobe documents none of this, and a client must survive all of it, so each is a switch a
test turns on, for every credential or for one (``client_id``), for the next ``count``
answers (or until removed), each with probability ``rate`` drawn from its own seeded
``random.Random`` (the same seed and request order give the same answers):

``usage lag`` (:meth:`Consistency.set_timing`)
    a use shows in ``last_used_at`` ``usage_lag_ms`` late, plus a uniform draw from
    ``[0, usage_lag_jitter_ms]`` per use (minutes to hours, like a batch pipeline);
``accept delay`` (:meth:`Consistency.set_timing`)
    IMS refuses a new secret (``invalid_client``) for ``accept_delay_ms`` after the API
    created it;
``omission`` (:meth:`Consistency.omit`)
    a list answer leaves a secret out: the one named by ``uuid``, or one drawn at random
    from those listed (``uuid`` None);
``usage regression`` (:meth:`Consistency.distort_usages`)
    a list answer shows a secret's ``secret_usages`` as ``null`` (``mode="null"``), or as
    a replica ``stale_ms`` behind would (``mode="stale"``: the uses visible then; ``null``
    if none was);
``lingering`` (:meth:`Consistency.linger`)
    a deleted secret is still listed (as it was) in the next ``answers`` list answers;
``add status`` (:meth:`Consistency.set_add_status`)
    an add answered ``200``, ``201`` or ``202``, each with the full body.

Adobe's own clock is the sandbox clock (:meth:`SandboxState.set_clock_offset`, admin
``PUT /sandbox/clock``): an offset skews Adobe against the host and the database, and every time
the sandbox reports (``created_at``, ``last_used_at``) and its ``Date`` header follow it.
Every switch above lasts ``count`` answers or, with no count, until removed: longer than
any ``usage_lag`` or ``max_drain`` a client is told, if a test wants it so.

The truth (every real use and deletion) is kept by :mod:`rotator.devkit.sandbox.oracle`, never
touched by these switches. Names are listed in :data:`SWITCHES`; each is reachable through
the admin API and :class:`~rotator.devkit.sandbox.client.SandboxAdmin`.
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "ADD_STATUSES",
    "SWITCHES",
    "Consistency",
    "Distortion",
    "Omission",
    "UsageMode",
]

JSON = dict[str, Any]
UsageMode = Literal["null", "stale"]
ADD_STATUSES: Final = (200, 201, 202)
SWITCHES: Final = (
    "usage_lag",
    "accept_delay",
    "omission",
    "usage_regression",
    "lingering",
    "add_status",
)
_EVERYONE: Final = "*"


@dataclass
class _Rule:
    id: str
    client_id: str | None
    uuid: str | None
    remaining: int | None
    rate: float
    seed: int | None
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def matches(self, client_id: str, uuid: str | None = None) -> bool:
        if self.client_id is not None and self.client_id != client_id:
            return False
        return uuid is None or self.uuid is None or self.uuid == uuid

    def fires(self) -> bool:
        """Draw (for a rate below 1) and, when it fires, count it down."""
        if self.rate < 1.0 and self.rng.random() >= self.rate:
            return False
        self.fired += 1
        if self.remaining is not None:
            self.remaining -= 1
        return True

    @property
    def spent(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def base_view(self) -> JSON:
        return {
            "id": self.id,
            "client_id": self.client_id,
            "uuid": self.uuid,
            "remaining": self.remaining,
            "rate": self.rate,
            "seed": self.seed,
            "fired": self.fired,
        }


@dataclass
class Omission(_Rule):
    """Leave a secret out of the next list answers."""

    def view(self) -> JSON:
        return {**self.base_view(), "switch": "omission"}


@dataclass
class Distortion(_Rule):
    """Show a secret's usages as ``null`` or as stale in the next list answers."""

    mode: UsageMode = "null"
    stale_ms: int = 0

    def view(self) -> JSON:
        return {
            **self.base_view(),
            "switch": "usage_regression",
            "mode": self.mode,
            "stale_ms": self.stale_ms,
        }


@dataclass
class Lingering(_Rule):
    """Keep listing a deleted secret for ``answers`` more list answers."""

    answers: int = 1

    def view(self) -> JSON:
        return {**self.base_view(), "switch": "lingering", "answers": self.answers}


@dataclass
class _Timing:
    """One client's (or everyone's) values; None: not set here, everyone's applies."""

    usage_lag_ms: int | None = None
    usage_lag_jitter_ms: int | None = None
    accept_delay_ms: int | None = None
    add_status: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def view(self) -> JSON:
        return {
            "usage_lag_ms": self.usage_lag_ms,
            "usage_lag_jitter_ms": self.usage_lag_jitter_ms,
            "accept_delay_ms": self.accept_delay_ms,
            "add_status": self.add_status,
        }


def _check_rule(count: int | None, rate: float) -> None:
    if count is not None and count < 1:
        raise ValueError("count must be at least 1")
    if not 0.0 <= rate <= 1.0:
        raise ValueError("rate must be within [0, 1]")


class Consistency:
    """The eventual-consistency switches of one sandbox, behind one lock."""

    def __init__(self, ids: itertools.count[int] | None = None) -> None:
        self._lock = threading.RLock()
        self._ids = ids or itertools.count(1)
        self._omissions: list[Omission] = []
        self._distortions: list[Distortion] = []
        self._lingering: list[Lingering] = []
        self._timing: dict[str, _Timing] = {}

    def clear(self) -> None:
        with self._lock:
            self._omissions.clear()
            self._distortions.clear()
            self._lingering.clear()
            self._timing.clear()

    # ------------------------------------------------------------------ arming

    def set_timing(
        self,
        *,
        client_id: str | None = None,
        usage_lag_ms: int | None = None,
        usage_lag_jitter_ms: int | None = None,
        accept_delay_ms: int | None = None,
        seed: int | None = None,
    ) -> None:
        """Lag and acceptance delay for one client id (or everyone); None leaves a value."""
        for name, value in (
            ("usage_lag_ms", usage_lag_ms),
            ("usage_lag_jitter_ms", usage_lag_jitter_ms),
            ("accept_delay_ms", accept_delay_ms),
        ):
            if value is not None and value < 0:
                raise ValueError(f"{name} cannot be negative")
        with self._lock:
            timing = self._timing.setdefault(client_id or _EVERYONE, _Timing())
            if seed is not None:
                timing.rng = random.Random(seed)
            if usage_lag_ms is not None:
                timing.usage_lag_ms = usage_lag_ms
            if usage_lag_jitter_ms is not None:
                timing.usage_lag_jitter_ms = usage_lag_jitter_ms
            if accept_delay_ms is not None:
                timing.accept_delay_ms = accept_delay_ms

    def set_add_status(self, status: int | None, *, client_id: str | None = None) -> None:
        """Answer adds with ``status`` (200, 201 or 202); None returns to the setting."""
        if status is not None and status not in ADD_STATUSES:
            raise ValueError("add_status must be 200, 201 or 202")
        with self._lock:
            self._timing.setdefault(client_id or _EVERYONE, _Timing()).add_status = status

    def omit(
        self,
        *,
        client_id: str | None = None,
        uuid: str | None = None,
        count: int | None = None,
        rate: float = 1.0,
        seed: int | None = None,
    ) -> str:
        """Leave ``uuid`` (None: a random listed secret) out of the next list answers."""
        _check_rule(count, rate)
        with self._lock:
            rule = Omission(
                id=f"omission-{next(self._ids)}",
                client_id=client_id,
                uuid=uuid,
                remaining=count,
                rate=rate,
                seed=seed,
                rng=random.Random(seed),
            )
            self._omissions.append(rule)
            return rule.id

    def distort_usages(
        self,
        *,
        mode: UsageMode = "null",
        stale_ms: int = 0,
        client_id: str | None = None,
        uuid: str | None = None,
        count: int | None = None,
        rate: float = 1.0,
        seed: int | None = None,
    ) -> str:
        """Show ``secret_usages`` as null, or ``stale_ms`` behind, in the next list answers."""
        _check_rule(count, rate)
        if mode not in ("null", "stale"):
            raise ValueError("mode must be null or stale")
        if stale_ms < 0:
            raise ValueError("stale_ms cannot be negative")
        if mode == "stale" and stale_ms == 0:
            raise ValueError("a stale answer needs stale_ms > 0")
        with self._lock:
            rule = Distortion(
                id=f"usages-{next(self._ids)}",
                client_id=client_id,
                uuid=uuid,
                remaining=count,
                rate=rate,
                seed=seed,
                rng=random.Random(seed),
                mode=mode,
                stale_ms=stale_ms,
            )
            self._distortions.append(rule)
            return rule.id

    def linger(
        self,
        *,
        answers: int = 1,
        client_id: str | None = None,
        count: int | None = None,
        rate: float = 1.0,
        seed: int | None = None,
    ) -> str:
        """The next ``count`` deletions (each with probability ``rate``) leave the deleted
        secret listed, as it was, in the next ``answers`` list answers."""
        _check_rule(count, rate)
        if answers < 1:
            raise ValueError("answers must be at least 1")
        with self._lock:
            rule = Lingering(
                id=f"lingering-{next(self._ids)}",
                client_id=client_id,
                uuid=None,
                remaining=count,
                rate=rate,
                seed=seed,
                rng=random.Random(seed),
                answers=answers,
            )
            self._lingering.append(rule)
            return rule.id

    def remove(self, rule_id: str) -> bool:
        """Disarm an omission, a usage regression or a lingering; False if none is armed."""
        with self._lock:
            before = len(self._omissions) + len(self._distortions) + len(self._lingering)
            self._omissions = [r for r in self._omissions if r.id != rule_id]
            self._distortions = [r for r in self._distortions if r.id != rule_id]
            self._lingering = [r for r in self._lingering if r.id != rule_id]
            after = len(self._omissions) + len(self._distortions) + len(self._lingering)
            return after != before

    # ------------------------------------------------------------------ consulted by the model

    def _value(self, client_id: str, name: str) -> tuple[Any, _Timing | None]:
        """A timing value: the client's if set, else everyone's; with the rng to draw from."""
        for key in (client_id, _EVERYONE):
            timing = self._timing.get(key)
            if timing is not None and getattr(timing, name) is not None:
                return getattr(timing, name), timing
        return None, None

    def usage_lag_ms(self, client_id: str) -> int:
        """How late the use being recorded now will show (a fresh jitter draw per use)."""
        with self._lock:
            lag, _ = self._value(client_id, "usage_lag_ms")
            jitter, timing = self._value(client_id, "usage_lag_jitter_ms")
            drawn = timing.rng.randint(0, jitter) if timing is not None and jitter else 0
            return int(lag or 0) + drawn

    def accept_delay_ms(self, client_id: str) -> int | None:
        """The acceptance delay for a secret added now; None when no switch is set."""
        with self._lock:
            delay, _ = self._value(client_id, "accept_delay_ms")
            return None if delay is None else int(delay)

    def add_status(self, client_id: str) -> int | None:
        with self._lock:
            status, _ = self._value(client_id, "add_status")
            return None if status is None else int(status)

    def omissions(self, client_id: str, listed: list[str]) -> set[str]:
        """The uuids to leave out of this list answer (each firing rule counts down)."""
        with self._lock:
            left_out: set[str] = set()
            for rule in list(self._omissions):
                if not rule.matches(client_id) or not listed:
                    continue
                if rule.uuid is not None and rule.uuid not in listed:
                    continue
                if not rule.fires():
                    continue
                left_out.add(rule.uuid or rule.rng.choice(listed))
                if rule.spent:
                    self._omissions.remove(rule)
            return left_out

    def distortion(self, client_id: str, uuid: str) -> Distortion | None:
        """The rule that distorts this secret's usages in this answer, if one fires."""
        with self._lock:
            for rule in list(self._distortions):
                if rule.matches(client_id, uuid) and rule.fires():
                    if rule.spent:
                        self._distortions.remove(rule)
                    return rule
            return None

    def lingering_answers(self, client_id: str) -> int:
        """For a deletion happening now: how many more answers list the deleted secret."""
        with self._lock:
            for rule in list(self._lingering):
                if rule.matches(client_id) and rule.fires():
                    if rule.spent:
                        self._lingering.remove(rule)
                    return rule.answers
            return 0

    def view(self) -> JSON:
        with self._lock:
            return {
                "timing": {k: t.view() for k, t in self._timing.items()},
                "omissions": [r.view() for r in self._omissions],
                "usage_regressions": [r.view() for r in self._distortions],
                "lingering": [r.view() for r in self._lingering],
            }
