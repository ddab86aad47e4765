"""One daemon per SQLite database: an exclusive flock on `<database file>.lock`.

SQLite serialises writers but does not stop a second daemon from ticking on the same file
(both would survey, schedule and claim: twice the calls for nothing, and "exactly one" is
what the docs promise). The lock is advisory and the kernel drops it when the process
dies, however it dies (kill -9 included), so a crash never leaves a stale lock behind: the
file may stay, the lock does not. PostgreSQL takes no lock here: several replicas is the
supported way to run on it, coordinated by leases in the database.

The one-shot commands (`rotate`, `cancel`, ...) take no lock: they work beside a daemon,
and the rotation's lease decides who does each step.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from rotator.domain.errors import ConfigError


class DaemonLock:
    """Held from `acquire` until `release` (or the process's end)."""

    def __init__(self, path: Path, handle: IO[str]) -> None:
        self.path = path
        self._handle = handle

    def release(self) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for another database or an in-memory one)."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).resolve()


def acquire(url: str) -> DaemonLock | None:
    """Lock the SQLite database for this daemon; raise ConfigError naming the holder if
    another daemon has it. Nothing to lock (None) for PostgreSQL."""
    database = sqlite_file(url)
    if database is None:
        return None
    path = database.with_name(database.name + ".lock")
    try:
        handle = path.open("a+")
    except OSError as exc:
        raise ConfigError(
            f"database.url: cannot open the lock file {path}: {exc.strerror}"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"another rotator daemon ({holder}) already runs on {database}; one daemon per "
            f"SQLite database (use PostgreSQL for several replicas)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return DaemonLock(path, handle)
