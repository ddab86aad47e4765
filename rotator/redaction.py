"""Redaction by value: every secret and token rotator sees is registered here, and every line
of output (logs, CLI, webhooks, error text) passes through `redact` before it leaves.

Key-name filters miss a secret that lands in a message or a URL; matching the values
themselves does not. Values are kept only in this process's memory.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "[REDACTED]"
_MIN_LENGTH = 8  # shorter strings would mask ordinary words; real secrets are far longer

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(*values: str | None) -> None:
    """Remember secret values so that any later output masks them."""
    global _pattern
    fresh = {v for v in values if v and len(v) >= _MIN_LENGTH and v not in _values}
    if not fresh:
        return
    with _lock:
        _values.update(fresh)
        _pattern = None  # rebuilt on the next redact, so a burst of registrations costs one


def _compiled() -> re.Pattern[str] | None:
    global _pattern
    with _lock:
        if _pattern is None and _values:
            ordered = sorted(_values, key=len, reverse=True)  # longest first: no partial masks
            _pattern = re.compile("|".join(re.escape(v) for v in ordered))
        return _pattern


def redact(text: str) -> str:
    if not text or not _values:
        return text
    pattern = _compiled()
    return pattern.sub(MASK, text) if pattern else text


def redact_all(texts: Iterable[str]) -> list[str]:
    return [redact(t) for t in texts]


def known_count() -> int:
    return len(_values)
