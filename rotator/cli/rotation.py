"""Commands that change a credential's rotation: rotate, cancel, adopt; and `follow`,
which runs the engine's loop that works on (or watches) a rotation until it drains or ends."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from rotator.cli.completion import credential_names
from rotator.cli.context import Ctx, actor, pass_ctx
from rotator.cli.output import (
    EXIT_ATTENTION,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    die,
    errors,
    say,
)
from rotator.cli.progress import as_json as as_json_of
from rotator.cli.progress import choose
from rotator.domain.model import Rotation, State, Trigger, canonical_uuid
from rotator.engine.follow import follow as follow_rotation
from rotator.hardening import plain_option, reason_option

if TYPE_CHECKING:
    from rotator.app import App
    from rotator.cli.progress import Progress


def _exit_for(rotation: Rotation) -> int:
    if rotation.state is State.NEEDS_ATTENTION:
        return EXIT_ATTENTION
    if rotation.state in {State.FAILED, State.CANCELLED}:
        return EXIT_FAILED
    return EXIT_OK


def follow(
    app: App,
    rotation: Rotation,
    *,
    wait: bool,
    show: Callable[[Rotation], None],
    poll: float = 1.0,
    deadline: float | None = None,
    on_poll: Callable[[Rotation], None] | None = None,
    note: Callable[[str], None] = say,
) -> Rotation:
    """Work on (or watch) a credential's rotation until it drains or ends: the engine's
    `follow` (rotator.engine.follow), saying what it notes on stdout unless told otherwise."""
    return follow_rotation(
        app.engine,
        rotation,
        wait=wait,
        show=show,
        note=note,
        poll=poll,
        deadline=deadline,
        on_poll=on_poll,
    )


@click.command()
@click.argument("name", shell_complete=credential_names)
@click.option(
    "--emergency",
    is_flag=True,
    help="The secret leaked: promote a fresh one, then delete every other at once.",
)
@click.option("--reason", default="", callback=reason_option, help="Recorded in the audit trail.")
@click.option(
    "--wait",
    is_flag=True,
    help="Keep watching through draining until completed or needs attention.",
)
@click.option("--json", "as_json", is_flag=True, help="Print only the final rotation, as JSON.")
@pass_ctx
def rotate(ctx: Ctx, name: str, emergency: bool, reason: str, wait: bool, as_json: bool) -> None:
    """Start (or resume) a rotation of NAME now, showing each step.

    Returns when the rotation reaches draining or an end state (with --wait: when it
    completes or needs attention). Works with or without a daemon running: whoever holds
    the rotation's lease does the work, and the other watches. On a terminal the current
    step, the evidence and the drain deadline show on one live line. Exit 0 at draining
    or completed, 1 failed or cancelled, 3 needs attention, 130 interrupted.
    """
    interrupted = (
        f"interrupted; {name}'s rotation resumes from its last saved step "
        f"(`rotator rotate {name}` or the daemon)"
    )
    if emergency and not reason.strip():
        die("--emergency needs --reason (what leaked, and how you know)", EXIT_USAGE)
    with errors(interrupted):
        ctx.settings.credential(name)  # an unknown name: exit 2 before anything is opened
        final = _rotate(ctx, name, emergency=emergency, reason=reason, wait=wait, json_=as_json)
    if as_json:
        say(json.dumps(as_json_of(final)))
    sys.exit(_exit_for(final))


def _rotate(
    ctx: Ctx, name: str, *, emergency: bool, reason: str, wait: bool, json_: bool
) -> Rotation:
    with ctx.app(notify=True) as app:
        trigger = Trigger.EMERGENCY if emergency else Trigger.MANUAL
        before = app.store.active(name)
        if before is None:
            # Read-only first: a credential that cannot rotate leaves no rotation behind.
            from structlog.contextvars import bound_contextvars

            from rotator.preflight import check_one

            with bound_contextvars(credential=name):
                ready = check_one(
                    app.settings, name, app.adobe, app.aws, app.store.credential_rows().get(name)
                )
            if not ready.ok and ready.blocks_rotation:
                die(f"{name}: cannot rotate: {ready.detail}", EXIT_FAILED)
        rotation = app.engine.request(name, trigger, actor=actor(), reason=reason)
        progress = choose(as_json=json_, policy=app.settings.policy(ctx.settings.credential(name)))
        try:
            if emergency and not rotation.emergency:
                progress.note(
                    f"rotation {rotation.id} of {name} is mid-step ({rotation.state.value}): it "
                    f"is abandoned at its step boundary, then the emergency rotation starts"
                )
            elif emergency and before is not None and before.id != rotation.id:
                progress.note(
                    f"rotation {before.id} of {name} ({before.state.value}) abandoned for the "
                    f"emergency, which deletes what it left behind"
                )
            elif before is not None and before.id == rotation.id:
                progress.note(
                    f"{name} already has rotation {rotation.id} ({rotation.state.value}); "
                    f"following it"
                )
            return _follow(app, rotation, progress, wait=wait)
        finally:
            progress.close()


def _follow(
    app: App, rotation: Rotation, progress: Progress, *, wait: bool, deadline: float | None = None
) -> Rotation:
    return follow(
        app,
        rotation,
        wait=wait,
        show=progress.step,
        on_poll=progress.poll,
        note=progress.note,
        deadline=deadline,
    )


@click.command()
@click.argument("name", shell_complete=credential_names)
@click.option("--reason", default="", callback=reason_option, help="Recorded in the audit trail.")
@click.option("--json", "as_json", is_flag=True, help="Print only the outcome, as JSON.")
@pass_ctx
def cancel(ctx: Ctx, name: str, reason: str, as_json: bool) -> None:
    """Cancel NAME's unfinished rotation, safely at any state, and hold NAME.

    Before promotion the new secret is deleted and AWSPENDING dropped, confirmed by a
    second look at Adobe about a minute later (three more, a minute apart, when the process
    died inside an add and its answer was lost); after promotion draining stops and both
    secrets stay valid. NAME stays on hold (no scheduled rotation)
    until `rotator resume NAME`. An emergency rotation past its promotion is refused:
    finishing it is what deletes the leaked secret. Exit 0 once cancelled, 3 if it needs a
    person, else 1: it ended otherwise, or was still on its way after four minutes (the
    request stands, and whoever holds the rotation carries it out).
    """
    held = f"{name} is on hold: no scheduled rotation starts until `rotator resume {name}`"
    with errors():
        ctx.settings.credential(name)
        with ctx.app(notify=True) as app:
            rotation = app.store.request_cancel(name, actor=actor(), reason=reason)
            if rotation is None:
                if as_json:
                    say(json.dumps({"credential": name, "rotation": None}))
                else:
                    say(f"{name} has no unfinished rotation; nothing to cancel")
                return
            progress = choose(as_json=as_json, policy=None)
            try:
                final = _follow(app, rotation, progress, wait=True, deadline=time.monotonic() + 240)
            finally:
                progress.close()
    if as_json:
        say(json.dumps({"credential": name, "rotation": as_json_of(final), "on_hold": True}))
    else:
        say(held)
        if not final.state.terminal:
            say(f"cancel requested; rotation {final.id} is still {final.state.value}", err=True)
    if final.state is State.CANCELLED:
        sys.exit(EXIT_OK)
    sys.exit(EXIT_ATTENTION if final.state is State.NEEDS_ATTENTION else EXIT_FAILED)


@click.command()
@click.argument("name", shell_complete=credential_names)
@click.option(
    "--uuid",
    "uuid",
    required=True,
    callback=plain_option,
    help="The Adobe secret uuid AWSCURRENT holds.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def adopt(ctx: Ctx, name: str, uuid: str, as_json: bool) -> None:
    """Tell rotator which Adobe secret uuid NAME's AWSCURRENT holds (when it cannot tell)."""
    with errors():
        ctx.settings.credential(name)
        uuid = canonical_uuid(uuid)  # Adobe's spelling, as every uuid rotator compares
        with ctx.app() as app:
            changed = app.engine.adopt(name, uuid, actor=actor())
    if as_json:
        say(json.dumps({"credential": name, "current_uuid": uuid, "changed": changed}))
    elif changed:
        say(f"{name}: AWSCURRENT recorded as Adobe secret {uuid}")
    else:
        say(f"{name}: AWSCURRENT is already recorded as Adobe secret {uuid}; nothing changed")
