"""Faults, holds and counters: the knobs a test turns on the fake Adobe.

Kept apart from the Adobe model (``state.py``, ``world.py``) because they describe the
*test run*, not Adobe: they are never saved to the state file, and each has its own small
vocabulary.
Every knob is addressed by endpoint name (:data:`ENDPOINTS`, or ``"*"`` for all) and
optionally by client id (the ``x-api-key`` of an API call, the ``client_id`` of an IMS
call), so a test can aim at one credential among a thousand.

Determinism: "fail the next N" is exact; a ``rate`` draws from its own ``random.Random``
seeded with ``seed``, so the same seed and request order give the same failures.
"""

from __future__ import annotations

import copy
import itertools
import random
import threading
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from rotator.devkit.sandbox.consistency import Consistency

__all__ = [
    "ANY_ENDPOINT",
    "API_ENDPOINTS",
    "ENDPOINTS",
    "IMS_ENDPOINTS",
    "FaultAction",
    "FaultPlan",
    "FaultRule",
    "Hold",
    "Phase",
]

JSON = dict[str, Any]
Phase = Literal["before", "after"]
FaultAction = Literal["error", "drop"]

#: Names used for counters, faults and holds. The first five are IMS, the rest the API.
IMS_ENDPOINTS: Final = ("token", "jwt_exchange", "revoke", "invalidate", "logout")
API_ENDPOINTS: Final = ("list_secrets", "add_secret", "delete_secret")
ENDPOINTS: Final = IMS_ENDPOINTS + API_ENDPOINTS
ANY_ENDPOINT: Final = "*"


@dataclass
class FaultRule:
    """Fail matching requests: the next ``remaining`` of them, each with probability ``rate``.

    ``phase="after"`` lets the request take effect first (a secret really is created) and
    then fails the answer, which is how a lost response looks to a client.
    """

    id: str
    endpoint: str
    action: FaultAction
    status: int
    phase: Phase
    rate: float
    remaining: int | None
    seed: int | None
    client_id: str | None
    retry_after_s: float | None
    fired: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def view(self) -> JSON:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "action": self.action,
            "status": self.status,
            "phase": self.phase,
            "rate": self.rate,
            "remaining": self.remaining,
            "seed": self.seed,
            "client_id": self.client_id,
            "retry_after_s": self.retry_after_s,
            "fired": self.fired,
        }


@dataclass
class Latency:
    ms: float
    jitter_ms: float
    rng: random.Random = field(default_factory=random.Random, repr=False)


@dataclass
class Hold:
    """Park the next matching request until a test releases it (or ``timeout_s`` passes).

    Events are threading primitives so both the server's event loop (which polls) and a
    test thread (which may block) can wait on them.
    """

    id: str
    endpoint: str
    phase: Phase
    client_id: str | None
    timeout_s: float
    status: Literal["armed", "held", "released", "timed_out"] = "armed"
    drop: bool = False
    held_event: threading.Event = field(default_factory=threading.Event, repr=False)
    released_event: threading.Event = field(default_factory=threading.Event, repr=False)

    def view(self) -> JSON:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "phase": self.phase,
            "client_id": self.client_id,
            "timeout_s": self.timeout_s,
            "status": self.status,
        }


@dataclass
class EndpointCounter:
    requests: int = 0
    responses: dict[str, int] = field(default_factory=dict)
    faults: int = 0

    def view(self) -> JSON:
        return {"requests": self.requests, "responses": dict(self.responses), "faults": self.faults}


