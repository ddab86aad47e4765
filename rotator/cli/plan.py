"""`rotator plan`: what the daemon's next tick does with each credential, and why.

A dry run that needs no dry-run mode: the tick's own judgment (`rotator.domain.outlook`)
applied to the state database's rows on the database's clock, through the read service
(`rotator.observe.insights`). It opens the database read-only and calls neither Adobe nor AWS.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

from rotator.cli.completion import credential_names
from rotator.cli.context import Ctx, pass_ctx
from rotator.cli.output import EXIT_ATTENTION, EXIT_OK, errors, say, ts
from rotator.cli.progress import human
from rotator.domain.outlook import Outlook, Step

_TICK = {
    "survey": "survey it (read AWSCURRENT and Adobe's list, record the age), then decide",
    "start": "start a scheduled rotation",
    "step": "run its rotation's next step",
    "wait": "nothing",
}


@click.command()
@click.argument("names", metavar="[NAME]...", nargs=-1, shell_complete=credential_names)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def plan(ctx: Ctx, names: tuple[str, ...], as_json: bool) -> None:
    """What rotator will do next, and when, for every credential (or each NAME).

    Per credential: when it is due and why (age against max_age, the cron schedule, the
    window), what holds it back (a hold, the failure cooldown, the window, needs
    attention, not surveyed yet), what the daemon's next tick does with it, and for an
    unfinished rotation its next step: what it will call at Adobe and AWS, and what it
    waits for (the drain deadline and the evidence behind it).

    It changes nothing: it only reads the state database (on the database's clock, with
    the daemon's own rules) and calls neither Adobe nor AWS. Exit 0, or 3 when a
    rotation needs attention.
    """
    from rotator.app import insights
    from rotator.observe.insights import credential_rules

    with errors():
        settings = ctx.settings
        for name in names:
            settings.credential(name)  # an unknown name: exit 2 before anything is opened
        rules = credential_rules(settings)
        wanted = list(dict.fromkeys(names)) or list(rules)
        with ctx.store() as store:
            outlooks = insights(settings, store).outlooks(rules, wanted)
    if as_json:
        say(json.dumps([as_dict(o) for o in outlooks], indent=2))
    elif not outlooks:
        say("no credentials configured")
    else:
        for o in outlooks:
            for line in lines(o):
                say(line)
    attention = any(h.kind == "needs_attention" for o in outlooks for h in o.holds)
    sys.exit(EXIT_ATTENTION if attention else EXIT_OK)


def lines(o: Outlook) -> list[str]:
    """A credential as a few lines: a headline, then indented reasons."""
    out = [f"{o.name}: {headline(o)}"]
    out += [f"  due: {why}" for why in o.why]
    out += [f"  held: {hold.text}" for hold in o.holds]
    if o.rotation is not None and o.step is not None:
        r, step = o.rotation, o.step
        out.append(
            f"  rotation {r.id} ({r.trigger.value}) {r.state.value}: next {step.does}, "
            f"{_at(step.at, o.now)}"
        )
        out += [f"    Adobe: {call}" for call in step.adobe]
        out += [f"    AWS: {call}" for call in step.aws]
        if step.waits_for:
            out.append(f"    waits for {step.waits_for}")
    out.append(f"  next tick: {_TICK[o.tick]}")
    return out


def headline(o: Outlook) -> str:
    """`due now`, `due <when>`, `not surveyed yet`, or the rotation's state."""
    if o.rotation is not None:
        return f"rotation {o.rotation.id} {o.rotation.state.value}"
    if o.due:
        return "due now: a scheduled rotation starts on the next tick"
    if o.due_at is None:
        return "due unknown"  # the hold below says why (not surveyed yet, age unknown)
    if o.starts_at is None:
        return f"due {ts(o.due_at)}; held until a person acts"
    if o.starts_at > o.due_at:
        return f"due {ts(o.due_at)}; starts {_at(o.starts_at, o.now)}"
    return f"due {_at(o.due_at, o.now)}"


def _at(moment: datetime | None, now: datetime) -> str:
    if moment is None or moment <= now:
        return "now"
    return f"at {ts(moment)} (in {human(moment - now)})"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def as_dict(o: Outlook) -> dict[str, Any]:
    """`plan --json`: one object per credential (no secret values: none are read)."""
    rotation = None
    if o.rotation is not None:
        r = o.rotation
        rotation = {
            "id": r.id,
            "trigger": r.trigger.value,
            "state": r.state.value,
            "resume_state": r.resume_state.value if r.resume_state else None,
            "old_uuid": r.old_uuid,
            "new_uuid": r.new_uuid,
            "next_attempt_at": _iso(r.next_attempt_at),
            "last_error": r.last_error,
            "next_step": _step(o.step) if o.step else None,
        }
    return {
        "name": o.name,
        "now": o.now.isoformat(),
        "next_tick": o.tick,
        "due": o.due,
        "due_at": _iso(o.due_at),
        "starts_at": _iso(o.starts_at),
        "why": list(o.why),
        "holds": [{"kind": h.kind, "text": h.text, "until": _iso(h.until)} for h in o.holds],
        "surveyed": o.surveyed,
        "survey_next_tick": o.survey,
        "rotation": rotation,
    }


def _step(step: Step) -> dict[str, Any]:
    return {
        "state": step.state.value,
        "at": _iso(step.at),
        "does": step.does,
        "adobe": list(step.adobe),
        "aws": list(step.aws),
        "waits_for": step.waits_for,
        "drain_deadline": _iso(step.deadline),
        "alert_at": _iso(step.alert_at),
        "old_last_used_at": _iso(step.old_last_used_at),
        "new_last_used_at": _iso(step.new_last_used_at),
    }
