"""How the devkit's commands (`rotator sandbox`, `rotator demo`) speak: every line through the
redactor, an error as one line on stderr and an exit code.

The same conventions as the rotator CLI (`rotator.cli.output`), kept here so the devkit does
not import the CLI; tests/sandbox/test_cli.py checks that the exit codes agree.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from rotator import redaction

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "die", "say"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def say(text: str = "", *, err: bool = False) -> None:
    """Every line a devkit command prints passes the redactor first."""
    click.echo(redaction.redact(text), err=err)


def die(message: str, code: int) -> NoReturn:
    say(f"error: {message}", err=True)
    sys.exit(code)
