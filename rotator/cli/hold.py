"""`rotator resume`: lift the hold that `rotator cancel` put on a credential.

A cancel means "stop rotating this for now": the credential stays on hold, and the daemon
starts no scheduled rotation of it, until an operator resumes it. Emergencies ignore holds.
Both changes are audit events (`cancel_requested` carries the hold, `resumed` clears it).
"""

from __future__ import annotations

import json

import click

from rotator.cli.completion import credential_names
from rotator.cli.context import Ctx, actor, pass_ctx
from rotator.cli.output import errors, say, ts
from rotator.hardening import reason_option


@click.command()
@click.argument("name", shell_complete=credential_names)
@click.option("--reason", default="", callback=reason_option, help="Recorded in the audit trail.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def resume(ctx: Ctx, name: str, reason: str, as_json: bool) -> None:
    """Lift NAME's hold (set by `rotator cancel`): scheduled rotations may start again.

    Exit 0 whether or not NAME was on hold (resuming twice changes nothing).
    """
    with errors():
        ctx.settings.credential(name)  # an unknown name: exit 2 before anything is opened
        with ctx.app() as app:  # the app's store: its audit events are keyed
            lifted = app.store.resume(name, actor=actor(), reason=reason)
    if as_json:
        held = (
            {"since": lifted.held_at.isoformat() if lifted.held_at else None, "by": lifted.held_by}
            if lifted is not None
            else None
        )
        say(json.dumps({"credential": name, "resumed": lifted is not None, "was_held": held}))
        return
    if lifted is None:
        say(f"{name} is not on hold; nothing to resume")
        return
    say(
        f"{name} resumed (on hold since {ts(lifted.held_at)} by {lifted.held_by}); "
        f"scheduled rotations may start again"
    )
