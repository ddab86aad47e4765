"""The `rotator` command. Commands only parse, call the app, and print.

Each command lives in the module of its concern (rotation, inspect, audit, admin) and is
imported only when it runs, so `rotator rotate --emergency` pays for nothing else and
`rotator --help` imports no server, database or pydantic. To add a command: define it in
its module and name it in `COMMANDS`.

Exit codes and error handling: see `rotator.cli.output`.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from rotator.cli import startup
from rotator.cli.context import Ctx
from rotator.cli.output import EXIT_ATTENTION, EXIT_FAILED, EXIT_OK, EXIT_USAGE, die, say

if TYPE_CHECKING:
    from rotator.cli.rotation import follow

__all__ = [
    "EXIT_ATTENTION",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "die",
    "follow",
    "main",
    "say",
]

# command name -> "module:attribute", imported when the command is used or listed.
COMMANDS: dict[str, str] = {
    "rotate": "rotator.cli.rotation:rotate",
    "cancel": "rotator.cli.rotation:cancel",
    "resume": "rotator.cli.hold:resume",
    "adopt": "rotator.cli.rotation:adopt",
    "status": "rotator.cli.inspect:status",
    "plan": "rotator.cli.plan:plan",
    "history": "rotator.cli.inspect:history",
    "audit": "rotator.cli.audit:audit",
    "report": "rotator.cli.report:report",
    "db": "rotator.cli.admin:db",
    "check": "rotator.cli.admin:check",
    "run": "rotator.cli.admin:run",
    "sandbox": "rotator.devkit.sandbox.cli:sandbox",
    "demo": "rotator.devkit.demo:demo",
    "completion": "rotator.cli.completion:completion",
}
# What `rotator --help` says of commands whose modules import servers, so that listing
# commands does not import them.
HEAVY_HELP: dict[str, str] = {
    "sandbox": "Run the local Adobe stand-in (IMS and I/O Management API).",
    "demo": "A normal and an emergency rotation, end to end, on embedded defaults.",
}


def __getattr__(name: str) -> Any:
    """`rotator.cli.follow` (used by the demo and tests) without importing it up front."""
    if name == "follow":
        from rotator.cli.rotation import follow

        return follow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Main(click.Group):
    """The command group; each command's module is imported only when it is needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            if name in HEAVY_HELP:
                rows.append((name, HEAVY_HELP[name]))
            elif (command := self.get_command(ctx, name)) is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The console script's way in: run, then end the process at once.

        Everything a command writes is flushed (and its database connections closed) before
        it returns, so interpreter teardown (module and object clean-up, ~0.2-0.4 s) buys
        nothing: flush the streams, run the atexit hooks, and `os._exit`. Callers of
        `main.main(...)` (CliRunner) keep the ordinary return. The cyclic garbage collector
        waits until the command is set up (`rotator.cli.startup`).
        """
        startup.pause()
        try:
            self.main(*args, **kwargs)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        _fast_exit(code)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module, _, attr = COMMANDS[cmd_name].partition(":")
            try:
                command = getattr(importlib.import_module(module), attr)
            except ImportError:
                if module.startswith("rotator.cli."):
                    raise  # our own command: a broken import is a bug, not a missing extra
                return None  # an optional part that is not installed: no such command
            if not isinstance(command, click.Command):
                from rotator.domain.errors import InvariantError

                raise InvariantError(f"{module}.{attr} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)


def _fast_exit(code: int) -> NoReturn:
    import atexit
    import logging
    import os

    atexit._run_exitfuncs()  # what interpreter shutdown would run first (logging included)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe changes nothing now
            stream.flush()
    os._exit(code)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    envvar="ROTATOR_CONFIG",
    help="Config file (default: $ROTATOR_CONFIG, then ./rotator.toml).",
)
@click.option(
    "--log-level",
    default=None,
    envvar="ROTATOR_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Logs go to stderr. Default: INFO for `run`, WARNING for the other commands.",
)
@click.option(
    "--log-format",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "json", "console"]),
    help="auto: JSON lines unless stderr is a terminal.",
)
@click.option(
    "--actor",
    "claimed_actor",
    metavar="NAME",
    envvar="ROTATOR_ACTOR",
    help="Who you say you are (a ticket, a name): recorded as claimed, beside the verified "
    "AWS caller and OS user.",
)
@click.version_option(package_name="adobe-secret-rotator")
@click.pass_context
def main(
    ctx: click.Context,
    config_path: str | None,
    log_level: str | None,
    log_format: str,
    claimed_actor: str | None,
) -> None:
    """Rotate Adobe OAuth Server-to-Server client secrets through AWS Secrets Manager.

    \b
    Exit codes:
      0  success
      1  the operation failed (or a check, or the audit chain)
      2  usage or configuration error: nothing was changed
      3  needs attention: a person must look (rotate, status)
    """
    from rotator import hardening, logs

    hardening.harden_process()  # private files (umask 0o077), no core dump, not dumpable
    level = log_level or ("INFO" if ctx.invoked_subcommand == "run" else "WARNING")
    logs.configure(level, json=None if log_format == "auto" else log_format == "json")
    ctx.obj = Ctx(config_path, level, log_format)
    ctx.obj.claimed_actor = hardening.operator_text(claimed_actor, 128) or None


if __name__ == "__main__":  # pragma: no cover
    main()
