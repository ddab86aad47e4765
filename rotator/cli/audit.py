"""`rotator audit ...`: tools for the audit trail."""

from __future__ import annotations

import click

from rotator.cli.context import Ctx, pass_ctx
from rotator.cli.output import EXIT_FAILED, die, errors, say


@click.group()
def audit() -> None:
    """Audit-trail tools."""


@audit.command("verify")
@pass_ctx
def audit_verify(ctx: Ctx) -> None:
    """Check the hash chain of the audit events; exit 1 naming the first changed row."""
    with errors(), ctx.store() as store:
        checked, problem = store.verify_chain()
    if problem:
        die(f"audit chain broken at {problem} ({checked} events verified before it)", EXIT_FAILED)
    say(f"audit chain intact: {checked} events verified")
