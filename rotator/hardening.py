"""What the process does to itself at start, and the checks on what an operator hands it.

- `harden_process`: files it creates are private (umask 0o077: the SQLite database, its
  WAL, reports, checkpoints come out 0600), no core dump (RLIMIT_CORE 0) and, on Linux,
  not dumpable (PR_SET_DUMPABLE 0: no core file, and another process of the same user
  cannot ptrace it or read its memory through /proc), so the secrets it holds in memory
  do not end up on disk or in a debugger by accident. The CLI entry and the daemon call it.
- `require_private`: a key file readable or writable by group or others is refused, as
  ssh refuses such a private key.
- `operator_text`: control characters (ESC and the rest of C0 and C1, and the Unicode
  direction overrides) are taken out of what an operator types (`--actor`, `--reason`)
  before it is stored, so that `history` or a report never replays them to a terminal;
  `plain_option` refuses a name or id (`--uuid`) that holds one.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

from rotator.domain.errors import ConfigError

UMASK = 0o077
PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def harden_process() -> None:
    """Private files, no core dump, not dumpable. Safe to call more than once."""
    os.umask(UMASK)
    try:
        import resource

        # Only when needed: the systemd unit sets LimitCORE=0 already and filters
        # @resources system calls (setrlimit among them).
        if resource.getrlimit(resource.RLIMIT_CORE) != (0, 0):
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):  # not on this platform, or not allowed
        pass
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def require_private(path: str | Path, what: str) -> None:
    """ConfigError (one line, exit 2) if `path` is readable or writable by group or others."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # reading it fails next, with its own one-line error
    if mode & 0o077:
        raise ConfigError(
            f"{what}: {path} is accessible by group or others (mode "
            f"{stat.S_IMODE(mode):04o}); a key must be private: run `chmod 600 {path}`"
        )


# C0 and C1 controls (ESC among them) and DEL; bidirectional overrides and isolates, which
# reorder what a terminal or a browser shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def operator_text(value: str | None, limit: int) -> str:
    """Operator input as it is stored: control characters gone (a tab or line break
    becomes a space), surrounding space trimmed, at most `limit` characters."""
    if not value:
        return ""
    text = value.replace("\t", " ").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return _CONTROL.sub("", text).strip()[:limit]


REASON_LIMIT = 1000


def reason_option(_ctx: object, _param: object, value: str | None) -> str:
    """A click callback for `--reason`: `operator_text` of what was typed."""
    return operator_text(value, REASON_LIMIT)


def plain_option(_ctx: object, param: object, value: str | None) -> str | None:
    """A click callback for a name or id an operator types (`--uuid`): refused, not
    cleaned, when it holds a control character (it names something; a changed name would
    name something else), so an error that echoes it cannot drive a terminal either."""
    if value and _CONTROL.search(value):
        import click

        raise click.BadParameter("control characters are not allowed")
    return value
