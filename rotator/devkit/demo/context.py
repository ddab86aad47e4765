"""What the parts of `rotator demo` share: its constants, its files and its verdict so far."""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from rotator.devkit.demo.output import Output

__all__ = ["DemoContext", "SetupError", "program", "utc_time"]


class SetupError(Exception):
    """The demo cannot start (e.g. moto is not installed): a usage problem, exit 2."""


class DemoContext:
    """What every part of the demo shares: its options, its files, its output, its problems."""

    def __init__(self, quiet_period: str, keep_running: bool) -> None:
        self.quiet = quiet_period
        self.keep_running = keep_running
        self.out = Output()
        self.dir = Path(tempfile.mkdtemp(prefix="rotator-demo-"))
        self.config_path = self.dir / "rotator.toml"
        self.db_path = self.dir / "rotator.db"
        self.sandbox_state = self.dir / "sandbox-state.json"
        self.audit_key = self.dir / "audit.key"  # this writer's Ed25519 private key
        self.keyring = self.dir / "keyring.toml"  # the public keyring: all a verifier needs
        self.checkpoints = self.dir / "checkpoints.jsonl"
        self.report_path = self.dir / "report.html"
        self.problems: list[str] = []


def program() -> str:
    """How the person ran rotator (e.g. `.venv/bin/rotator`), so the hints work as printed."""
    invoked = sys.argv[0] if sys.argv else ""
    return invoked if Path(invoked).name == "rotator" else "rotator"


def utc_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3] + "Z"
