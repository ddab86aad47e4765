"""Renders the auditor's report (rotator/reporting.py) as JSON, CSV or one HTML file.

The HTML is self-contained (inline CSS and SVG, no script, no fonts or images fetched), so
it opens offline and can be attached to an audit ticket as it is. Each credential gets a
timeline a person reads at a glance: one bar per secret (its life as AWSCURRENT in blue,
before and after in grey, past max_age in red), a triangle at each promotion, a dot at the
last use seen before a deletion, a cross at each deletion, needs_attention shaded orange.
Every value passes the redactor on the way out, like every other output of rotator.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from rotator import redaction


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        text = json.dumps(report, indent=2, sort_keys=True)
    elif fmt == "csv":
        text = render_csv(report)
    elif fmt == "html":
        text = render_html(report)
    else:
        raise ValueError(f"unknown report format {fmt!r}")
    return redaction.redact(text)


# --- CSV: one row per rotation ---------------------------------------------------------------

CSV_COLUMNS = (
    "credential",
    "rotation_id",
    "trigger",
    "outcome",
    "requested_by",
    "verified_actor",
    "reason",
    "started_at",
    "promoted_at",
    "finished_at",
    "old_uuid",
    "new_uuid",
    "deleted",
    "old_last_use_seen",
    "quiet_for_seconds",
    "quiet_period_seconds",
    "steps",
    "credential_oldest_age_days",
    "credential_max_age_days",
    "credential_violation",
    "chain_verified",
)


def render_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    chain_ok = report["verification"].get("ok")
    for cred in report["credentials"]:
        for rot in cred["rotations"]:
            gone = [d for d in cred["deletions"] if d["rotation_id"] == rot["id"]]
            old = next((d for d in gone if d["was_old_secret"]), None)
            writer.writerow(
                {
                    "credential": cred["name"],
                    "rotation_id": rot["id"],
                    "trigger": rot["trigger"],
                    "outcome": rot["outcome"],
                    "requested_by": rot["requested_by"],
                    "verified_actor": rot["verified_actor"] or "",
                    "reason": rot["reason"],
                    "started_at": rot["started_at"],
                    "promoted_at": rot["promoted_at"] or "",
                    "finished_at": rot["finished_at"] or "",
                    "old_uuid": rot["old_uuid"] or "",
                    "new_uuid": rot["new_uuid"] or "",
                    "deleted": " ".join(d["uuid"] for d in gone),
                    "old_last_use_seen": (old or {}).get("last_use_seen") or "",
                    "quiet_for_seconds": (old or {}).get("quiet_for_seconds") or "",
                    "quiet_period_seconds": (old or {}).get("quiet_period_seconds") or "",
                    "steps": " ".join(f"{s['state']}@{s['at']}" for s in rot["steps"]),
                    "credential_oldest_age_days": cred["oldest_age_days"],
                    "credential_max_age_days": cred["max_age_days"],
                    "credential_violation": cred["violation"],
                    "chain_verified": chain_ok,
                }
            )
    return out.getvalue()


# --- HTML ------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1b1f24;
background:#fff;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;border-bottom:2px solid
#d0d7de;padding-bottom:4px}h3{font-size:14px;margin:14px 0 4px}
.muted{color:#57606a}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:700}
.box{border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;margin:12px 0}
.box.bad{border-color:#cf222e;background:#fff5f5}.box.ok{border-color:#1a7f37;background:#f3fbf5}
table{border-collapse:collapse;width:100%;margin:4px 0 10px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f6f8fa}code{font-size:12px}svg{display:block;margin:6px 0}
"""

_W, _LEFT, _RIGHT, _ROW, _TOP = 1000, 150, 40, 26, 22


def _when(value: str | None) -> str:
    if not value:
        return "—"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _days(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f} d"


