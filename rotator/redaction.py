"""Redaction by value: every secret and token rotator sees is registered here, and every line
of output (logs, CLI, webhooks, error text, audit details) passes through `redact` first.

Key-name filters miss a secret that lands in a message or a URL; matching the values
themselves does not. Values are kept only in this process's memory.

Values are indexed by their first characters, so `redact` costs one dictionary look-up per
position of the text whatever the number of known values (a daemon learns four per
rotation), and `register` is a dictionary insert: no regex to rebuild as values arrive.

A daemon runs for months, so the registry keeps only what can still matter:
- an access token until it expires (`until=`, plus an hour's grace for clocks and lines
  already on their way);
- a credential's secrets per `scope` (its Adobe client id, its AWS secret id): the last
  `KEEP_PER_SCOPE` registrations (a secret; or the fields of one AWS version, registered
  together). A credential has at most two secrets at Adobe and three labelled versions in
  AWS (current, previous, pending), and rotator registers a secret again each time it
  uses it, so anything older has been deleted at Adobe and unlabelled in AWS. And each
  registration for at most `SCOPE_TTL` after it was last made: the registry is a copy
  of plaintexts, and a copy kept for the process's life is one more place to read them
  from (a memory dump, a debugger). Forgetting is safe because nothing rotator prints
  can hold a secret it does not hold itself at that moment, and every path that brings a
  secret into the process (an AWS read, a token minted with it, a secret Adobe created)
  registers it again first; what a remote service echoes back is what rotator just sent.
  The hour covers a step that holds a value between its use and its last line of output
  (a verify that retries for verify_timeout, a webhook owed for a while: its text was
  redacted when it was written);
- anything else (HMAC keys, webhook URLs, a database password) for the life of the process:
  there is a fixed number of those.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable, Iterable

MASK = "[REDACTED]"
_MIN_LENGTH = 8  # shorter strings would mask ordinary words; real secrets are far longer
KEEP_PER_SCOPE = 3  # registrations kept per scope (see above)
TOKEN_GRACE = 3600.0  # seconds a token stays masked after it expires
SCOPE_TTL = 3600.0  # seconds a scoped registration lasts after it was last made

#: Wall-clock seconds; bench/year.py replaces it to live a year in minutes.
clock: Callable[[], float] = time.time

_lock = threading.Lock()
_values: set[str] = set()
_index: dict[str, tuple[str, ...]] = {}  # first _MIN_LENGTH characters -> values, longest first
_permanent: set[str] = set()
# scope -> its registrations (tuples of values) and when each ends, least recently seen first
_scopes: dict[str, dict[tuple[str, ...], float]] = {}
_scoped: dict[str, int] = {}  # value -> how many registrations in scopes hold it
_until: dict[str, float] = {}  # value -> when its latest temporary registration ends
_expiries: list[tuple[float, str]] = []  # heap of (end, value), possibly stale
_scope_expiries: list[tuple[float, str, tuple[str, ...]]] = []  # (end, scope, batch), ditto


def register(*values: str | None, scope: str | None = None, until: float | None = None) -> None:
    """Remember secret values so that any later output masks them.

    `until` (epoch seconds): a token's expiry; `scope`: whose secret it is (see above).
    Neither: kept for the life of the process.
    """
    fresh = [v for v in values if v and len(v) >= _MIN_LENGTH]
    if not fresh:
        return
    hot = scope is None and until is None and _permanent.issuperset(fresh)
    if hot and not _due(clock()):
        return  # a known permanent value and nothing due to expire: no lock
    with _lock:
        if scope is not None and until is None:
            _hold_in_scope(scope, tuple(sorted(set(fresh))))
        for value in fresh:
            if until is not None:
                end = until + TOKEN_GRACE
                if end > _until.get(value, 0.0):
                    _until[value] = end
                    heapq.heappush(_expiries, (end, value))
            elif scope is None:
                _permanent.add(value)
            _add(value)
        _expire(clock())


def forget(*values: str | None) -> None:
    """Stop masking values (whatever held them): they exist nowhere any more."""
    with _lock:
        for value in values:
            if not value:
                continue
            _permanent.discard(value)
            _until.pop(value, None)
            for members in _scopes.values():
                for batch in [b for b in members if value in b]:
                    _release(members, batch)
            _scoped.pop(value, None)
            _drop(value)


def redact(text: str) -> str:
    """`text` with every known value replaced by MASK (leftmost first, longest first)."""
    if not text or not _values or len(text) < _MIN_LENGTH:
        return text
    if _due(now := clock()):
        with _lock:
            _expire(now)
    index = _index
    parts: list[str] = []
    start = i = 0
    last = len(text) - _MIN_LENGTH
    while i <= last:
        for value in index.get(text[i : i + _MIN_LENGTH], ()):
            if text.startswith(value, i):
                parts += (text[start:i], MASK)
                i = start = i + len(value)
                break
        else:
            i += 1
    if not parts:
        return text
    parts.append(text[start:])
    return "".join(parts)


def clip(text: str, limit: int, *, first_line: bool = False) -> str:
    """`text` redacted, THEN cut to `limit` characters (and to its first line if asked).

    The order matters: a cut made first can split a secret so that the redactor no longer
    recognises it, and the part before the cut is printed as it is."""
    text = redact(text)
    if first_line:
        text = (text.splitlines() or [""])[0]
    return text[:limit]


def redact_all(texts: Iterable[str]) -> list[str]:
    return [redact(t) for t in texts]


def known_count() -> int:
    return len(_values)


def sizes() -> dict[str, int]:
    """How much the registry holds, by why (for benchmarks and /metrics-style checks)."""
    with _lock:
        _expire(clock())
        return {
            "values": len(_values),
            "permanent": len(_permanent),
            "scoped": len(_scoped),
            "scopes": len(_scopes),
            "expiring": len(_until),
        }


def reset() -> None:
    """Forget everything (tests)."""
    with _lock:
        for container in (_values, _index, _permanent, _scopes, _scoped, _until):
            container.clear()
        _expiries.clear()
        _scope_expiries.clear()


# --- under the lock ------------------------------------------------------------------------


def _add(value: str) -> None:
    if value in _values:
        return
    _values.add(value)
    key = value[:_MIN_LENGTH]
    bucket = (*_index.get(key, ()), value)
    _index[key] = tuple(sorted(bucket, key=len, reverse=True))


def _drop(value: str) -> None:
    if value not in _values:
        return
    _values.discard(value)
    key = value[:_MIN_LENGTH]
    bucket = tuple(v for v in _index.get(key, ()) if v != value)
    if bucket:
        _index[key] = bucket
    else:
        _index.pop(key, None)


def _held(value: str, now: float) -> bool:
    return value in _permanent or value in _scoped or _until.get(value, 0.0) > now


def _hold_in_scope(scope: str, batch: tuple[str, ...]) -> None:
    members = _scopes.setdefault(scope, {})
    if batch in members:
        del members[batch]  # seen again: now the most recent
    else:
        for value in batch:
            _scoped[value] = _scoped.get(value, 0) + 1
    end = clock() + SCOPE_TTL
    members[batch] = end
    heapq.heappush(_scope_expiries, (end, scope, batch))
    while len(members) > KEEP_PER_SCOPE:
        _release(members, next(iter(members)))


def _release(members: dict[tuple[str, ...], float], batch: tuple[str, ...]) -> None:
    """A scope lets go of one registration; its values go unless held otherwise."""
    del members[batch]
    now = clock()
    for value in batch:
        _scoped[value] -= 1
        if not _scoped[value]:
            del _scoped[value]
            if not _held(value, now):
                _drop(value)


def _due(now: float) -> bool:
    """Something registered for a while has reached its end (checked without the lock)."""
    return bool(
        (_expiries and _expiries[0][0] <= now) or (_scope_expiries and _scope_expiries[0][0] <= now)
    )


def _expire(now: float) -> None:
    while _scope_expiries and _scope_expiries[0][0] <= now:
        end, scope, batch = heapq.heappop(_scope_expiries)
        members = _scopes.get(scope)
        if members is not None and members.get(batch) == end:  # else seen again since
            _release(members, batch)
            if not members:
                del _scopes[scope]
    while _expiries and _expiries[0][0] <= now:
        end, value = heapq.heappop(_expiries)
        if _until.get(value) == end:  # else a later registration extended it
            del _until[value]
            if not _held(value, now):
                _drop(value)
