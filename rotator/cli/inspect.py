"""Commands that read: status (every credential now) and history (the audit trail)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from rotator.cli.context import Ctx, pass_ctx
from rotator.cli.output import EXIT_ATTENTION, EXIT_OK, errors, say, ts

if TYPE_CHECKING:
    from rotator.app import App


def _status_rows(app: App) -> list[dict[str, Any]]:
    settings = app.settings
    rows = app.store.credential_rows()
    now = datetime.now(UTC)
    result = []
    for cfg in settings.credentials:
        row = rows.get(cfg.name)
        policy = settings.policy(cfg)
        created = row.secret_created_at if row else None
        active = app.store.active(cfg.name)
        entry: dict[str, Any] = {
            "name": cfg.name,
            "current_uuid": row.current_uuid if row else None,
            "secret_created_at": created.isoformat() if created else None,
            "secret_age_days": round((now - created).total_seconds() / 86400, 2)
            if created
            else None,
            "due_at": (created + policy.max_age).isoformat() if created else None,
            "last_rotated_at": row.last_rotated_at.isoformat()
            if row and row.last_rotated_at
            else None,
            "last_error": row.last_error if row else None,
            # Set by `rotator cancel`: no scheduled rotation until `rotator resume`.
            "hold": {"since": row.held_at.isoformat(), "by": row.held_by, "reason": row.hold_reason}
            if row and row.held_at
            else None,
            "rotation": None,
        }
        if active is not None:
            entry["rotation"] = {
                "id": active.id,
                "trigger": active.trigger.value,
                "state": active.state.value,
                "resume_state": active.resume_state.value if active.resume_state else None,
                "old_uuid": active.old_uuid,
                "new_uuid": active.new_uuid,
                "evidence": active.evidence.as_dict() if active.evidence else None,
                "next_attempt_at": active.next_attempt_at.isoformat()
                if active.next_attempt_at
                else None,
                "last_error": active.last_error,
            }
        result.append(entry)
    return result


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(ctx: Ctx, as_json: bool) -> None:
    """Every credential: current uuid, secret age, due date, any unfinished rotation."""
    with errors(), ctx.app() as app:
        rows = _status_rows(app)
    attention = any(r["rotation"] and r["rotation"]["state"] == "needs_attention" for r in rows)
    if as_json:
        say(json.dumps(rows, indent=2))
        sys.exit(EXIT_ATTENTION if attention else EXIT_OK)
    for r in rows:
        age = f"{r['secret_age_days']}d" if r["secret_age_days"] is not None else "unknown"
        line = (
            f"{r['name']}: secret {r['current_uuid'] or 'unknown'}, age {age}, "
            f"due {r['due_at'] or 'unknown'}"
        )
        rot = r["rotation"]
        if rot:
            line += f"; rotation {rot['id']} {rot['state']}"
            if rot["evidence"]:
                ev = rot["evidence"]
                line += (
                    f" (old last used {ev['old_last_used_at'] or 'never'}, "
                    f"new last used {ev['new_last_used_at'] or 'never'})"
                )
            if rot["last_error"]:
                line += f"; {rot['last_error']}"
        elif r["last_error"]:
            line += f"; {r['last_error']}"
        if r["hold"]:
            line += f"; on hold since {r['hold']['since']} by {r['hold']['by']}"
        say(line)
    if not rows:
        say("no credentials configured")
    sys.exit(EXIT_ATTENTION if attention else EXIT_OK)


@click.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@pass_ctx
def history(ctx: Ctx, name: str | None, as_json: bool, limit: int) -> None:
    """The audit trail, newest first (of NAME, or of every credential)."""
    with errors():
        if name:
            ctx.settings.credential(name)
        with ctx.store() as store:
            events = store.events(credential=name, limit=limit)
    if as_json:
        say(json.dumps([e.as_dict() for e in events], indent=2))
        return
    if not events:
        say("no audit events yet")
    for e in events:
        move = f"{e.from_state or '-'} -> {e.to_state or '-'}"
        detail = json.dumps(e.detail, sort_keys=True) if e.detail else ""
        rid = f"rotation {e.rotation_id}" if e.rotation_id else "credential"
        verified = f" (verified: {e.actor_verified})" if e.actor_verified else ""
        say(
            f"{ts(e.at)}  #{e.id}  {e.credential}  {rid}  {e.kind}  {move}  "
            f"by {e.actor}{verified}  {detail}".rstrip()
        )
