"""How the CLI speaks: every line through the redactor, errors as one line and an exit code.

Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error (nothing
was changed), 3 needs attention (a person must look), 130 interrupted (Ctrl-C).

An error is one line on stderr: a RotatorError's own text (written to be safe to show),
or for anything unexpected only its type and first line, redacted; `--log-level DEBUG`
logs the traceback (without locals) as well.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import NoReturn

import click

from rotator import redaction
from rotator.domain.errors import RotatorError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ATTENTION = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention for Ctrl-C


def say(text: str = "", *, err: bool = False) -> None:
    """Every line the CLI prints passes the redactor first."""
    click.echo(redaction.redact(text), err=err)


def die(message: str, code: int) -> NoReturn:
    say(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def errors(interrupted: str = "interrupted") -> Iterator[None]:
    """One clear line and a documented exit code, never a traceback with values in it."""
    try:
        yield
    except RotatorError as exc:
        die(str(exc).replace("\n", "; "), exc.exit_code)
    except KeyboardInterrupt:
        die(interrupted, EXIT_INTERRUPTED)
    except Exception as exc:
        logging.getLogger("rotator.cli").debug("unexpected error", exc_info=True)
        first = redaction.clip(str(exc), 300, first_line=True)
        if _lost_database(exc):
            die(f"cannot reach the database: {first}", EXIT_FAILED)
        die(f"unexpected {type(exc).__name__}: {first}", EXIT_FAILED)


def _lost_database(exc: Exception) -> bool:
    """The database went away in the middle of a command (checked without importing
    SQLAlchemy: if it is not loaded, this was not a database error)."""
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None or not isinstance(exc, errors.OperationalError | errors.InterfaceError):
        return False
    return bool(getattr(exc, "connection_invalidated", False)) or "connect" in str(exc).lower()


def ts(moment: datetime | None) -> str:
    """A moment as operators read it: UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "never"
