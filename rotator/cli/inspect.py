"""Commands that read: status (every credential now) and history (the audit trail)."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from rotator import redaction
from rotator.cli.completion import credential_names
from rotator.cli.context import Ctx, pass_ctx
from rotator.cli.output import EXIT_ATTENTION, EXIT_OK, errors, say, ts
from rotator.domain.events import EventKind
from rotator.domain.machine import drain_deadline
from rotator.domain.model import Policy, Rotation, State

if TYPE_CHECKING:
    from rotator.adapters.db.audit import AuditEvent
    from rotator.app import App


def _status_rows(app: App) -> list[dict[str, Any]]:
    """Every configured credential, judged as `rotator plan` and the daemon's tick judge it
    (rotator/domain/outlook.py), on the database's clock."""
    from rotator.observe.insights import Insights, credential_rules

    settings = app.settings
    rows = app.store.credential_rows()
    rules = credential_rules(settings)
    outlooks = {o.name: o for o in Insights(app.store.engine).outlooks(rules)}
    result = []
    for cfg in settings.credentials:
        row = rows.get(cfg.name)
        policy = rules[cfg.name].policy
        seen = outlooks[cfg.name]
        now = seen.now
        created = row.secret_created_at if row else None
        active = seen.rotation
        # The moment a scheduled rotation may start (window, cooldown included); while a
        # person must act (a hold), when it became due by age or cron.
        due = seen.now if seen.due else (seen.starts_at or seen.due_at)
        entry: dict[str, Any] = {
            "name": cfg.name,
            "current_uuid": row.current_uuid if row else None,
            "secret_created_at": created.isoformat() if created else None,
            "secret_age_days": round((now - created).total_seconds() / 86400, 2)
            if created
            else None,
            "due_at": due.isoformat() if due else None,
            "surveyed": seen.surveyed,
            "holds": [h.text for h in seen.holds if h.kind != "needs_attention"],
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
                # When the old secret may be deleted if no use shows up: the engine's rule.
                "drain_deadline": _drain_deadline(active, policy),
                "next_attempt_at": active.next_attempt_at.isoformat()
                if active.next_attempt_at
                else None,
                "last_error": active.last_error,
            }
        result.append(entry)
    return result


@click.command()
@click.argument("name", required=False, shell_complete=credential_names)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--wide", is_flag=True, help="Full uuids in the table (it shortens them on a narrow terminal)."
)
@pass_ctx
def status(ctx: Ctx, name: str | None, as_json: bool, wide: bool) -> None:
    """Every credential (or NAME only): current uuid, secret age, due date (the daemon's
    own judgment, as `rotator plan` shows it), any unfinished rotation.

    A table on a terminal (uuids shortened to a prefix when the terminal is narrow: full
    with --wide); one line per credential when piped; `--json` for scripts.
    """
    with errors():
        if name:
            ctx.settings.credential(name)  # an unknown name: exit 2 before anything is opened
        with ctx.app() as app:
            rows = [r for r in _status_rows(app) if name is None or r["name"] == name]
    attention = any(r["rotation"] and r["rotation"]["state"] == "needs_attention" for r in rows)
    if as_json:
        say(json.dumps(rows, indent=2))
    elif not rows:
        say("no credentials configured")
    elif sys.stdout.isatty():
        _status_table(rows, wide=wide)
    else:
        for r in rows:
            say(_status_line(r))
    sys.exit(EXIT_ATTENTION if attention else EXIT_OK)


def _drain_deadline(active: Rotation, policy: Policy) -> str | None:
    draining = State.DRAINING in {active.state, active.resume_state}
    if not draining or active.promoted_at is None:
        return None
    return drain_deadline(active, active.evidence, policy).isoformat()


def _when(iso: str | None) -> str:
    return ts(datetime.fromisoformat(iso)) if iso else "unknown"


def _due(r: dict[str, Any]) -> str:
    if r["due_at"]:
        return _when(r["due_at"])
    return "unknown (not surveyed yet)" if not r.get("surveyed", True) else "unknown"


def _notes(r: dict[str, Any]) -> list[str]:
    """What a person should know beyond the columns: evidence, errors, a hold."""
    notes = []
    rot = r["rotation"]
    if rot and rot["evidence"]:
        ev = rot["evidence"]
        notes.append(
            f"old last used {_when(ev['old_last_used_at']).replace('unknown', 'never')}, "
            f"new last used {_when(ev['new_last_used_at']).replace('unknown', 'never')}"
        )
    if rot and rot.get("drain_deadline"):
        notes.append(f"old secret deleted at {_when(rot['drain_deadline'])} if unused until then")
    error = (rot or {}).get("last_error") or (None if rot else r["last_error"])
    if error:
        notes.append(error)
    # Not surveyed, cooldown, window, a hold: what `rotator plan` says holds it back.
    notes += [h for h in r.get("holds", []) if not (error and h.endswith(error))]
    return notes


