"""`rotator report`: the auditor's report (HTML, JSON or CSV) over a period."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rotator.cli.context import Ctx, pass_ctx
from rotator.cli.output import EXIT_FAILED, EXIT_USAGE, die, errors, say

if TYPE_CHECKING:
    from rotator.adapters.db.store import Store
    from rotator.config import Settings


def _moment(value: str | None, option: str, *, end_of_day: bool) -> datetime | None:
    """YYYY-MM-DD (the whole day) or an ISO date-time; UTC unless it says otherwise."""
    if not value:
        return None
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").date()
            moment = datetime.combine(day, time.min, UTC)
            return moment + timedelta(days=1) - timedelta(microseconds=1) if end_of_day else moment
        parsed = datetime.fromisoformat(value)
    except ValueError:
        die(f"{option}: {value!r} is not a date (YYYY-MM-DD) or ISO date-time", EXIT_USAGE)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def build_report(
    settings: Settings,
    store: Store,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    checkpoint: str | None = None,
) -> dict[str, Any]:
    """Verify the chain (against the latest checkpoint), then assemble the report."""
    from rotator.app import insights
    from rotator.audit import trail as reporting

    reads = insights(settings, store)
    now = datetime.now(UTC)
    events = reads.trail()
    start = since or (events[0].at if events else now)
    end = until or now
    if start > end:
        die("--since is after --until", EXIT_USAGE)
    from rotator.cli.audit import latest_checkpoint

    cp, source = latest_checkpoint(settings, checkpoint)
    verification = reads.verification(cp)
    verification["checkpoint_source"] = source
    if cp is None and source != "none":  # a configured checkpoint missing or damaged
        verification["ok"] = False
        verification["problems"] = [f"[audit] checkpoint_file: {source}", *verification["problems"]]
    policies = {
        cfg.name: reporting.CredentialPolicy(
            settings.policy(cfg).max_age, settings.policy(cfg).quiet_period
        )
        for cfg in settings.credentials
    }
    return reporting.build(events, policies, verification, since=start, until=end, generated_at=now)


@click.command()
@click.option("--since", metavar="DATE", help="Start (YYYY-MM-DD or ISO); default: first event.")
@click.option("--until", metavar="DATE", help="End (YYYY-MM-DD: the whole day); default: now.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "json", "csv"]),
    default="html",
    show_default=True,
)
@click.option("--output", "-o", metavar="PATH", help="Write here (default: standard output).")
@click.option(
    "--checkpoint",
    metavar="FILE|JSON",
    help="Verify against this checkpoint (default: the newest in [audit] checkpoint_file).",
)
@pass_ctx
def report(
    ctx: Ctx,
    since: str | None,
    until: str | None,
    fmt: str,
    output: str | None,
    checkpoint: str | None,
) -> None:
    """The auditor's report of a period, as HTML, JSON or CSV.

    Per credential: every rotation (trigger, claimed and verified actor, reason, time of
    each step), the oldest age its secret reached against max_age, the evidence behind
    each deletion, needs_attention episodes; and the audit chain verified against the
    latest checkpoint. HTML is one self-contained file (no scripts, nothing fetched)."""
    from rotator.audit.render import render

    start = _moment(since, "--since", end_of_day=False)
    end = _moment(until, "--until", end_of_day=True)
    with errors(), ctx.store() as store:
        built = build_report(ctx.settings, store, since=start, until=end, checkpoint=checkpoint)
        text = render(built, fmt)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            die(f"--output: cannot write {output}: {exc.strerror or exc}", EXIT_USAGE)
        say(f"report written to {output}")
    else:
        click.echo(text, nl=False)
    # The report is written either way (it says why), but a script must notice a broken
    # chain: exit 1 with the same line `audit verify` gives.
    verification = built["verification"]
    if not verification["ok"]:
        die(
            f"audit verify failed: {verification['problems'][0]} "
            f"({verification['checked']} events verified before it)",
            EXIT_FAILED,
        )
