"""What the demo leaves behind and checks last: the audit trail (folded, its chain
verified), the auditor's report, the leak check on its own output, the files it kept, and
``--keep-running``."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

from rotator.devkit.demo.constants import CREDENTIAL
from rotator.devkit.demo.consumer import Consumer
from rotator.devkit.demo.context import DemoContext, program, utc_time

if TYPE_CHECKING:
    from rotator.adapters.db.audit import AuditEvent
    from rotator.app import App
    from rotator.devkit.sandbox.client import SandboxAdmin

__all__ = ["audit", "files", "leak_check", "linger", "report"]


def audit(ctx: DemoContext, app: App) -> bool:
    out = ctx.out
    out.line()
    out.line("3. the audit trail, folded (one block per rotation, oldest first)", style="bold")
    events = app.store.events(credential=CREDENTIAL, limit=None, ascending=True)
    for line in _folded_trail(events):
        out.line(line)
    requesters = sorted({e.actor for e in events if e.kind == "started"})
    workers = sorted({e.actor for e in events} - set(requesters))
    out.line(
        f"   actors: {', '.join(requesters)} asked for the rotations (at the CLI, `--actor` "
        f"or your OS user); {', '.join(workers) or 'none'} ran the steps: an engine worker, "
        f"named host:pid:random, one per process, the holder of the rotation's lease"
    )
    out.line(
        f"   every event, with its raw detail: "
        f"`{program()} --config {ctx.config_path} history --all --json`"
    )
    from rotator.audit.chain import Checkpoint

    checkpoint = Checkpoint.parse(ctx.checkpoints.read_text("utf-8"))
    result = app.store.verify(checkpoint)
    if not result.ok:
        out.line(f"   ✗ audit chain broken: {result.problems[0]}", style="red")
        ctx.problems.append(f"audit chain broken: {result.problems[0]}")
        return False
    out.line(
        f"   ✓ audit chain verified: {result.checked} events, each signed and linked to the "
        f"one before it, {result.replayed} rows replayed; {result.scope}",
        style="green",
    )
    return True


def report(ctx: DemoContext, app: App) -> str:
    """The auditor's report of this run (HTML, and the same as JSON beside it)."""
    from rotator.audit.render import render
    from rotator.cli.report import build_report

    report = build_report(app.settings, app.store)
    html = render(report, "html")
    ctx.report_path.write_text(html, "utf-8")
    json_text = render(report, "json")
    ctx.report_path.with_suffix(".json").write_text(json_text, "utf-8")
    ctx.out.line()
    ctx.out.line("4. the auditor's report", style="bold")
    ctx.out.line(
        f"   {ctx.report_path.name} in the files folder, one self-contained HTML file (also "
        f"{ctx.report_path.with_suffix('.json').name}); "
        f"`{program()} --config {ctx.config_path} report` writes it again"
    )
    return html + json_text


def leak_check(ctx: DemoContext, admin: SandboxAdmin, report: str = "") -> bool:
    """I5 on this very output and the report: no client secret or access token the
    sandbox issued, nor the audit key."""
    secrets = [*admin.secret_values(), _pem_body(ctx.audit_key.read_text("utf-8"))]
    tokens = admin.token_values()
    printed = ctx.out.printed() + report
    leaked = sum(1 for value in [*secrets, *tokens] if value and value in printed)
    if leaked:
        ctx.out.line(f"   ✗ {leaked} secret values appear in this output", style="red")
        ctx.problems.append(f"{leaked} secret values were printed")
        return False
    ctx.out.line(
        f"   ✓ none of the {len(secrets) - 1} client secrets and {len(tokens)} access "
        f"tokens the sandbox issued, nor the audit key, appears in this output or the report",
        style="green",
    )
    return True


def files(ctx: DemoContext) -> None:
    out = ctx.out
    out.line()
    out.line(f"files (kept) in {ctx.dir}:", style="bold")
    out.line(f"   {ctx.config_path.name:<19} the config this demo ran on")
    out.line(f"   {ctx.db_path.name:<19} the state database (SQLite): rotations, events")
    out.line(
        f"   {ctx.sandbox_state.name:<19} the fake Adobe's own database (mode 0600; its "
        f"sandbox secrets are worthless against real Adobe)"
    )
    out.line(f"   {ctx.audit_key.name:<19} the audit chain's signing key (mode 0600)")
    out.line(f"   {ctx.keyring.name:<19} the public keyring (all `audit verify` needs)")
    out.line(f"   {ctx.checkpoints.name:<19} checkpoints of the audit chain's head")
    out.line(f"   {ctx.report_path.name:<19} the auditor's report (and report.json)")
    out.line(f"   {program()} --config {ctx.config_path} history")
    out.line(
        f"   {program()} --config {ctx.config_path} audit verify --checkpoint {ctx.checkpoints}"
    )
    if not ctx.keep_running:
        out.line(
            "the sandbox and the AWS stand-in stop when the demo exits (AWS's state was in "
            "memory): commands that call them (rotate, check, run) need --keep-running"
        )


def linger(ctx: DemoContext, consumer: Consumer) -> None:
    out = ctx.out
    out.line()
    out.line(
        "--keep-running: the servers and the consumer keep running; from another terminal:",
        style="bold",
    )
    prefix = "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
    out.line(f"   {prefix} {program()} --config {ctx.config_path} rotate {CREDENTIAL} --wait")
    out.line(f"   {prefix} {program()} --config {ctx.config_path} run")
    out.line("press Ctrl-C (or send SIGTERM) to stop")
    consumer.phase = "kept running"
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    out.line()
    out.line(f"consumer while kept running: {consumer.describe('kept running', {})}")


# Routine steps: named in a rotation's one line of steps, not each on a line of its own.
_ROUTINE = frozenset(
    {"planned", "staged", "verified", "draining", "poll", "quiet", "gone", "retiring", "token"}
)


def _folded_trail(events: list[AuditEvent]) -> list[str]:
    """The audit trail as a person reads it: per rotation, its steps on one line and its
    telling events (requested, promoted, deleted, ended) each on one line with a summary."""
    from rotator.cli.inspect import summary

    lines: list[str] = []
    by_rotation: dict[int | None, list[AuditEvent]] = {}
    for e in events:
        by_rotation.setdefault(e.rotation_id, []).append(e)
    for rotation_id, group in by_rotation.items():
        if rotation_id is None:
            for e in group:
                lines.append(f"   #{e.id:<4} {e.kind} by {e.actor}  {summary(e.kind, e.detail)}")
            continue
        steps: list[str] = []
        for e in group:
            state = e.to_state or e.kind
            if e.kind == "poll":
                continue
            if not steps or steps[-1] != state:
                steps.append(state)
        polls = sum(1 for e in group if e.kind == "poll")
        if polls and "draining" in steps:
            steps[steps.index("draining")] = f"draining (polled {polls}x)"
        first, last = group[0], group[-1]
        lines.append(
            f"   rotation {rotation_id}, {utc_time(first.at)} to {utc_time(last.at)}: "
            + " -> ".join(steps)
        )
        for e in group:
            if e.kind in _ROUTINE:
                continue
            move = f"{e.from_state or '-'} -> {e.to_state or '-'}"
            lines.append(
                f"      #{e.id:<4} rotation {rotation_id}  {e.kind:<14} {move:<22} by {e.actor}  "
                f"{summary(e.kind, e.detail)}".rstrip()
            )
    return lines


def _pem_body(pem: str) -> str:
    """The key material of a PEM file (its base64 lines), as it would leak if printed."""
    return "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
