"""Renders the auditor's report (rotator/audit/trail.py) as JSON, CSV or one HTML file.

The HTML is self-contained (inline CSS and SVG, no script, no fonts or images fetched), so
it opens offline and can be attached to an audit ticket as it is. Each credential gets a
timeline a person reads at a glance: one bar per secret (its life as AWSCURRENT in blue,
before and after in grey, past max_age in red), a triangle at each promotion, a dot at the
last use seen before a deletion, a cross at each deletion (with its kind), needs_attention
shaded orange. Every value passes the redactor on the way out, like every other output of
rotator.

The report cannot lie about its own verdict: the page is rendered by jinja2 with
autoescaping on, so every value the trail carries (actors, reasons, event kinds, names,
uuids, problems) is text, never markup; a Content-Security-Policy forbids any script and
any style but the page's own; CSV cells that a spreadsheet would read as a formula are
neutralised as OWASP recommends (a leading `'`).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
from datetime import UTC, datetime
from typing import Any

import jinja2

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
    "signed_by",
    "reason",
    "started_at",
    "promoted_at",
    "finished_at",
    "old_uuid",
    "new_uuid",
    "deleted",
    "deletions",
    "old_last_use_seen",
    "quiet_for_seconds",
    "quiet_period_seconds",
    "steps",
    "credential_oldest_age_days",
    "credential_max_age_days",
    "credential_violation",
    "chain_verified",
)

# A cell a spreadsheet would evaluate (OWASP, "CSV Injection"): it begins with one of these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text: a string that could start a formula
    gets a leading `'` (numbers and booleans stay numbers); control characters go."""
    if not isinstance(value, str):
        return value
    # Control characters first: cut after the check, "\x01=HYPERLINK(...)" would become a
    # formula again. Leading blanks do not stop a spreadsheet from reading one either.
    value = _printable(value)
    if value.lstrip().startswith(_FORMULA_START):
        value = "'" + value
    return value


def render_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    chain_ok = report["verification"].get("ok")
    for cred in report["credentials"]:
        for rot in cred["rotations"]:
            gone = [d for d in cred["deletions"] if d["rotation_id"] == rot["id"]]
            old = next((d for d in gone if d["was_old_secret"]), None)
            row = {
                "credential": cred["name"],
                "rotation_id": rot["id"],
                "trigger": rot["trigger"],
                "outcome": rot["outcome"],
                "requested_by": rot["requested_by"],
                "verified_actor": rot["verified_actor"] or "",
                "signed_by": rot.get("signed_by") or "",
                "reason": rot["reason"],
                "started_at": rot["started_at"],
                "promoted_at": rot["promoted_at"] or "",
                "finished_at": rot["finished_at"] or "",
                "old_uuid": rot["old_uuid"] or "",
                "new_uuid": rot["new_uuid"] or "",
                "deleted": " ".join(d["uuid"] for d in gone),
                "deletions": " ".join(f"{d['kind']}:{d['uuid']}@{d['deleted_at']}" for d in gone),
                "old_last_use_seen": (old or {}).get("last_use_seen") or "",
                "quiet_for_seconds": (old or {}).get("quiet_for_seconds") or "",
                "quiet_period_seconds": (old or {}).get("quiet_period_seconds") or "",
                "steps": " ".join(f"{s['state']}@{s['at']}" for s in rot["steps"]),
                "credential_oldest_age_days": cred["oldest_age_days"],
                "credential_max_age_days": cred["max_age_days"],
                "credential_violation": cred["violation"],
                "chain_verified": chain_ok,
            }
            writer.writerow({key: cell(value) for key, value in row.items()})
    return out.getvalue()


