"""The console script's start-up: the cyclic garbage collector waits until a command is set up.

A command's start-up (imports of SQLAlchemy, botocore, httpx, pydantic; the config; the
clients) makes several hundred thousand objects that all live until the process ends.
CPython's cyclic collector traverses them again and again while they are being made:
~250 collections, two of them full, 0.15-0.35 s of an emergency rotation's start-up on a
busy machine (bench/emergency.py). Nothing made then is garbage worth collecting. So the
collector is paused while a command sets up; `settle()` then moves what exists to the
permanent generation (`gc.freeze`: never traversed again) and resumes collection, so a
long command (`run`, `rotate --wait`) collects its own garbage as usual. Commands call
`settle()` once their app or store is built; a timer does it for any command that does not,
so no command runs long without the collector.
"""

from __future__ import annotations

import gc
import threading

# The longest start-up pause a command that never calls `settle()` gets.
SETUP_GRACE_S = 2.0

_paused = threading.Event()


def pause() -> None:
    """Pause the cyclic collector for the start-up (the console script only)."""
    if not gc.isenabled():
        return  # someone else's choice: leave it alone
    gc.disable()
    _paused.set()
    timer = threading.Timer(SETUP_GRACE_S, settle)
    timer.daemon = True
    timer.start()


def settle() -> None:
    """Freeze what start-up made and resume collection (once; a no-op if not paused)."""
    if _paused.is_set():
        _paused.clear()
        gc.freeze()
        gc.enable()
