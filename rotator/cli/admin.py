"""Commands that run or prepare rotator itself: db upgrade, check, run."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from rotator import redaction
from rotator.cli.context import Ctx, pass_ctx
from rotator.cli.output import EXIT_FAILED, EXIT_OK, errors, say

if TYPE_CHECKING:
    from rotator.preflight import CheckResult


@click.group()
def db() -> None:
    """State database tools."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Ctx) -> None:
    """Create or migrate the state database to the current schema (idempotent)."""
    with errors():
        from rotator.app import upgrade_database

        before, after = upgrade_database(ctx.settings)
    say(
        f"database at revision {after}" + ("" if before == after else f" (was {before or 'empty'})")
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def check(ctx: Ctx, as_json: bool) -> None:
    """Read-only pre-flight: the database, then every credential; exit 1 if any fails.

    For each credential: AWSCURRENT is readable and has the secret key, it mints a
    management token, Adobe lists its secrets, and rotator can tell which one AWSCURRENT
    holds. Nothing is written anywhere (minting a token does move the current secret's
    last-used time at Adobe).
    """
    with errors():
        from rotator.app import check as run_checks

        results = run_checks(ctx.settings)
    ok = all(r.ok for r in results)
    if as_json:
        say(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
        sys.exit(EXIT_OK if ok else EXIT_FAILED)
    _check_table(results)
    if len(results) == 1:
        say("no credentials configured")
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


def _check_table(results: Sequence[CheckResult]) -> None:
    """rich's table, as `status` prints one; every cell, then every line, through the
    redactor. Piped, each check stays on one line (no width to wrap to: scripts and grep
    read it by line); on a terminal the details fold to its width and FAIL is red."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("check", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for r in results:
        verdict = Text("ok") if r.ok else Text("FAIL", style="bold red")
        table.add_row(Text(redaction.redact(r.name)), verdict, Text(redaction.redact(r.detail)))
    terminal = sys.stdout.isatty()
    rendered = io.StringIO()
    width = shutil.get_terminal_size().columns if terminal else 100_000
    Console(file=rendered, width=width, force_terminal=terminal, highlight=False).print(table)
    for line in rendered.getvalue().splitlines():
        say(line.rstrip())


@click.command()
@pass_ctx
def run(ctx: Ctx) -> None:
    """Run the daemon: migrate, then rotate on schedule and serve /healthz, /readyz, /metrics.

    SIGTERM or SIGINT stops it at the next step boundary (exit 0); a second one exits at
    once (exit 128+signal) and the next start resumes from the last saved step.
    """
    with errors():
        from rotator.daemon import Daemon

        code = Daemon(ctx.settings).run()
    sys.exit(code)
