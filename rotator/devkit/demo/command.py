"""The `rotator demo` command: its options, its errors as one line and an exit code, and the
run from servers up to the verdict."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import click

from rotator.devkit.console import EXIT_FAILED, EXIT_OK, EXIT_USAGE, die
from rotator.devkit.demo.constants import TOKEN_LIFETIME_S
from rotator.devkit.demo.context import DemoContext, SetupError
from rotator.devkit.demo.prepare import set_up
from rotator.devkit.demo.record import audit, files, leak_check, linger, report
from rotator.devkit.demo.rotations import rotate_twice

__all__ = ["demo"]


def _quiet_period(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from rotator.config import parse_duration

    try:
        delta = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if delta < timedelta(seconds=TOKEN_LIFETIME_S):
        raise click.BadParameter(
            f"must be at least the consumer's token lifetime ({TOKEN_LIFETIME_S}s), as in "
            f"production (25h for Adobe's 24h tokens): a shorter quiet period could delete "
            f"the old secret while a consumer still relies on it"
        )
    if delta > timedelta(minutes=10):
        raise click.BadParameter("at most 10m: this is a demo")
    return value.strip()


@click.command(name="demo")
@click.option(
    "--quiet-period",
    default="3s",
    show_default=True,
    callback=_quiet_period,
    help="How long the old secret must go unused before it is deleted (25h in production).",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Afterwards keep the servers and the consumer running (Ctrl-C stops them), so the "
    "written config can be used from another terminal.",
)
def demo(quiet_period: str, keep_running: bool) -> None:
    """Run a normal and an emergency rotation against local stand-ins, showing each step.

    Needs nothing but this package and its `demo` extra: the Adobe sandbox, moto's AWS
    Secrets Manager server and a SQLite database all run in this process on 127.0.0.1.
    Exit 0 only if both rotations completed, the consumer never got invalid_client during
    the normal rotation, the audit chain verified and no secret value was printed.
    """
    from rotator.domain.errors import RotatorError

    try:
        ok = run(DemoContext(quiet_period, keep_running))
    except SetupError as exc:
        die(str(exc), EXIT_USAGE)
    except RotatorError as exc:
        die(str(exc).replace("\n", "; "), exc.exit_code)
    except KeyboardInterrupt:
        die("interrupted", EXIT_FAILED)
    except Exception as exc:  # one redacted line, as every rotator command does
        logging.getLogger("rotator.devkit.demo").debug("demo failed", exc_info=True)
        from rotator import redaction

        first = redaction.clip(str(exc), 300, first_line=True)
        die(f"unexpected {type(exc).__name__}: {first}", EXIT_FAILED)
    raise SystemExit(EXIT_OK if ok else EXIT_FAILED)


def run(ctx: DemoContext) -> bool:
    from rotator.devkit.localaws import LocalAws
    from rotator.devkit.sandbox.server import SandboxServer
    from rotator.devkit.sandbox.state import Settings as SandboxSettings

    started = time.monotonic()
    out = ctx.out
    out.line("rotator demo: a normal and an emergency rotation, on this machine", style="bold")
    out.line(f"files in {ctx.dir} (kept afterwards)")
    try:
        aws = LocalAws()
    except RuntimeError as exc:
        raise SetupError(str(exc)) from None
    sandbox = SandboxServer(
        settings=SandboxSettings(token_lifetime_s=TOKEN_LIFETIME_S),
        state_file=ctx.sandbox_state,
    )
    with sandbox, aws:
        out.line(f"Adobe sandbox (IMS and I/O Management API) on {sandbox.url}")
        out.line(f"AWS Secrets Manager stand-in (moto) on {aws.endpoint_url}")
        app, consumer = set_up(ctx, sandbox.url, aws.endpoint_url, sandbox.admin)
        try:
            ok = rotate_twice(ctx, app, consumer, sandbox.admin, aws.endpoint_url)
            ok = audit(ctx, app) and ok
            report_text = report(ctx, app)
            ok = leak_check(ctx, sandbox.admin, report_text) and ok
            sandbox.admin.save()
            files(ctx)
            if ctx.keep_running:
                linger(ctx, consumer)
        finally:
            consumer.stop()
            app.close()
    out.line(f"the auditor's report of this run: {ctx.report_path}", style="bold")
    verdict = "demo passed" if ok else "demo FAILED: " + "; ".join(ctx.problems)
    out.line(
        f"{verdict} in {time.monotonic() - started:.1f}s; the servers have stopped",
        style="bold green" if ok else "bold red",
    )
    return ok
