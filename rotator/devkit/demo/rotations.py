"""The demo's two rotations, a normal and an emergency one, driven by the real engine and
shown step by step, with the checks from the outside after each (Adobe's list, AWS's labels,
the consumer's tally)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rotator.devkit.console import say
from rotator.devkit.demo.constants import (
    AWS_NAME,
    CREDENTIAL,
    SETTLE_TIMEOUT_S,
    TOKEN_LIFETIME_S,
)
from rotator.devkit.demo.consumer import Consumer
from rotator.devkit.demo.context import DemoContext, utc_time
from rotator.devkit.demo.output import DOING, Board

if TYPE_CHECKING:
    from rotator.app import App
    from rotator.devkit.sandbox.client import SandboxAdmin
    from rotator.domain.model import Rotation, State

__all__ = ["rotate_twice"]


def _paths() -> tuple[list[State], list[State]]:
    """The states a normal rotation passes, and an emergency one (no draining)."""
    from rotator.domain.model import State

    normal_path: list[State] = [
        State.PLANNED,
        State.CREATING,
        State.STAGED,
        State.VERIFIED,
        State.PROMOTED,
        State.DRAINING,
        State.RETIRING,
        State.COMPLETED,
    ]
    return normal_path, [s for s in normal_path if s is not State.DRAINING]


def rotate_twice(
    ctx: DemoContext, app: App, consumer: Consumer, admin: SandboxAdmin, aws_url: str
) -> bool:
    """The normal rotation, then the emergency one; False if either went wrong."""
    normal_path, emergency_path = _paths()
    ok = _normal(ctx, app, consumer, admin, aws_url, normal_path)
    return _emergency(ctx, app, consumer, admin, emergency_path) and ok


def _normal(
    ctx: DemoContext,
    app: App,
    consumer: Consumer,
    admin: SandboxAdmin,
    aws_url: str,
    path: list[State],
) -> bool:
    from rotator.domain.model import State, Trigger

    ctx.out.line()
    normal = _rotate(
        ctx,
        app,
        consumer,
        Trigger.MANUAL,
        "normal",
        path,
        f"1. normal rotation (quiet period {ctx.quiet})",
    )
    ok = normal.state is State.COMPLETED
    if not ok:
        ctx.problems.append(f"the normal rotation ended {normal.state.value}")
    tally = consumer.tally("normal")
    if tally.invalid_client:
        ctx.problems.append(
            f"the consumer got invalid_client {tally.invalid_client} times in the normal rotation"
        )
        ok = False
    if normal.state is State.COMPLETED:
        ok = _check_world(ctx, app, admin, aws_url, normal) and ok
    return ok


def _emergency(
    ctx: DemoContext, app: App, consumer: Consumer, admin: SandboxAdmin, path: list[State]
) -> bool:
    from rotator.domain.model import State, Trigger

    ok = True
    ctx.out.line()
    consumer.phase = "emergency"
    emergency = _rotate(
        ctx,
        app,
        consumer,
        Trigger.EMERGENCY,
        "emergency",
        path,
        "2. emergency rotation (the secret leaked: no quiet period)",
    )
    consumer.phase = "after"
    if emergency.state is not State.COMPLETED:
        ctx.problems.append(f"the emergency rotation ended {emergency.state.value}")
        ok = False
    else:
        listed = [s["uuid"] for s in admin.secrets(app.settings.credentials[0].credential_id)]
        ctx.out.line(f"   Adobe lists only {', '.join(listed)}: every other secret is gone")
    ctx.out.line(
        "   an emergency may fail a consumer still holding the leaked secret: that is its purpose"
    )
    return ok


def _rotate(
    ctx: DemoContext,
    app: App,
    consumer: Consumer,
    trigger: Any,
    phase: str,
    path: list[State],
    title: str,
) -> Rotation:
    from rotator.engine.follow import follow

    board = Board(title, path, consumer, phase, ctx.quiet)
    if not ctx.out.live:
        ctx.out.line(title, style="bold")
    consumer.phase = phase
    rotation = app.engine.request(CREDENTIAL, trigger, actor="demo", reason="rotator demo")
    show: Callable[[Rotation], None] = board.update
    if not ctx.out.live:
        show = _plain_step(ctx, board)
    with ctx.out.board(board):
        final = follow(
            app.engine,
            rotation,
            wait=True,
            show=show,
            note=say,
            poll=0.1,
            deadline=time.monotonic()
            + SETTLE_TIMEOUT_S
            + app.settings.policy(app.settings.credentials[0]).quiet_period.total_seconds(),
        )
        board.update(final)
        if final.new_uuid:  # consumers move over at their next read: wait for ours to
            deadline = time.monotonic() + 3 * TOKEN_LIFETIME_S + 2
            while final.new_uuid not in consumer.last_used and time.monotonic() < deadline:
                time.sleep(0.02)
    if not ctx.out.live:  # the live board's last frame already shows the tally
        ctx.out.line(f"   consumer: {consumer.describe(phase, board.uuids())}")
    if final.state.value != "completed":
        ctx.out.line(
            f"   rotation {final.id} ended {final.state.value}: {final.last_error or ''}",
            style="red",
        )
    return final


def _plain_step(ctx: DemoContext, board: Board) -> Callable[[Rotation], None]:
    def show(rotation: Rotation) -> None:
        board.update(rotation)
        state = rotation.state.value
        at = board.reached.get(state, 0.0)
        detail = board.detail(state) if state in DOING else (rotation.last_error or "")
        if state == "retiring" and rotation.evidence is not None:
            used = rotation.evidence.old_last_used_at
            detail += f" (Adobe: last used {utc_time(used)})" if used else " (Adobe: never used)"
        ctx.out.line(f"   +{at:6.2f}s  {state:<15} {detail}")

    return show


def _check_world(
    ctx: DemoContext, app: App, admin: SandboxAdmin, aws_url: str, normal: Rotation
) -> bool:
    """I4 after a normal rotation, from the outside: Adobe's list and every AWS label."""
    import boto3

    cfg = app.settings.credentials[0]
    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=aws_url)

    def uuid_at(stage: str) -> str | None:
        value = sm.get_secret_value(SecretId=AWS_NAME, VersionStage=stage)["SecretString"]
        found = json.loads(value).get("secret_uuid")
        return str(found) if found else None

    listed = [s["uuid"] for s in admin.secrets(cfg.credential_id)]
    stages = sm.describe_secret(SecretId=AWS_NAME)["VersionIdsToStages"]
    pending = any("AWSPENDING" in labels for labels in stages.values())
    current, previous = uuid_at("AWSCURRENT"), uuid_at("AWSPREVIOUS")
    checks = [
        (listed == [normal.new_uuid], f"Adobe lists exactly one secret, {normal.new_uuid}"),
        (current == normal.new_uuid, "AWSCURRENT holds the new secret"),
        (previous == normal.old_uuid, f"AWSPREVIOUS holds the old one, {normal.old_uuid}"),
        (not pending, "no version carries AWSPENDING"),
    ]
    for passed, text in checks:
        ctx.out.line(f"   {'✓' if passed else '✗'} {text}", style="green" if passed else "red")
        if not passed:
            ctx.problems.append(f"after the normal rotation, not true: {text}")
    return all(passed for passed, _ in checks)
