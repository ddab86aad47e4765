"""structlog set-up: JSON lines off a terminal, readable lines on one, redaction applied last.

The standard-library loggers (httpx, botocore, apscheduler, sqlalchemy, uvicorn) are routed
through the same processors, so nothing reaches a handler without passing the redactor.
Tracebacks are rendered without local variables: a local may hold a secret.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from rotator import redaction

_NOISY = (
    "httpx",
    "httpcore",
    "hpack",
    "botocore",
    "boto3",
    "urllib3",
    "apscheduler",
    "sqlalchemy",
    "uvicorn",
    "uvicorn.access",
    "uvicorn.error",
    "alembic",
    "s3transfer",
    "werkzeug",
    "moto",
)


_WIRE = ("botocore", "boto3", "urllib3", "httpcore", "hpack", "s3transfer")


def _redact_rendered(_logger: WrappedLogger, _name: str, rendered: Any) -> Any:
    """Last in the chain: mask every known secret value in the finished line."""
    if isinstance(rendered, str):
        return redaction.redact(rendered)
    if isinstance(rendered, bytes):
        return redaction.redact(rendered.decode("utf-8", "replace")).encode()
    return rendered


def _redact_values(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """Mask secrets in the values themselves, before JSON escaping could hide them from
    the final pass (a value with a quote or a non-ASCII character is escaped when rendered)."""
    return {key: _redact_any(value) for key, value in event.items()}


def _redact_any(value: Any) -> Any:
    if isinstance(value, str):
        return redaction.redact(value)
    if isinstance(value, dict):
        return {k: _redact_any(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_any(v) for v in value)
    return value


def _drop_color_message(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn duplicates its message with ANSI codes
    return event


def configure(
    level: str | int = "INFO", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Set up logging once for the process. `json=None` chooses by whether stream is a tty."""
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
        _redact_values,
    ]
    renderer: Processor
    if json:
        exceptions: Processor = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        renderer = structlog.processors.JSONRenderer()
        final: list[Processor] = [exceptions, renderer, _redact_rendered]
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(),
            exception_formatter=structlog.dev.plain_traceback,
        )
        final = [renderer, _redact_rendered]

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _NOISY:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        # Loud at INFO: keep them at WARNING unless the operator asked for DEBUG.
        logger.setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    for name in _WIRE:
        # Wire-level DEBUG prints request and response bodies *during* the call, before
        # rotator has seen (and registered) the secret inside: never below INFO (and at
        # INFO still WARNING, as above: botocore's "Found credentials ..." is not news).
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.level, logging.INFO))
