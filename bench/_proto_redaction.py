"""A prototype of the redactor fix proposed in README, to measure it (`--prototype-redactor`).

rotator.redaction compiles one alternation regex of every value it knows, and compiles it
again on the first `redact()` after any `register()`. A daemon registers new values in every
rotation and redacts on every save and log line, so each step pays a compile whose cost
grows with the number of values, and `re`'s own cache keeps up to 512 of these patterns.

This prototype masks the same thing (leftmost, longest value first, like the regex) with
an index of values by their first 8 characters: `redact()` looks up each 8-character
window of the text once, so its cost depends on the text's length, not on how many values
are known, and `register()` is a dict insert. `install()` swaps it into rotator.redaction
(every rotator module calls `redaction.redact` through the module), keeping values known.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from rotator import redaction

MASK = redaction.MASK
PREFIX = 8  # == rotator.redaction._MIN_LENGTH: every registered value is at least this long

_lock = threading.Lock()
_values: set[str] = set()
_index: dict[str, list[str]] = {}  # first PREFIX chars -> values, longest first


def register(*values: str | None) -> None:
    fresh = {v for v in values if v and len(v) >= PREFIX and v not in _values}
    if not fresh:
        return
    with _lock:
        for value in fresh - _values:
            _values.add(value)
            bucket = _index.setdefault(value[:PREFIX], [])
            bucket.append(value)
            bucket.sort(key=len, reverse=True)


def redact(text: str) -> str:
    if not text or not _values or len(text) < PREFIX:
        return text
    index = _index
    parts: list[str] = []
    start = i = 0
    end = len(text) - PREFIX
    while i <= end:
        candidates = index.get(text[i : i + PREFIX])
        if candidates:
            for value in candidates:
                if text.startswith(value, i):
                    parts.append(text[start:i])
                    parts.append(MASK)
                    i += len(value)
                    start = i
                    break
            else:
                i += 1
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


def install() -> None:
    """Replace rotator.redaction's functions with these, carrying over known values."""
    register(*redaction._values)
    redaction.register = register  # type: ignore[assignment]
    redaction.redact = redact  # type: ignore[assignment]
    redaction.redact_all = redact_all  # type: ignore[assignment]
    redaction.known_count = known_count  # type: ignore[assignment]
