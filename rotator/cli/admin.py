"""Commands that run or prepare rotator itself: db upgrade, check, run."""

from __future__ import annotations

import dataclasses
import json
import sys

import click

from rotator.cli.context import Ctx, pass_ctx
from rotator.cli.output import EXIT_FAILED, EXIT_OK, errors, say


@click.group()
def db() -> None:
    """State database tools."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Ctx) -> None:
    """Create or migrate the state database to the current schema (idempotent)."""
    with errors():
        from rotator.adapters.db import migrate
        from rotator.adapters.db.connect import make_engine
        from rotator.app import database_failure, require_driver, require_folder

        require_driver(ctx.settings)
        require_folder(ctx.settings)
        engine = make_engine(ctx.settings.database.url)
        try:
            before, after = migrate.upgrade(engine)
        except Exception as exc:
            raise database_failure(ctx.settings, exc, "migrate") from None
        finally:
            engine.dispose()
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
        from rotator.preflight import run_checks

        results = run_checks(ctx.settings)
    ok = all(r.ok for r in results)
    if as_json:
        say(json.dumps([dataclasses.asdict(r) for r in results], indent=2))
        sys.exit(EXIT_OK if ok else EXIT_FAILED)
    width = max(len(r.name) for r in results)
    say(f"{'check':<{width}}  verdict  detail")
    for r in results:
        say(f"{r.name:<{width}}  {'ok' if r.ok else 'FAIL':<7}  {r.detail}")
    if len(results) == 1:
        say("no credentials configured")
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


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