class FaultPlan:
    """Everything a test has armed, plus what the server has counted, behind one lock.

    :attr:`consistency` (lags, acceptance delay, omissions, usage regressions, add status;
    ``consistency.py``) is read by the Adobe model; the rest is consulted by the HTTP
    layer around each request.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._fault_ids = itertools.count(1)
        self._rules: list[FaultRule] = []
        self._latency: dict[str, Latency] = {}
        #: Eventual-consistency switches (``consistency.py``), cleared with the faults.
        self.consistency = Consistency()
        self._holds: dict[str, Hold] = {}
        self._counters = {name: EndpointCounter() for name in ENDPOINTS}
        self.in_flight = 0
        self.max_in_flight = 0

    def reset(self) -> None:
        """No faults, no holds (held requests go on), zero counters."""
        with self._lock:
            self.clear_holds()
            self.clear_faults()
            self._fault_ids = itertools.count(1)
            self._counters = {name: EndpointCounter() for name in ENDPOINTS}
            self.max_in_flight = self.in_flight

    def add(
        self,
        endpoint: str,
        *,
        action: FaultAction = "error",
        status: int = 503,
        count: int | None = None,
        rate: float = 1.0,
        seed: int | None = None,
        phase: Phase = "before",
        client_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> str:
        """Arm a fault; ``count=None`` means "until removed". Returns the rule id."""
        _check_endpoint(endpoint, allow_any=True)
        if action not in ("error", "drop"):
            raise ValueError("action must be error or drop")
        if action == "error" and not (status == 429 or 500 <= status <= 599):
            raise ValueError("an injected error must be 429 or 5xx")
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1")
        if phase not in ("before", "after"):
            raise ValueError("phase must be before or after")
        if status == 429 and retry_after_s is None:
            retry_after_s = 1.0
        with self._lock:
            rule = FaultRule(
                id=f"fault-{next(self._fault_ids)}",
                endpoint=endpoint,
                action=action,
                status=status,
                phase=phase,
                rate=rate,
                remaining=count,
                seed=seed,
                client_id=client_id,
                retry_after_s=retry_after_s,
                rng=random.Random(seed),
            )
            self._rules.append(rule)
            return rule.id

    def remove(self, rule_id: str) -> None:
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            if len(self._rules) == before:
                raise LookupError(f"no fault {rule_id}")

    def set_latency(
        self, endpoint: str, ms: float, jitter_ms: float = 0.0, seed: int | None = None
    ) -> None:
        """Add ``ms`` (+ uniform jitter) to an endpoint, or to all with ``"*"``; 0 removes."""
        _check_endpoint(endpoint, allow_any=True)
        if ms < 0 or jitter_ms < 0:
            raise ValueError("latency cannot be negative")
        with self._lock:
            if ms == 0 and jitter_ms == 0:
                self._latency.pop(endpoint, None)
            else:
                self._latency[endpoint] = Latency(ms, jitter_ms, random.Random(seed))

    def set_timing(
        self,
        *,
        usage_lag_ms: int | None = None,
        accept_delay_ms: int | None = None,
        usage_lag_jitter_ms: int | None = None,
        client_id: str | None = None,
        seed: int | None = None,
    ) -> None:
        """Adobe's eventual consistency: uses show late (plus a per-use jitter); new secrets
        are accepted late. For one client id, or everyone (``client_id`` None)."""
        self.consistency.set_timing(
            client_id=client_id,
            usage_lag_ms=usage_lag_ms,
            usage_lag_jitter_ms=usage_lag_jitter_ms,
            accept_delay_ms=accept_delay_ms,
            seed=seed,
        )

    @property
    def usage_lag_ms(self) -> int:
        """The lag set for everyone (without jitter), as ``set_timing`` left it."""
        return int(self.consistency.view()["timing"].get("*", {}).get("usage_lag_ms") or 0)

    @property
    def accept_delay_ms(self) -> int:
        """The acceptance delay set for everyone."""
        return int(self.consistency.view()["timing"].get("*", {}).get("accept_delay_ms") or 0)

    def clear_faults(self) -> None:
        """Drop fault rules, latency, timing and consistency switches (holds are separate)."""
        with self._lock:
            self._rules.clear()
            self._latency.clear()
            self.consistency.clear()

    def view(self) -> JSON:
        with self._lock:
            return {
                "rules": [r.view() for r in self._rules],
                "latency": {
                    k: {"ms": v.ms, "jitter_ms": v.jitter_ms} for k, v in self._latency.items()
                },
                "usage_lag_ms": self.usage_lag_ms,
                "accept_delay_ms": self.accept_delay_ms,
                "consistency": self.consistency.view(),
            }

    def latency_s(self, endpoint: str) -> float:
        """Seconds to sleep before handling a request (global plus per-endpoint)."""
        with self._lock:
            total = 0.0
            for key in (ANY_ENDPOINT, endpoint):
                rule = self._latency.get(key)
                if rule is not None:
                    total += rule.ms + (
                        rule.rng.uniform(0, rule.jitter_ms) if rule.jitter_ms else 0
                    )
            return total / 1000

    def take(self, endpoint: str, client_id: str | None, phase: Phase) -> FaultRule | None:
        """The first armed rule that fires for this request, if any (consumes a count)."""
        with self._lock:
            for rule in self._rules:
                if rule.phase != phase or rule.endpoint not in (ANY_ENDPOINT, endpoint):
                    continue
                if rule.client_id is not None and rule.client_id != client_id:
                    continue
                if rule.rate < 1.0 and rule.rng.random() >= rule.rate:
                    continue
                rule.fired += 1
                self._counters[endpoint].faults += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                return copy.copy(rule)
            return None

    # ------------------------------------------------------------------ holds

    def arm_hold(
        self,
        endpoint: str,
        phase: Phase = "before",
        *,
        client_id: str | None = None,
        timeout_s: float = 30.0,
    ) -> Hold:
        """Catch the next matching request. ``phase="after"``: its effect happens first."""
        _check_endpoint(endpoint, allow_any=False)
        if phase not in ("before", "after"):
            raise ValueError("phase must be before or after")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        with self._lock:
            hold = Hold(f"hold-{uuidlib.uuid4().hex[:12]}", endpoint, phase, client_id, timeout_s)
            self._holds[hold.id] = hold
            return hold

    def catch_hold(self, endpoint: str, client_id: str | None, phase: Phase) -> Hold | None:
        with self._lock:
            for hold in self._holds.values():
                if (
                    hold.status == "armed"
                    and hold.endpoint == endpoint
                    and hold.phase == phase
                    and (hold.client_id is None or hold.client_id == client_id)
                ):
                    hold.status = "held"
                    hold.held_event.set()
                    return hold
            return None

    def hold(self, hold_id: str) -> Hold:
        with self._lock:
            try:
                return self._holds[hold_id]
            except KeyError:
                raise LookupError(f"no hold {hold_id}") from None

    def holds_view(self) -> list[JSON]:
        with self._lock:
            return [h.view() for h in self._holds.values()]

    def release(self, hold_id: str, *, drop: bool = False) -> None:
        """Let a held request go on (or drop its connection); disarms a hold not yet hit."""
        with self._lock:
            hold = self.hold(hold_id)
            hold.drop = drop
            if hold.status in ("armed", "held"):
                hold.status = "released"
            hold.released_event.set()

    def expire_hold(self, hold: Hold) -> None:
        with self._lock:
            if hold.status == "held":
                hold.status = "timed_out"

    def release_all_holds(self) -> None:
        """Free every held request and every waiter (reset, shutdown): nothing may hang."""
        with self._lock:
            for hold in self._holds.values():
                if hold.status in ("armed", "held"):
                    hold.status = "released"
                hold.released_event.set()
                hold.held_event.set()

    def clear_holds(self) -> None:
        with self._lock:
            self.release_all_holds()
            self._holds.clear()

    # ------------------------------------------------------------------ counters

    def begin_request(self, endpoint: str) -> None:
        with self._lock:
            self._counters[endpoint].requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end_request(self, endpoint: str, outcome: str) -> None:
        """``outcome`` is the status code as text, or ``"dropped"``."""
        with self._lock:
            responses = self._counters[endpoint].responses
            responses[outcome] = responses.get(outcome, 0) + 1
            self.in_flight -= 1

    def counters(self) -> JSON:
        with self._lock:
            return {
                "endpoints": {name: c.view() for name, c in self._counters.items()},
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
            }

    def reset_counters(self) -> None:
        with self._lock:
            self._counters = {name: EndpointCounter() for name in ENDPOINTS}
            self.max_in_flight = self.in_flight


def _check_endpoint(endpoint: str, *, allow_any: bool) -> None:
    if endpoint in ENDPOINTS or (allow_any and endpoint == ANY_ENDPOINT):
        return
    choices = ", ".join(ENDPOINTS) + (", *" if allow_any else "")
    raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {choices}")
