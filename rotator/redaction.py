"""Redaction by value: every secret and token rotator sees is registered here, and every line
of output (logs, CLI, webhooks, error text, audit details) passes through `redact` first.

Key-name filters miss a secret that lands in a message or a URL; matching the values
themselves does not. Values are kept only in this process's memory.

Values are indexed by their first characters, so `redact` costs one dictionary look-up per
position of the text whatever the number of known values (a daemon learns four per
rotation), and `register` is a dictionary insert: no regex to rebuild as values arrive.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

MASK = "[REDACTED]"
_MIN_LENGTH = 8  # shorter strings would mask ordinary words; real secrets are far longer

_lock = threading.Lock()
_values: set[str] = set()
_index: dict[str, tuple[str, ...]] = {}  # first _MIN_LENGTH characters -> values, longest first


def register(*values: str | None) -> None:
    """Remember secret values so that any later output masks them."""
    fresh = {v for v in values if v and len(v) >= _MIN_LENGTH and v not in _values}
    if not fresh:
        return
    with _lock:
        for value in fresh - _values:
            _values.add(value)
            key = value[:_MIN_LENGTH]
            bucket = (*_index.get(key, ()), value)
            _index[key] = tuple(sorted(bucket, key=len, reverse=True))


def redact(text: str) -> str:
    """`text` with every known value replaced by MASK (leftmost first, longest first)."""
    if not text or not _values or len(text) < _MIN_LENGTH:
        return text
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


def redact_all(texts: Iterable[str]) -> list[str]:
    return [redact(t) for t in texts]


def known_count() -> int:
    return len(_values)
