"""The optional ``--state FILE``: the sandbox's world as JSON, so a demo survives a restart.

The file necessarily holds the sandbox's client secret values and live access tokens: it
*is* the fake Adobe's database. They are sandbox values, worthless against real Adobe, but
the file is still written owner-only (0600) and atomically, like any secret store.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rotator.devkit.sandbox.state import SandboxState

__all__ = ["load_state", "save_state"]


def load_state(state: SandboxState, path: Path) -> bool:
    """Fill ``state`` from ``path``; False (and nothing changed) if the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    state.load_document(json.loads(text))
    return True


def save_state(state: SandboxState, path: Path) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a file."""
    document = state.to_document()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