def _secs(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    return f"{value:.0f} s"


def _required(deletion: dict[str, Any]) -> str:
    if deletion["emergency"]:
        return "emergency: no quiet period"
    if not deletion["was_old_secret"]:
        return f"none ({deletion['deleted_in']}: not the secret in use)"
    return _secs(deletion["quiet_period_seconds"])


def render_html(report: dict[str, Any]) -> str:
    period = report["period"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>rotator audit report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>rotator audit report</h1>",
        f'<p class="muted">Period <span id="period-since">{_when(period["since"])}</span> to '
        f'<span id="period-until">{_when(period["until"])}</span>; generated '
        f"{_when(report['generated_at'])}. Times are UTC.</p>",
        _verification(report["verification"]),
    ]
    for cred in report["credentials"]:
        parts.append(_credential(cred, period))
    parts.append("</body></html>")
    return "\n".join(parts)


def _verification(result: dict[str, Any]) -> str:
    ok = bool(result.get("ok"))
    cp = result.get("checkpoint")
    against = (
        f"against checkpoint seq {cp['seq']} (event {cp['event_id']}, {_when(cp['at'])})"
        if cp
        else "without a checkpoint"
    )
    problems = "".join(f"<li>{escape(p)}</li>" for p in result.get("problems", []))
    return (
        f'<div class="box {"ok" if ok else "bad"}" id="verification">'
        f'<b>Audit chain: <span id="chain-status" class="{"ok" if ok else "bad"}">'
        f"{'intact' if ok else 'BROKEN'}</span></b> — "
        f'<span id="chain-checked">{int(result.get("checked", 0))}</span> events verified '
        f"{against}, {int(result.get('replayed_rows', 0))} rows replayed."
        f'<br><span id="chain-scope">{escape(str(result.get("scope", "")))}</span>'
        f"{f'<ul>{problems}</ul>' if problems else ''}</div>"
    )


def _credential(cred: dict[str, Any], period: dict[str, Any]) -> str:
    name = escape(cred["name"])
    verdict = (
        '<span class="bad">VIOLATION: older than max_age</span>'
        if cred["violation"]
        else '<span class="ok">within max_age</span>'
    )
    rows = []
    for rot in cred["rotations"]:
        steps = "<br>".join(
            f"{escape(s['state'])} {_when(s['at'])}"
            + (
                f" <span class='muted'>by {escape(s['actor'])}</span>"
                if s["actor"] and (i == 0 or s["actor"] != rot["steps"][i - 1]["actor"])
                else ""
            )
            for i, s in enumerate(rot["steps"])
        )
        requests = "".join(
            f"<br><span class='muted'>{escape(q['kind'])} by {escape(q['actor'])} "
            f"({escape(q['verified_actor'] or 'unverified')}): {escape(q['reason'])}</span>"
            for q in rot["requests"]
        )
        rows.append(
            f'<tr id="rotation-{rot["id"]}"><td>{rot["id"]}</td><td>{escape(str(rot["trigger"]))}'
            f'</td><td class="outcome">{escape(str(rot["outcome"]))}</td>'
            f"<td>{escape(rot['requested_by'])}</td>"
            f"<td><code>{escape(rot['verified_actor'] or 'not recorded')}</code></td>"
            f"<td>{escape(rot['reason'] or '')}{requests}</td><td>{steps}</td></tr>"
        )
    deletions = [
        f"<tr><td>{d['rotation_id']}</td><td><code>{escape(d['uuid'])}</code></td>"
        f"<td>{_when(d['deleted_at'])}</td><td>{_when(d['last_use_seen'])}</td>"
        f"<td>{_when(d['promoted_at'])}</td><td>{_secs(d['quiet_for_seconds'])}</td>"
        f"<td>{_required(d)}</td></tr>"
        for d in cred["deletions"]
    ]
    attention = [
        f"<tr><td>{a['rotation_id']}</td><td>{_when(a['started_at'])}</td>"
        f"<td>{escape(a['why'])}</td><td>{_when(a['ended_at'])}</td>"
        f"<td>{escape(a['ended_as'] or 'still open')}"
        f"{' by ' + escape(a['ended_by']) if a['ended_by'] else ''}</td></tr>"
        for a in cred["attention"]
    ]
    return "\n".join(
        [
            f'<section id="credential-{name}"><h2>{name}</h2>',
            f"<p>Oldest age a current secret reached in the period: "
            f'<b id="oldest-{name}">{_days(cred["oldest_age_days"])}</b> '
            f'(max_age <span id="max-age-{name}">{_days(cred["max_age_days"])}</span>; '
            f"secret <code>{escape(cred['oldest_secret'] or '—')}</code>): "
            f'<span id="verdict-{name}">{verdict}</span></p>',
            _timeline(cred, period),
            f'<h3>Rotations (<span id="rotations-{name}">{len(cred["rotations"])}</span>)</h3>',
            "<table><tr><th>id</th><th>trigger</th><th>outcome</th><th>requested by "
            "(claimed)</th><th>verified identity</th><th>reason</th><th>steps</th></tr>",
            *rows,
            "</table>",
            f'<h3>Deletions and their evidence (<span id="deletions-{name}">'
            f"{len(cred['deletions'])}</span>)</h3>",
            "<table><tr><th>rotation</th><th>secret</th><th>deleted at</th><th>last use seen"
            "</th><th>promoted at</th><th>quiet for</th><th>quiet period required</th></tr>",
            *deletions,
            "</table>",
            f'<h3>needs_attention episodes (<span id="attention-{name}">'
            f"{len(cred['attention'])}</span>)</h3>",
            "<table><tr><th>rotation</th><th>from</th><th>why</th><th>until</th>"
            "<th>ended as</th></tr>",
            *attention,
            "</table></section>",
        ]
    )


def _timeline(cred: dict[str, Any], period: dict[str, Any]) -> str:
    since = datetime.fromisoformat(period["since"])
    until = datetime.fromisoformat(period["until"])
    span = max((until - since).total_seconds(), 1.0)

    def x(value: str | None, default: datetime) -> float:
        moment = datetime.fromisoformat(value) if value else default
        moment = min(max(moment, since), until)
        return _LEFT + (moment - since).total_seconds() / span * (_W - _LEFT - _RIGHT)

    secrets = cred["secrets"]
    height = _TOP + max(len(secrets), 1) * _ROW + 30
    out = [
        f'<svg width="{_W}" height="{height}" '
        f'role="img" aria-label="timeline of {escape(cred["name"])}" '
        f'viewBox="0 0 {_W} {height}" font-family="system-ui,sans-serif" font-size="11">',
        f'<rect x="0" y="0" width="{_W}" height="{height}" fill="#fbfcfd"/>',
    ]
    for episode in cred["attention"]:
        x0, x1 = x(episode["started_at"], since), x(episode["ended_at"], until)
        out.append(
            f'<rect x="{x0:.1f}" y="{_TOP - 6}" width="{max(x1 - x0, 2):.1f}" '
            f'height="{height - _TOP - 22}" fill="#ffd8a8" opacity="0.7"/>'
        )
    row_of: dict[str, int] = {}
    max_age = cred["max_age_seconds"]
    for i, secret in enumerate(secrets):
        y = _TOP + i * _ROW
        row_of.setdefault(secret["uuid"], y)
        created = secret["created_at"] or secret["current_from"]
        end_alive = secret["deleted_at"]
        x_born, x_end = x(created, since), x(end_alive, until)
        x_cur0, x_cur1 = x(secret["current_from"], since), x(secret["current_until"], until)
        out.append(
            f'<text x="{_LEFT - 8}" y="{y + 13}" text-anchor="end">'
            f"{escape(secret['uuid'][:12])}</text>"
            f'<rect x="{x_born:.1f}" y="{y + 3}" width="{max(x_end - x_born, 1):.1f}" height="14"'
            f' fill="#d0d7de"/>'
            f'<rect x="{x_cur0:.1f}" y="{y + 3}" width="{max(x_cur1 - x_cur0, 1):.1f}" '
            f'height="14" fill="#0969da"/>'
        )
        if max_age is not None and secret["created_at"]:
            limit = datetime.fromisoformat(secret["created_at"]).timestamp() + max_age
            limit_at = datetime.fromtimestamp(limit, UTC).isoformat()
            x_lim = x(limit_at, until)
            if x_lim < x_cur1:
                out.append(
                    f'<rect x="{x_lim:.1f}" y="{y + 3}" width="{x_cur1 - x_lim:.1f}" '
                    f'height="14" fill="#cf222e"/>'
                )
        if secret["deleted_at"]:
            xd = x(secret["deleted_at"], until)
            out.append(
                f'<path d="M{xd - 5:.1f},{y + 5} l10,10 m0,-10 l-10,10" stroke="#24292f" '
                f'stroke-width="2.2"/>'
            )
    for deletion in cred["deletions"]:
        if deletion["last_use_seen"] and deletion["uuid"] in row_of:
            y = row_of[deletion["uuid"]]
            out.append(
                f'<circle cx="{x(deletion["last_use_seen"], since):.1f}" cy="{y + 10}" r="4.5" '
                f'fill="#fff" stroke="#8250df" stroke-width="2.2"/>'
            )
    for rotation in cred["rotations"]:
        if rotation["promoted_at"] and rotation["new_uuid"] in row_of:
            y, xp = row_of[rotation["new_uuid"]], x(rotation["promoted_at"], since)
            out.append(
                f'<path d="M{xp:.1f},{y - 1} l6,-7 h-12 z" fill="#1a7f37" stroke="#1a7f37"/>'
            )
    axis_y = height - 26
    out.append(
        f'<line x1="{_LEFT}" y1="{axis_y}" x2="{_W - _RIGHT}" y2="{axis_y}" stroke="#57606a"/>'
    )
    label = "%H:%M:%S" if span < 3 * 3600 else ("%m-%d %H:%M" if span < 5 * 86400 else "%Y-%m-%d")
    for k in range(5):
        moment = since + (until - since) * (k / 4)
        xt = x(moment.isoformat(), since)
        out.append(
            f'<line x1="{xt:.1f}" y1="{axis_y}" x2="{xt:.1f}" y2="{axis_y + 4}" stroke="#57606a"/>'
            f'<text x="{xt:.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#57606a">'
            f"{moment.astimezone(UTC).strftime(label)}</text>"
        )
    out.append("</svg>")
    out.append(
        '<p class="muted">Timeline: blue = AWSCURRENT, grey = alive, red = past max_age, '
        "▲ promotion, ○ last use seen, ✕ deleted, orange = needs_attention.</p>"
    )
    return "".join(out)
