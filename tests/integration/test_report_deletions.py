"""The auditor's report leaves no deletion out (issue 28): a history made by the real engine
against the sandbox and moto, with a stray cleared while planning, an orphan of a lost add
answer, the old secret after draining, a stray cleared to make room at Adobe's limit, a
rollback's own secret, and an emergency's leaked secret and "every other" secret, each made
under the rules of issue 26 (a binding first; strays watched unused; an orphan only from an
add of ours). JSON, CSV and the HTML as headless Chromium renders it list the same
deletions with the same kinds, each on the timeline; an unkeyed chain is amber.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from rotator.audit.render import render
from rotator.cli.report import build_report
from rotator.domain.model import State, Trigger
from tests.world import World

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _step_until(world: World, rotation_id: int, stop: set[State], steps: int = 40) -> None:
    """Step one rotation (waiting when it asks to) until it reaches a state in `stop`."""
    app = world.app
    for _ in range(steps):
        rotation = app.store.get(rotation_id)
        if rotation.state in stop:
            return
        if rotation.next_attempt_at is not None:
            time.sleep(max(0.0, (rotation.next_attempt_at - app.engine.clock()).total_seconds()))
        claim = app.engine.claim(rotation_id)
        assert claim is not None
        claim = app.engine.step(claim)
        if claim is not None:
            app.store.release(claim)
    raise AssertionError(f"rotation {rotation_id} never reached {stop}")


class _Page(HTMLParser):
    """Deletion rows (their cells' text) and the texts drawn in the timelines."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.svg_texts: list[str] = []
        self.box: str | None = None
        self.status = ""
        self._stack: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id") == "verification":
            self.box = a.get("class")
        if tag == "tr" and a.get("class") == "deletion":
            self.rows.append([])
        if tag == "td" and self.rows and any(t == "tr" for t, _ in self._stack[-1:]):
            self.rows[-1].append("")
        if tag == "text":
            self.svg_texts.append("")
        if tag not in {"br", "meta", "rect", "path", "circle", "line"}:
            self._stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        tags = [t for t, _ in self._stack]
        if tags[-1:] == ["text"]:
            self.svg_texts[-1] += data
        if any(a.get("id") == "chain-status" for _, a in self._stack):
            self.status += data
        for i, (tag, a) in enumerate(self._stack):
            if tag == "tr" and a.get("class") == "deletion" and "td" in tags[i:]:
                self.rows[-1][-1] += data


def test_every_deletion_is_in_json_csv_and_the_rendered_html(
    sqlite_world: World, tmp_path: Path
) -> None:
    world = sqlite_world
    world.defaults["usage_lag"] = "0s"  # proof by observation: two test tokens a pause apart
    cred = world.credential(verify_timeout="1s")
    app = world.app
    deleted: dict[str, str] = {}  # uuid -> kind, as made below

    # 1. A stray cleared while planning, an orphan of a lost add, then the old secret
    # drained. Rotator deletes only what it knows by construction (issue 26): the binding
    # of AWSCURRENT's secret comes first (`rotator adopt`); the stray is deleted only once
    # rotator itself has watched it unused for quiet_period + usage_lag (1 s + 0 s here,
    # two answers apart in time); the orphan is a secret an add of OURS made whose answer
    # was lost (Adobe creates it, then answers 500), not one that merely appeared.
    first_uuid = world.adobe_uuids()[0]
    world.adopt()
    stray = world.admin.add_secret(cred.credential_id)
    world.admin.set_secret_times(
        cred.credential_id, stray.uuid, created_ago_s=40 * 3600, last_used_ago_s=30 * 3600
    )
    world.admin.add_fault(
        "add_secret", status=500, count=1, phase="after", client_id=cred.client_id
    )
    before = set(world.adobe_uuids())
    adds = world.admin.count("add_secret")
    normal = world.rotate(timeout=30)
    assert normal.state is State.COMPLETED, normal.last_error
    assert world.admin.count("add_secret") - adds == 2  # the lost add, then the one kept
    events = app.store.events(rotation_id=normal.id)
    orphans = [u for e in events for u in e.detail.get("orphans_deleted") or ()]
    assert len(orphans) == 1 and orphans[0] not in before | {normal.new_uuid}, events
    (orphan,) = orphans
    kinds = [e.kind for e in sorted(events, key=lambda e: e.id)]
    planned = next(e for e in events if e.kind == "planned")
    assert planned.detail["strays_deleted"] == [stray.uuid], planned.detail
    assert kinds.index("strays_wait") < kinds.index("planned"), kinds  # watched first
    deleted |= {stray.uuid: "stray", orphan: "orphan", first_uuid: "drain"}

    # 2. A stray the plan's list left out, cleared to make room when the add finds Adobe at
    # its two-secret limit (recorded by the retry that follows): the binding recorded at
    # the first promotion names AWSCURRENT's secret, and the stray is watched unused for
    # quiet_period + usage_lag before it goes, as in planning. Then a rollback: Adobe never
    # accepts the new secret, so it is given back.
    hidden = world.admin.add_secret(cred.credential_id)
    world.admin.set_secret_times(
        cred.credential_id, hidden.uuid, created_ago_s=40 * 3600, last_used_ago_s=30 * 3600
    )
    world.admin.omit_secret(client_id=cred.client_id, uuid=hidden.uuid, count=1)
    world.admin.set_timing(accept_delay_ms=600_000)
    failed = world.rotate(timeout=30)
    world.admin.set_timing(accept_delay_ms=0)
    assert failed.state is State.FAILED, failed.last_error
    assert failed.new_uuid and failed.new_uuid not in world.adobe_uuids()
    made_room = [e for e in app.store.events(rotation_id=failed.id) if e.kind == "retry"]
    assert [e.detail.get("strays_deleted") for e in made_room] == [[hidden.uuid]], made_room
    waited = [e for e in app.store.events(rotation_id=failed.id) if e.kind == "strays_wait"]
    assert waited and min(e.id for e in waited) < made_room[0].id, waited  # watched first
    deleted |= {hidden.uuid: "stray", failed.new_uuid: "rollback"}

    # 3. An emergency: the leaked secret, and "every other": one that appeared after the
    # promotion.
    leaked = world.adobe_uuids()[0]
    emergency = app.engine.request("analytics", Trigger.EMERGENCY, actor="test", reason="leak")
    _step_until(world, emergency.id, {State.RETIRING})
    # Someone deletes the leaked secret at Adobe by hand and another appears in its slot:
    # the emergency deletes the leaked one by uuid anyway (gone counts as done) and the
    # other because it is not the new secret.
    world.admin.delete_secret(cred.credential_id, leaked)
    other = world.admin.add_secret(cred.credential_id)
    done = _follow(world, emergency.id)
    assert done.state is State.COMPLETED, done.last_error
    deleted |= {leaked: "emergency", other.uuid: "emergency"}
    assert set(world.adobe_uuids()).isdisjoint(deleted)

    report = build_report(app.settings, app.store)
    (json_cred,) = json.loads(render(report, "json"))["credentials"]
    from_json = {(d["uuid"], d["kind"]) for d in json_cred["deletions"]}
    assert from_json == set(deleted.items()), from_json
    assert all(d["deleted_at"] for d in json_cred["deletions"])
    assert all(s["deleted_at"] for s in json_cred["secrets"] if s["uuid"] in deleted)
    assert {s["uuid"] for s in json_cred["secrets"]} >= set(deleted)
    why = {d["uuid"]: d["why"] for d in json_cred["deletions"]}
    assert "every other" in why[other.uuid] and "leaked" in why[leaked]
    stray_row = next(d for d in json_cred["deletions"] if d["kind"] == "stray")
    assert stray_row["last_use_seen"] and stray_row["quiet_period_seconds"] == 1.0

    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    from_csv = {
        (item.split(":", 1)[1].split("@", 1)[0], item.split(":", 1)[0])
        for row in rows
        for item in row["deletions"].split()
    }
    assert from_csv == from_json

    html = tmp_path / "report.html"
    html.write_text(render(report, "html"), "utf-8")
    assert CHROMIUM, "Debian package `chromium` is required (.ci/run installs it)"
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    page = _Page()
    page.feed(dom.stdout)
    from_html = {(cells[2].strip(), cells[1].strip()) for cells in page.rows}
    assert from_html == from_json, page.rows
    for uuid, kind in deleted.items():  # each on the timeline: its row, and its kind by its ✕
        label = page.svg_texts.index(uuid[:12])
        assert kind in page.svg_texts[label:], (uuid, kind)
    # No audit key here: intact, but amber and saying why.
    assert page.box == "box warn" and page.status == "intact, UNKEYED", (page.box, page.status)
    assert "proves only accidental damage" in dom.stdout

    # docs/report.png is this page: ROTATOR_REPORT_PNG=docs/report.png runs this test to
    # write it again (README and docs/operations.md show it).
    shot = os.environ.get("ROTATOR_REPORT_PNG")
    if shot:
        subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={Path(shot).resolve()}",
                "--window-size=1100,1250",
                html.as_uri(),
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )


def _follow(world: World, rotation_id: int) -> Any:
    from rotator.cli import follow

    app = world.app
    return follow(
        app,
        app.store.get(rotation_id),
        wait=True,
        show=lambda r: None,
        poll=0.05,
        deadline=time.monotonic() + 30,
    )
