"""The oracle: what really happened at the fake Adobe, whatever its answers said.

A real Adobe is eventually consistent: ``last_used_at`` shows late, a list may leave a
secret out, an answer may come from a replica that has not seen the last uses. A test
that only looks at the answers can be fooled the same way the rotator can. So the sandbox
records the truth beside its answers, and tests judge the rotator against the truth:

* every **use** of every secret (a token minted with it), the instant it happened, and
  who asked (``source``: ``"http"`` for a request on the token endpoint, ``"consumer"``
  for a consumer a test drives through :meth:`SandboxState.consume` or
  ``mint_client_credentials(..., source="consumer")``);
* every **refusal** of a value that is, or was, one of the credential's secrets (deleted,
  or not accepted yet), with the secret's uuid;
* every **deletion**, with the secret's true last use at that instant, and whether the
  value deleted was the one the credential's watched AWSCURRENT held at that instant
  (:meth:`Oracle.watch_current`: a test registers a function that reads it);
* every **report**: the latest ``last_used_at`` each list answer showed for each secret,
  and how many answers hid it (left it out, showed ``null``, showed an older time).

Times are epoch milliseconds of the clock of whoever records (the sandbox's own clock, or
the fake clock of an in-memory world): the oracle itself has no clock. It is about one
test run: never saved, emptied by ``reset``. Uses per secret are kept in full up to
:data:`MAX_USES` (then only the newest), enough for any test and bounded for benchmarks.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = ["MAX_USES", "Oracle", "SecretTruth", "UseSource"]

JSON = dict[str, Any]
UseSource = Literal["http", "consumer", "rotator"]
MAX_USES: Final = 20_000


@dataclass
class SecretTruth:
    """Everything the oracle knows about one secret."""

    credential_id: str
    uuid: str
    created_at: int
    created_by: str  # "api" (an add through the Management API), "admin", "seed"
    uses: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=MAX_USES))
    use_count: int = 0
    refusals: list[tuple[int, str, str]] = field(default_factory=list)  # (at, reason, source)
    deleted_at: int | None = None
    deleted_by: str | None = None  # "api" | "admin"
    deleted_while_current: bool = False
    reported_last_used_at: int | None = None  # the latest time any answer showed
    answers: int = 0  # list answers that named it
    hidden: dict[str, int] = field(default_factory=dict)  # omitted / null / stale -> count

    def last_use(self, source: str | None = None) -> int | None:
        for at, who in reversed(self.uses):
            if source is None or who == source:
                return at
        return None

    def view(self) -> JSON:
        return {
            "credential_id": self.credential_id,
            "uuid": self.uuid,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "uses": [{"at": at, "source": who} for at, who in self.uses],
            "use_count": self.use_count,
            "last_used_at": self.last_use(),
            "last_consumer_use_at": self.last_use("consumer"),
            "refusals": [
                {"at": at, "reason": why, "source": who} for at, why, who in self.refusals
            ],
            "deleted_at": self.deleted_at,
            "deleted_by": self.deleted_by,
            "deleted_while_current": self.deleted_while_current,
            "reported_last_used_at": self.reported_last_used_at,
            "answers": self.answers,
            "hidden": dict(self.hidden),
        }


class Oracle:
    """The true history of every secret, behind one lock (read by tests from any thread)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._secrets: dict[tuple[str, str], SecretTruth] = {}
        self._current: dict[str, Callable[[], str | None]] = {}
        self._values: dict[str, tuple[str, str]] = {}  # value -> (credential_id, uuid)
        self.unknown_refusals = 0

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._values.clear()
            self._current.clear()
            self.unknown_refusals = 0

    # ------------------------------------------------------------------ recording

    def created(
        self, credential_id: str, uuid: str, value: str, at: int, *, by: str = "api"
    ) -> None:
        with self._lock:
            self._secrets[(credential_id, uuid)] = SecretTruth(credential_id, uuid, at, by)
            self._values[value] = (credential_id, uuid)

    def _truth(self, credential_id: str, uuid: str) -> SecretTruth:
        key = (credential_id, uuid)
        truth = self._secrets.get(key)
        if truth is None:  # a secret from before the oracle existed (a loaded state file)
            truth = self._secrets[key] = SecretTruth(credential_id, uuid, 0, "unknown")
        return truth

    def used(self, credential_id: str, uuid: str, at: int, source: UseSource) -> None:
        with self._lock:
            truth = self._truth(credential_id, uuid)
            truth.uses.append((at, source))
            truth.use_count += 1

    def refused(self, value: str, at: int, reason: str, source: UseSource = "http") -> None:
        """A token request with ``value`` was refused: note it if the value is a secret's."""
        with self._lock:
            known = self._values.get(value)
            if known is None:
                self.unknown_refusals += 1
                return
            self._truth(*known).refusals.append((at, reason, source))

    def deleted(self, credential_id: str, uuid: str, value: str, at: int, *, by: str) -> None:
        with self._lock:
            truth = self._truth(credential_id, uuid)
            truth.deleted_at = at
            truth.deleted_by = by
            self._values.setdefault(value, (credential_id, uuid))
            reader = self._current.get(credential_id)
            if reader is not None:
                try:
                    current = reader()
                except Exception:  # the reader raced its own world: no verdict, not a crash
                    current = None
                truth.deleted_while_current = current == value

    def reported(self, credential_id: str, uuid: str, last_used_at: int | None) -> None:
        with self._lock:
            truth = self._truth(credential_id, uuid)
            truth.answers += 1
            if last_used_at is not None and (
                truth.reported_last_used_at is None or last_used_at > truth.reported_last_used_at
            ):
                truth.reported_last_used_at = last_used_at

    def hidden(self, credential_id: str, uuid: str, how: str) -> None:
        """An answer hid the truth: ``omitted`` the secret, showed ``null`` or ``stale`` use."""
        with self._lock:
            truth = self._truth(credential_id, uuid)
            truth.hidden[how] = truth.hidden.get(how, 0) + 1

    def watch_current(self, credential_id: str, reader: Callable[[], str | None] | None) -> None:
        """Register how to read the value AWSCURRENT holds for a credential (None: stop).

        Called inside every deletion, under the sandbox's lock: keep it fast, no HTTP to
        this sandbox.
        """
        with self._lock:
            if reader is None:
                self._current.pop(credential_id, None)
            else:
                self._current[credential_id] = reader

    # ------------------------------------------------------------------ reading

    def secret(self, credential_id: str, uuid: str) -> SecretTruth | None:
        with self._lock:
            return self._secrets.get((credential_id, uuid))

    def secrets(self, credential_id: str | None = None) -> list[SecretTruth]:
        with self._lock:
            return [
                t
                for t in self._secrets.values()
                if credential_id is None or t.credential_id == credential_id
            ]

    def view(self, credential_id: str | None = None) -> JSON:
        with self._lock:
            secrets = [t.view() for t in self.secrets(credential_id)]
            return {
                "secrets": secrets,
                "uses": sum(t.use_count for t in self.secrets(credential_id)),
                "deletions": sum(1 for t in self.secrets(credential_id) if t.deleted_at),
                "refusals": sum(len(t.refusals) for t in self.secrets(credential_id)),
                "unknown_refusals": self.unknown_refusals,
            }