# --- HTML ------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1b1f24;
background:#fff;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 6px;border-bottom:2px solid
#d0d7de;padding-bottom:4px}h3{font-size:14px;margin:14px 0 4px}
.muted{color:#57606a}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:700}
.warn{color:#9a6700;font-weight:700}
.box{border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;margin:12px 0}
.box.bad{border-color:#cf222e;background:#fff5f5}.box.ok{border-color:#1a7f37;background:#f3fbf5}
.box.warn{border-color:#bf8700;background:#fff8c5}
table{border-collapse:collapse;width:100%;margin:4px 0 10px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f6f8fa}code{font-size:12px}svg{display:block;margin:6px 0}
"""

# No script, nothing fetched, no style but the page's own stylesheet (by its hash), no
# form, no base: a value that slipped past escaping could still do nothing.
_CSP = (
    "default-src 'none'; script-src 'none'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; img-src data:; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
    + "'"
)

_TIMELINE = """<svg width="{{ t.width }}" height="{{ t.height }}" role="img" \
aria-label="timeline of {{ t.name }}" viewBox="0 0 {{ t.width }} {{ t.height }}" \
font-family="system-ui,sans-serif" font-size="11">\
<rect x="0" y="0" width="{{ t.width }}" height="{{ t.height }}" fill="#fbfcfd"/>
{%- for s in t.shapes %}
{%- if s.tag == "rect" %}<rect x="{{ s.x }}" y="{{ s.y }}" width="{{ s.w }}" height="{{ s.h }}" \
fill="{{ s.fill }}"{% if s.get("opacity") %} opacity="{{ s.opacity }}"{% endif %}/>
{%- elif s.tag == "path" %}<path d="{{ s.d }}" fill="{{ s.fill }}" stroke="{{ s.stroke }}" \
stroke-width="{{ s.width }}"/>
{%- elif s.tag == "circle" %}<circle cx="{{ s.x }}" cy="{{ s.y }}" r="4.5" fill="#fff" \
stroke="#8250df" stroke-width="2.2"/>
{%- elif s.tag == "line" %}<line x1="{{ s.x1 }}" y1="{{ s.y1 }}" x2="{{ s.x2 }}" \
y2="{{ s.y2 }}" stroke="#57606a"/>
{%- elif s.tag == "text" %}<text x="{{ s.x }}" y="{{ s.y }}" text-anchor="{{ s.anchor }}" \
fill="{{ s.fill }}">{{ s.text }}</text>
{%- endif %}{% endfor %}</svg>
<p class="muted">Timeline: blue = AWSCURRENT, grey = alive, red = past max_age, \
▲ promotion, ○ last use seen, ✕ deleted (its kind beside it), orange = needs_attention.</p>"""

# @CSP@, @CSS@ and @TIMELINE@ are our own constants, put in before the template is parsed.
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{% raw %}@CSP@{% endraw %}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rotator audit report</title>
<style>{% raw %}@CSS@{% endraw %}</style></head><body>
<h1>rotator audit report</h1>
<p class="muted">Period <span id="period-since">{{ when(period.since) }}</span> to \
<span id="period-until">{{ when(period.until) }}</span>; generated {{ when(generated_at) }}. \
Times are UTC.</p>
<div class="box {{ chain.tone }}" id="verification">\
<b>Audit chain: <span id="chain-status" class="{{ chain.tone }}">{{ chain.status }}</span></b> — \
<span id="chain-checked">{{ chain.checked }}</span> events verified {{ chain.against }}, \
{{ chain.replayed }} rows replayed.
<br><span id="chain-scope">{{ chain.scope }}</span>
{%- if chain.problems %}<ul>{% for p in chain.problems %}<li>{{ p }}</li>{% endfor %}</ul>\
{% endif %}</div>
{% for cred in credentials %}{% set name = cred.name %}
<section id="credential-{{ name }}"><h2>{{ name }}</h2>
<p>Oldest age a current secret reached in the period: \
<b id="oldest-{{ name }}">{{ days(cred.oldest_age_days) }}</b> \
(max_age <span id="max-age-{{ name }}">{{ days(cred.max_age_days) }}</span>; \
secret <code>{{ cred.oldest_secret or "—" }}</code>): <span id="verdict-{{ name }}">
{%- if cred.violation %}<span class="bad">VIOLATION: older than max_age</span>
{%- else %}<span class="ok">within max_age</span>{% endif %}</span></p>
{% set t = cred.timeline %}@TIMELINE@
<h3>Rotations (<span id="rotations-{{ name }}">{{ cred.rotations | length }}</span>)</h3>
<table><tr><th>id</th><th>trigger</th><th>outcome</th><th>requested by (claimed)</th>\
<th>identity (self-reported)</th><th>signed by (key)</th><th>reason</th><th>steps</th></tr>
{% for rot in cred.rotations %}<tr id="rotation-{{ rot.id }}"><td>{{ rot.id }}</td>\
<td>{{ rot.trigger }}</td><td class="outcome">{{ rot.outcome }}</td>\
<td>{{ rot.requested_by }}</td><td><code>{{ rot.verified_actor or "not recorded" }}</code></td>\
<td class="signed-by"><code>{{ rot.signed_by or "not signed" }}</code></td>\
<td>{{ rot.reason or "" }}{% for q in rot.requests %}<br><span class="muted">{{ q.kind }} by \
{{ q.actor }} ({{ q.verified_actor or "identity not recorded" }}, self-reported; signed by \
{{ q.signed_by or "no key" }}): {{ q.reason }}</span>{% endfor %}</td>\
<td>{% for s in rot.steps %}{% if not loop.first %}<br>{% endif %}{{ s.state }} {{ when(s.at) }}\
{% if s.actor and (loop.first or s.actor != loop.previtem.actor) %} \
<span class="muted">by {{ s.actor }}</span>{% endif %}{% endfor %}</td></tr>
{% endfor %}</table>
<h3>Deletions and their evidence (<span id="deletions-{{ name }}">{{ cred.deletions | length }}\
</span>)</h3>
<table><tr><th>rotation</th><th>kind</th><th>secret</th><th>deleted at</th><th>last use seen\
</th><th>promoted at</th><th>quiet for</th><th>rule</th></tr>
{% for d in cred.deletions %}<tr class="deletion" id="deletion-{{ d.rotation_id }}-{{ d.uuid }}">\
<td>{{ d.rotation_id }}</td><td class="kind">{{ d.kind }}</td><td><code>{{ d.uuid }}</code></td>\
<td>{{ when(d.deleted_at) }}</td><td>{{ when(d.last_use_seen) }}</td>\
<td>{{ when(d.promoted_at) }}</td><td>{{ secs(d.quiet_for_seconds) }}</td>\
<td>{{ required(d) }} <span class="muted">({{ d.deleted_in }})</span></td></tr>
{% endfor %}</table>
<h3>needs_attention episodes (<span id="attention-{{ name }}">{{ cred.attention | length }}\
</span>)</h3>
<table><tr><th>rotation</th><th>from</th><th>why</th><th>until</th><th>ended as</th></tr>
{% for a in cred.attention %}<tr><td>{{ a.rotation_id }}</td><td>{{ when(a.started_at) }}</td>\
<td>{{ a.why }}</td><td>{{ when(a.ended_at) }}</td><td>{{ a.ended_as or "still open" }}\
{% if a.ended_by %} by {{ a.ended_by }}{% endif %}</td></tr>
{% endfor %}</table></section>
{% endfor %}</body></html>
"""

_W, _LEFT, _RIGHT, _ROW, _TOP = 1000, 150, 90, 26, 22  # room on the right for a kind


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
    why = str(deletion.get("why") or "")
    if deletion.get("quiet_period_seconds") is not None:
        return f"{why} (quiet period {_secs(deletion['quiet_period_seconds'])})"
    return why


# Control characters (ESC and the rest of C0 and C1, but tab and newline) mean nothing in a
# report and can drive a terminal that prints one: they are dropped from every value.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(value: Any) -> Any:
    return _CONTROL.sub("", value) if isinstance(value, str) else value


_ENV = jinja2.Environment(
    autoescape=True,  # every value is text, never markup
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    finalize=_printable,
)
_ENV.globals.update(when=_when, days=_days, secs=_secs, required=_required)
_PAGE_T = _ENV.from_string(
    _PAGE.replace("@CSP@", _CSP).replace("@CSS@", _CSS).replace("@TIMELINE@", _TIMELINE)
)


def _chain(result: dict[str, Any]) -> dict[str, Any]:
    """The verdict box: green only for an intact keyed chain; an intact chain without a
    key is amber (its own sentence says it proves only accidental damage); broken is red."""
    ok = bool(result.get("ok"))
    keyed = bool(result.get("keyed") or result.get("signed"))  # HMAC-keyed or signed
    cp = result.get("checkpoint")
    against = (
        f"against checkpoint seq {cp['seq']} (event {cp['event_id']}, {_when(cp['at'])})"
        if cp
        else "without a checkpoint"
    )
    return {
        "tone": ("ok" if keyed else "warn") if ok else "bad",
        "status": ("intact" if keyed else "intact, UNKEYED") if ok else "BROKEN",
        "checked": int(result.get("checked", 0)),
        "replayed": int(result.get("replayed_rows", 0)),
        "against": against,
        "scope": str(result.get("scope", "")),
        "problems": [str(p) for p in result.get("problems", [])],
    }


def render_html(report: dict[str, Any]) -> str:
    period = report["period"]
    return _PAGE_T.render(
        period=period,
        generated_at=report["generated_at"],
        chain=_chain(report["verification"]),
        credentials=[
            {**cred, "timeline": _timeline(cred, period)} for cred in report["credentials"]
        ],
    )


class _Scale:
    """Maps a moment to its x on the timeline, clamped to the report's period."""

    def __init__(self, period: dict[str, Any]) -> None:
        self.since = datetime.fromisoformat(period["since"])
        self.until = datetime.fromisoformat(period["until"])
        self.span = max((self.until - self.since).total_seconds(), 1.0)

    def x(self, value: str | None, default: datetime) -> float:
        moment = datetime.fromisoformat(value) if value else default
        moment = min(max(moment, self.since), self.until)
        offset = (moment - self.since).total_seconds() / self.span
        return round(_LEFT + offset * (_W - _LEFT - _RIGHT), 1)


def _timeline(cred: dict[str, Any], period: dict[str, Any]) -> dict[str, Any]:
    """The timeline's shapes as plain numbers and strings (the template escapes them)."""
    scale = _Scale(period)
    secrets = cred["secrets"]
    height = _TOP + max(len(secrets), 1) * _ROW + 30
    shapes = _attention_shapes(cred["attention"], scale, height)
    row_of: dict[str, int] = {}
    for i, secret in enumerate(secrets):
        y = _TOP + i * _ROW
        row_of.setdefault(secret["uuid"], y)
        shapes.extend(_secret_shapes(secret, y, scale, cred["max_age_seconds"]))
    shapes.extend(_marks(cred, scale, row_of))
    shapes.extend(_axis(scale, height))
    return {"width": _W, "height": height, "name": cred["name"], "shapes": shapes}


def _attention_shapes(
    episodes: list[dict[str, Any]], scale: _Scale, height: int
) -> list[dict[str, Any]]:
    """Each needs_attention episode, shaded across every row."""
    shapes: list[dict[str, Any]] = []
    for episode in episodes:
        x0 = scale.x(episode["started_at"], scale.since)
        x1 = scale.x(episode["ended_at"], scale.until)
        shapes.append(
            {
                "tag": "rect",
                "x": x0,
                "y": _TOP - 6,
                "w": round(max(x1 - x0, 2), 1),
                "h": height - _TOP - 22,
                "fill": "#ffd8a8",
                "opacity": "0.7",
            }
        )
    return shapes


def _secret_shapes(
    secret: dict[str, Any], y: int, scale: _Scale, max_age: float | None
) -> list[dict[str, Any]]:
    """One secret's row: its label, its life (grey), its time as AWSCURRENT (blue), the part
    past max_age (red), and a cross at its deletion with the deletion's kind."""
    label = {"tag": "text", "x": _LEFT - 8, "y": y + 13, "anchor": "end", "fill": "#1b1f24"}
    shapes: list[dict[str, Any]] = [{**label, "text": secret["uuid"][:12]}]
    if secret.get("was_current", True):
        shapes.extend(_lifetime_bars(secret, y, scale, max_age))
    if secret["deleted_at"]:
        xd = scale.x(secret["deleted_at"], scale.until)
        shapes.append(
            {
                "tag": "path",
                "d": f"M{xd - 5:.1f},{y + 5} l10,10 m0,-10 l-10,10",
                "fill": "none",
                "stroke": "#24292f",
                "width": "2.2",
            }
        )
        if secret.get("deletion_kind"):
            shapes.append(
                {
                    "tag": "text",
                    "x": round(xd + 8, 1),
                    "y": y + 13,
                    "anchor": "start",
                    "fill": "#57606a",
                    "text": secret["deletion_kind"],
                }
            )
    return shapes


def _lifetime_bars(
    secret: dict[str, Any], y: int, scale: _Scale, max_age: float | None
) -> list[dict[str, Any]]:
    """The bars of a secret that was AWSCURRENT: alive, current, and current past max_age."""
    since, until = scale.since, scale.until
    created = secret["created_at"] or secret["current_from"]
    x_born, x_end = scale.x(created, since), scale.x(secret["deleted_at"], until)
    x_cur0 = scale.x(secret["current_from"], since)
    x_cur1 = scale.x(secret["current_until"], until)
    bar = {"tag": "rect", "y": y + 3, "h": 14}
    shapes: list[dict[str, Any]] = [
        {**bar, "x": x_born, "w": round(max(x_end - x_born, 1), 1), "fill": "#d0d7de"},
        {**bar, "x": x_cur0, "w": round(max(x_cur1 - x_cur0, 1), 1), "fill": "#0969da"},
    ]
    if max_age is not None and secret["created_at"]:
        limit = datetime.fromisoformat(secret["created_at"]).timestamp() + max_age
        x_lim = scale.x(datetime.fromtimestamp(limit, UTC).isoformat(), until)
        if x_lim < x_cur1:
            shapes.append({**bar, "x": x_lim, "w": round(x_cur1 - x_lim, 1), "fill": "#cf222e"})
    return shapes


def _marks(cred: dict[str, Any], scale: _Scale, row_of: dict[str, int]) -> list[dict[str, Any]]:
    """A dot at the last use seen before each deletion, a triangle at each promotion."""
    shapes: list[dict[str, Any]] = []
    for deletion in cred["deletions"]:
        if deletion["last_use_seen"] and deletion["uuid"] in row_of:
            y = row_of[deletion["uuid"]]
            xu = scale.x(deletion["last_use_seen"], scale.since)
            shapes.append({"tag": "circle", "x": xu, "y": y + 10})
    for rotation in cred["rotations"]:
        if rotation["promoted_at"] and rotation["new_uuid"] in row_of:
            y = row_of[rotation["new_uuid"]]
            xp = scale.x(rotation["promoted_at"], scale.since)
            shapes.append(
                {
                    "tag": "path",
                    "d": f"M{xp:.1f},{y - 1} l6,-7 h-12 z",
                    "fill": "#1a7f37",
                    "stroke": "#1a7f37",
                    "width": "1",
                }
            )
    return shapes


def _axis(scale: _Scale, height: int) -> list[dict[str, Any]]:
    """The time axis under the rows: a line and five labelled ticks."""
    since, until, span = scale.since, scale.until, scale.span
    axis_y = height - 26
    shapes: list[dict[str, Any]] = [
        {"tag": "line", "x1": _LEFT, "y1": axis_y, "x2": _W - _RIGHT, "y2": axis_y}
    ]
    label_fmt = (
        "%H:%M:%S" if span < 3 * 3600 else ("%m-%d %H:%M" if span < 5 * 86400 else "%Y-%m-%d")
    )
    for k in range(5):
        moment = since + (until - since) * (k / 4)
        xt = scale.x(moment.isoformat(), since)
        shapes.append({"tag": "line", "x1": xt, "y1": axis_y, "x2": xt, "y2": axis_y + 4})
        shapes.append(
            {
                "tag": "text",
                "x": xt,
                "y": axis_y + 16,
                "anchor": "middle",
                "fill": "#57606a",
                "text": moment.astimezone(UTC).strftime(label_fmt),
            }
        )
    return shapes