def _status_line(r: dict[str, Any]) -> str:
    age = f"{r['secret_age_days']}d" if r["secret_age_days"] is not None else "unknown"
    line = f"{r['name']}: secret {r['current_uuid'] or 'unknown'}, age {age}, due {_due(r)}"
    rot = r["rotation"]
    if rot:
        line += f"; rotation {rot['id']} {rot['state']}"
    notes = _notes(r)
    return line + "".join(f"; {note}" for note in notes)


# Adobe's secret uuids (32 hex digits, or dashed): a table on a narrow terminal shows a
# prefix rather than fold one over two lines.
_UUID = re.compile(r"\b[0-9a-f]{8}(?:-?[0-9a-f]{4}){3}-?[0-9a-f]{12}\b", re.IGNORECASE)
_WIDE_ENOUGH = 160  # columns: below this the table shortens uuids
_PREFIX = 8


def shorten_uuids(text: str) -> str:
    """Each uuid in `text` as its first 8 characters and an ellipsis."""
    return _UUID.sub(lambda m: m.group(0)[:_PREFIX] + "…", text)


def _status_table(rows: list[dict[str, Any]], *, wide: bool = False) -> None:
    """rich's table, every cell through the redactor first; uuids never fold."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    short = not wide and console.width < _WIDE_ENOUGH
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("credential", "secret", "age", "due", "rotation", "notes"):
        # A uuid never folds: the secret column keeps its width, notes wrap between words.
        table.add_column(
            column,
            overflow="fold" if column == "notes" else "ellipsis",
            no_wrap=column in {"secret", "age"},
            min_width=_PREFIX + 1 if column == "secret" else None,
        )
    for r in rows:
        rot = r["rotation"]
        state = f"{rot['id']} {rot['state']}" if rot else "-"
        style = "red" if rot and rot["state"] == "needs_attention" else ""
        age = f"{r['secret_age_days']:.1f}d" if r["secret_age_days"] is not None else "unknown"
        cells = [
            r["name"],
            r["current_uuid"] or "unknown",
            age,
            _due(r),
            state,
            "\n".join(_notes(r)),
        ]
        texts = [redaction.redact(cell) for cell in cells]
        if short:
            texts = [shorten_uuids(text) for text in texts]
        table.add_row(*(Text(text) for text in texts), style=style)
    console.print(table)


# Draining polls repeat (every poll_interval for up to max_drain): folded into one line.
_FOLDED = EventKind.POLL


class Moment(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2 on
    """A moment for --since/--until: ISO 8601 (UTC unless it says otherwise), or a
    duration ago such as 90m, 24h, 7d."""

    name = "WHEN"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        from rotator.config import parse_duration

        try:
            return datetime.now(UTC) - parse_duration(text)
        except (ValueError, TypeError):
            pass
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is neither a time (2026-12-01, 2026-12-01T09:00Z) nor a duration "
                f"ago (90m, 24h, 7d)",
                param,
                ctx,
            )
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@click.command()
@click.argument("name", required=False, shell_complete=credential_names)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (every event).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@click.option(
    "--all", "show_all", is_flag=True, help="One line per event: do not fold draining polls."
)
@click.option("--since", type=Moment(), help="Events at or after WHEN (a time, or 24h, 7d ago).")
@click.option("--until", type=Moment(), help="Events before WHEN.")
@click.option("--rotation", "rotation_id", type=click.IntRange(1), help="One rotation's events.")
@pass_ctx
def history(
    ctx: Ctx,
    name: str | None,
    as_json: bool,
    limit: int,
    show_all: bool,
    since: datetime | None,
    until: datetime | None,
    rotation_id: int | None,
) -> None:
    """The audit trail, newest first (of NAME, or of every credential).

    One line per event with a short summary of what it records; the raw detail of each
    event only with --json. Repeated draining polls of a rotation show as one line
    ("polled 96 times, last use of the old secret seen ...") unless --all; --limit counts
    lines shown. --since and --until take a time (UTC unless it says otherwise) or a
    duration ago (24h, 7d); --rotation N shows one rotation.
    """
    with errors():
        if name:
            ctx.settings.credential(name)
        with ctx.store() as store:

            def fetch(count: int) -> list[AuditEvent]:
                return store.events(
                    credential=name,
                    limit=count,
                    rotation_id=rotation_id,
                    since=since,
                    until=until,
                )

            if as_json or show_all:
                events = fetch(limit)
                lines = [_event_line(e) for e in events]
            else:
                count = limit
                while True:  # fetch more rows until `limit` lines, folds included
                    events = fetch(count)
                    lines = _folded(events)
                    # More lines than shown: the last one shown is not a cut-off fold.
                    if len(lines) > limit or len(events) < count:
                        break
                    count *= 4
    if as_json:
        say(json.dumps([e.as_dict() for e in events], indent=2))
        return
    if not lines:
        say("no audit events" + (" match" if since or until or rotation_id else " yet"))
    for line in lines[:limit]:
        say(line)


def _event_line(e: AuditEvent) -> str:
    move = f"{e.from_state or '-'} -> {e.to_state or '-'}"
    rid = f"rotation {e.rotation_id}" if e.rotation_id else "credential"
    verified = f" (verified: {e.actor_verified})" if e.actor_verified else ""
    return (
        f"{ts(e.at)}  #{e.id}  {e.credential}  {rid}  {e.kind}  {move}  "
        f"by {e.actor}{verified}  {summary(e.kind, e.detail)}".rstrip()
    )


_SUMMARY_WIDTH = 120


def summary(kind: str, detail: dict[str, Any]) -> str:
    """What an event records, in a few words (the raw detail is in `history --json`)."""
    parts: list[str] = []

    def add(text: str) -> None:
        if text:
            parts.append(text)

    def short(value: Any) -> str:
        return shorten_uuids(str(value))

    def uuids(values: Any) -> str:
        items = values if isinstance(values, list | tuple) else [values]
        return ", ".join(short(v) for v in items if v) or "none"

    for key, label in (("trigger", ""), ("reason", "reason: ")):
        if detail.get(key):
            add(f"{label}{detail[key]}")
    if detail.get("new_uuid"):
        add(f"new secret {short(detail['new_uuid'])}")
    if detail.get("old_uuid") and kind != EventKind.NEEDS_ATTENTION:
        add(f"old secret {short(detail['old_uuid'])}")
    if detail.get("uuid"):
        add(f"secret {short(detail['uuid'])}")
    for key, label in (
        ("deleted", "deleted"),
        ("strays_deleted", "strays deleted"),
        ("orphans_deleted", "orphans deleted"),
        ("kept", "kept"),
    ):
        value = detail.get(key)
        if value and not isinstance(value, bool):
            add(f"{label} {uuids(value)}")
    if detail.get("tokens_invalidated"):
        add(f"{detail['tokens_invalidated']} tokens invalidated")
    if isinstance(evidence := detail.get("evidence"), dict):
        add(f"old last used {_when(evidence.get('old_last_used_at')).replace('unknown', 'never')}")
    if detail.get("deadline"):
        add(f"quiet at {_when(detail['deadline'])}")
    if detail.get("quiet_period"):
        add(f"quiet period {detail['quiet_period']}")
    if detail.get("retire_all_others"):
        add("every other secret is deleted")
    if isinstance(leaves := detail.get("leaves"), dict) and leaves:
        add("leaves " + ", ".join(f"{k} {short(v)}" for k, v in leaves.items()))
    if isinstance(changed := detail.get("changed"), dict | list) and changed:
        add("changed " + ", ".join(sorted(changed)))
    for key in ("why", "error"):
        if detail.get(key):
            add(short(detail[key]))
    text = "; ".join(parts)
    return text if len(text) <= _SUMMARY_WIDTH else text[: _SUMMARY_WIDTH - 1] + "…"


def _folded(events: list[AuditEvent]) -> list[str]:
    """Lines, newest first, with each run of one rotation's draining polls as one line."""
    lines: list[str] = []
    run: list[AuditEvent] = []

    def flush() -> None:
        if len(run) == 1:
            lines.append(_event_line(run[0]))
        elif run:
            lines.append(_poll_line(run))
        run.clear()

    for e in events:
        if e.kind == _FOLDED and run and run[0].rotation_id == e.rotation_id:
            run.append(e)
            continue
        flush()
        if e.kind == _FOLDED:
            run.append(e)
        else:
            lines.append(_event_line(e))
    flush()
    return lines


def _poll_line(polls: list[AuditEvent]) -> str:
    """`polled N times` with the span, and the latest use of the old and new secrets seen."""
    newest, oldest = polls[0], polls[-1]

    def latest(key: str) -> str:
        seen = [
            datetime.fromisoformat(value)
            for p in polls
            if isinstance(evidence := p.detail.get("evidence"), dict)
            and isinstance(value := evidence.get(key), str)
        ]
        return ts(max(seen)) if seen else "never"

    return (
        f"{ts(newest.at)}  #{newest.id}  {newest.credential}  rotation {newest.rotation_id}  "
        f"{_FOLDED}  draining -> draining  polled {len(polls)} times from {ts(oldest.at)} "
        f"(#{oldest.id}..#{newest.id}), last use seen: old secret "
        f"{latest('old_last_used_at')}, new secret {latest('new_last_used_at')}"
    )
