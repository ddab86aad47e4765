"""Who did it, a keyed chain introduced on a live database, and the auditor's report as a
person sees it: rendered by headless Chromium, not blank, saying what the JSON says.

One story through the installed `rotator` command: a rotation before any audit key
(verify says "UNKEYED"), an audit key configured, a rotation claimed as a ticket by
someone whose LOGNAME lies, the switch to Ed25519 signatures (`audit keygen`), an
emergency refused without a reason and run with one (signed), verify and the report
with only the public keyring (an auditor's),
verify against the published checkpoints, the report in three formats, no secret value
nor the audit key in checkpoints, reports, database or output (DEBUG logs included), and a
direct edit of the rotations table caught.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import secrets
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, update

from rotator.adapters.db.tables import metadata, rotations
from rotator.audit import keys
from tests.system.conftest import System, to_toml

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "Debian package `chromium` is required (.ci/run installs it)"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def png_pixels(path: Path) -> tuple[int, int, list[tuple[int, ...]]]:
    """Width, height and RGB(A) pixels of an 8-bit non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunk, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if chunk == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif chunk == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * channels
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, corner = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(line)
        prev = line
    pixels = [tuple(r[i : i + 3]) for r in rows for i in range(0, stride, channels)]
    return width, height, pixels


class _Texts(HTMLParser):
    """The text inside each element that has an id (what a reader of the page sees)."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[tuple[str, str | None]] = []
        self.by_id: dict[str, str] = {}
        self.all: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"br", "meta", "link", "circle", "path", "rect", "line"}:
            return
        self.open.append((tag, dict(attrs).get("id")))
        if dict(attrs).get("id"):
            self.by_id[str(dict(attrs)["id"])] = ""

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            if self.open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        self.all.append(data)
        for _tag, ident in self.open:
            if ident:
                self.by_id[ident] += data


def _audit_section(key_file: Path, checkpoints: Path) -> str:
    return (
        "[audit]\n"
        f'keys = [{{ id = "audit-1", file = {json.dumps(str(key_file))} }}]\n'
        f"checkpoint_file = {json.dumps(str(checkpoints))}\n"
    )


def test_who_did_it_a_keyed_chain_and_the_report_in_a_browser(
    system: System, tmp_path: Path
) -> None:
    system.credential()
    system.write_config()
    assert system.rotator("db", "upgrade").code == 0
    first = system.rotator("rotate", "analytics", "--wait")
    assert first.code == 0, first
    unkeyed = system.rotator("audit", "verify")
    assert unkeyed.code == 0, unkeyed
    assert "scope: UNKEYED" in unkeyed.out and "proves only accidental damage" in unkeyed.out

    # An audit key, kept in a file outside the database, from now on.
    key_file, checkpoints = tmp_path / "audit.key", tmp_path / "checkpoints.jsonl"
    key_file.touch(mode=0o600)  # a key readable by others is refused, as ssh does
    key_file.write_text(secrets.token_urlsafe(32))
    system.config_path.write_text(to_toml(system.config()) + _audit_section(key_file, checkpoints))

    env_lies = {"LOGNAME": "mallory", "USER": "mallory"}
    system.env = lambda: {**System.env(system), **env_lies}  # type: ignore[method-assign]
    claimed = system.rotator(
        "--log-level", "DEBUG", "--actor", "ticket-4711", "rotate", "analytics", "--wait"
    )
    assert claimed.code == 0, claimed
    started = [e for e in system.events() if e["kind"] == "started"][-1]
    assert started["actor"] == "ticket-4711"
    assert started["actor_verified"].startswith("aws:arn:aws:sts::")
    assert "os:" in started["actor_verified"] and "mallory" not in started["actor_verified"]
    assert started["key_id"] == "audit-1" and started["scheme"] == "hmac-sha256"

    # Signed from now on (issue 27): this writer's Ed25519 key (what `audit keygen` makes:
    # unit test_signing runs that command) and the public keyring; the HMAC key stays
    # listed so the events it linked verify in full.
    ring, writer_key = tmp_path / "keyring.toml", tmp_path / "writer.key"
    public_key = keys.generate_signing_key(writer_key)
    ring.write_text(keys.keyring_entry("writer-1", public_key, ("daemon", "operator")))
    system.config_path.write_text(
        to_toml(system.config())
        + _audit_section(key_file, checkpoints)
        + f"signing_key = {json.dumps(str(writer_key))}\nkeyring = {json.dumps(str(ring))}\n"
    )

    before = len(system.events())
    refused = system.rotator("rotate", "analytics", "--emergency")
    assert refused.code == 2 and "--reason" in refused.err, refused
    assert len(system.events()) == before  # nothing changed
    emergency = system.rotator(
        "--log-level", "DEBUG", "rotate", "analytics", "--emergency", "--reason", "key in a log"
    )
    assert emergency.code == 0, emergency

    signed = [e for e in system.events() if e["kind"] == "started"][-1]
    assert (signed["scheme"], signed["key_id"]) == ("ed25519", "writer-1")

    history = system.rotator("history", "analytics")
    assert "by ticket-4711 (verified: aws:arn:aws:sts::" in history.out

    # An auditor holds no private key and no HMAC key: the public keyring is enough for
    # `audit verify` and the report (the HMAC part is linked, and said to be unchecked).
    writer_key.rename(tmp_path / "away.key")  # no private key where the config says
    auditor = tmp_path / "auditor.toml"
    auditor.write_text(
        to_toml(system.config())
        + f"[audit]\nkeyring = {json.dumps(str(ring))}\n"
        + f"checkpoint_file = {json.dumps(str(checkpoints))}\n"
    )
    as_auditor = ("--config", str(auditor))
    public_only = system.rotator(*as_auditor, "audit", "verify", config=False)
    assert public_only.code == 0, public_only
    assert "SIGNED from seq" in public_only.out and "older HMAC event(s)" in public_only.out
    assert "unchecked (no HMAC key)" in public_only.out  # (with it: unit test_signing)
    assert "older event(s) are unkeyed" in public_only.out
    assert "nothing up to checkpoint seq" in public_only.out

    # The report, three ways, as the auditor.
    paths = {fmt: tmp_path / f"report.{fmt}" for fmt in ("html", "json", "csv")}
    for fmt, path in paths.items():
        ran = system.rotator(
            *as_auditor, "--log-level", "DEBUG", "report", "--format", fmt, "-o", str(path),
            config=False,
        )  # fmt: skip
        assert ran.code == 0 and f"report written to {path}" in ran.out, ran
    report = json.loads(paths["json"].read_text())
    (cred,) = report["credentials"]
    assert [r["trigger"] for r in cred["rotations"]] == ["manual", "manual", "emergency"]
    assert [r["outcome"] for r in cred["rotations"]] == ["completed"] * 3
    assert cred["rotations"][1]["requested_by"] == "ticket-4711"
    assert cred["rotations"][2]["reason"] == "key in a log"
    assert len(cred["deletions"]) == 3 and cred["deletions"][0]["last_use_seen"]
    assert cred["violation"] == any(s["violation"] for s in cred["secrets"])
    assert report["verification"]["ok"] and report["verification"]["keyed"]
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert [r["rotation_id"] for r in rows] == [str(r["id"]) for r in cred["rotations"]]

    # As a person sees it: Chromium renders it (offline), the screenshot is not blank ...
    shot = tmp_path / "report.png"
    rendered = _chromium(f"--screenshot={shot}", "--window-size=1100,1200", paths["html"].as_uri())
    assert shot.exists(), rendered.stderr[-2000:]
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1100, 1200)
    white = sum(1 for p in pixels if p == (255, 255, 255))
    assert white < 0.97 * len(pixels), "the screenshot is (almost) blank"
    assert len(set(pixels)) > 50, "the screenshot has almost no colours: nothing drawn"
    assert any(p[2] > 180 and p[0] < 40 for p in pixels), "no blue AWSCURRENT bar in the timeline"

    # ... and the page's own text (the DOM after rendering) says what the JSON says.
    dom = _chromium("--dump-dom", paths["html"].as_uri())
    page = _Texts()
    page.feed(dom.stdout)
    texts = page.by_id
    assert texts["chain-status"] == "intact"
    assert int(texts["chain-checked"]) == report["verification"]["checked"]
    assert texts["chain-scope"] == report["verification"]["scope"]
    assert texts["oldest-analytics"] == f"{cred['oldest_age_days']:.2f} d"
    assert texts["max-age-analytics"] == f"{cred['max_age_days']:.2f} d"
    assert ("VIOLATION" in texts["verdict-analytics"]) == cred["violation"]
    assert int(texts["rotations-analytics"]) == len(cred["rotations"])
    assert int(texts["deletions-analytics"]) == len(cred["deletions"])
    for rotation in cred["rotations"]:
        row = texts[f"rotation-{rotation['id']}"]
        assert rotation["outcome"] in row and rotation["requested_by"] in row
        assert (rotation["verified_actor"] or "not recorded") in row
    whole = " ".join(page.all)
    assert all(d["uuid"] in whole for d in cred["deletions"])
    html = paths["html"].read_text()
    assert not any(f in html for f in ("<script", "src=", "href=", "url(", "@import")), (
        "not offline"
    )

    # No secret value and no form of the audit key in checkpoints, reports, the database
    # (every table) or anything printed (the `system` fixture scans that for Adobe's).
    key = key_file.read_text()
    needles = [*system.admin.secret_values(), *system.admin.token_values(), key]
    needles += [key.encode().hex(), base64.b64encode(key.encode()).decode()]
    engine = create_engine(system.world.db_url)
    with engine.connect() as conn:
        database = [str(list(conn.execute(table.select()))) for table in metadata.sorted_tables]
    haystacks = {
        "checkpoints": checkpoints.read_text(),
        **{f"report.{fmt}": path.read_text() for fmt, path in paths.items()},
        "database": "\n".join(database),
        "output": "\n".join(system.transcript),
    }
    assert checkpoints.read_text().count("audit checkpoint") >= 2
    leaked = [(where, n[:6]) for where, text in haystacks.items() for n in needles if n in text]
    assert leaked == [], f"secret values found: {leaked}"

    # A direct edit of the rotations table is caught by replay.
    with engine.begin() as conn:
        conn.execute(update(rotations).where(rotations.c.trigger == "emergency").values(reason="x"))
    engine.dispose()
    tampered = system.rotator(*as_auditor, "audit", "verify", config=False)
    assert tampered.code == 1 and "edited outside rotator" in tampered.err, tampered
    assert f"rotation {cred['rotations'][2]['id']}: reason differ" in tampered.err, tampered


def test_checkpoint_arguments_are_checked(system: System) -> None:
    system.credential()
    system.write_config()
    assert system.rotator("db", "upgrade").code == 0
    bad = system.rotator("audit", "verify", "--checkpoint", '{"seq": 1}')
    assert bad.code == 2 and "checkpoint" in bad.err
    missing = system.rotator("audit", "verify", "--checkpoint", "/nonexistent/cp.jsonl")
    assert missing.code == 2 and "cannot read" in missing.err
    empty = system.rotator("audit", "checkpoint")
    assert empty.code == 1 and "no audit events yet" in empty.err
    bad_date = system.rotator("report", "--since", "2026-13-01")
    assert bad_date.code == 2 and "--since" in bad_date.err, bad_date
    backwards = system.rotator("report", "--since", "2026-02-01", "--until", "2026-01-01")
    assert backwards.code == 2 and "after --until" in backwards.err, backwards
    window = system.rotator(
        "report", "--format", "json", "--since", "2026-01-01", "--until", "2026-01-31"
    )
    assert window.code == 0, window
    assert json.loads(window.out)["period"] == {
        "since": "2026-01-01T00:00:00+00:00",
        "until": "2026-01-31T23:59:59.999999+00:00",
    }


@pytest.fixture(autouse=True)
def _need_chromium() -> Any:
    assert CHROMIUM, "Debian package `chromium` is required (.ci/run installs it)"
