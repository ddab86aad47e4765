"""`rotator demo` as a person runs it: the installed command, in a subprocess, no terminal.

How the no-secret check stays honest without knowing the demo's secrets in advance: the
demo runs its Adobe sandbox with a state file in the directory it keeps, and that file is
the fake Adobe's own database: every client secret it ever issued (deleted ones included)
and its unexpired access tokens. The test reads it after the demo exits and looks for each
value in everything the demo printed, on stdout and stderr. Access tokens that expired
before the file was last saved are not in it, so the output is also scanned for anything
shaped like a sandbox secret (`p8e-...`) or an access token (a JWT, `eyJ...`), which no
line of the demo's has any reason to contain.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rotator import config

ROTATOR = Path(sys.executable).parent / "rotator"
JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*")
SANDBOX_SECRET = re.compile(r"p8e-[\w-]{8,}")


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float
    dir: Path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATOR_")}
    for forcing in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(forcing, None)  # no terminal: the demo must print plain lines
    return env


@pytest.fixture(scope="module")
def demo_run() -> Iterator[Run]:
    started = time.monotonic()
    result = subprocess.run(
        [str(ROTATOR), "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        stdin=subprocess.DEVNULL,
    )
    seconds = time.monotonic() - started
    found = re.search(r"^files in (\S+) \(kept afterwards\)$", result.stdout, re.M)
    assert found, result.stdout[-3000:] + result.stderr[-3000:]
    run = Run(result.returncode, result.stdout, result.stderr, seconds, Path(found[1]))
    yield run
    shutil.rmtree(run.dir, ignore_errors=True)


def _section(out: str, title: str) -> str:
    """The lines of one numbered part of the demo's output."""
    match = re.search(rf"^{re.escape(title)}.*?(?=^\d\. |^files |\Z)", out, re.M | re.S)
    assert match, f"no section {title!r} in:\n{out}"
    return match[0]


def test_the_demo_passes_well_under_a_minute(demo_run: Run) -> None:
    assert demo_run.code == 0, demo_run.out[-4000:] + demo_run.err[-3000:]
    assert demo_run.seconds < 45, f"the demo took {demo_run.seconds:.1f}s"
    assert re.search(r"^demo passed in [\d.]+s", demo_run.out, re.M)


def test_it_shows_every_step_of_a_completed_normal_rotation(demo_run: Run) -> None:
    normal = _section(demo_run.out, "1. normal rotation")
    steps = re.findall(r"^\s+\+\s*[\d.]+s\s+(\w+)", normal, re.M)
    assert steps == [
        "planned",
        "creating",
        "staged",
        "verified",
        "promoted",
        "draining",
        "retiring",
        "completed",
    ], normal
    assert "done: Adobe lists only" in normal
    consumer = re.search(r"consumer: (\d+) tokens? .*?(\d+) invalid_client", normal)
    assert consumer, normal
    assert int(consumer[1]) >= 2 and int(consumer[2]) == 0, consumer[0]  # I8
    assert "with the old secret" in consumer[0] and "with the new secret" in consumer[0]
    assert "✗" not in normal


def test_it_shows_a_completed_emergency_rotation_without_draining(demo_run: Run) -> None:
    emergency = _section(demo_run.out, "2. emergency rotation")
    steps = re.findall(r"^\s+\+\s*[\d.]+s\s+(\w+)", emergency, re.M)
    assert steps[-1] == "completed" and "draining" not in steps, emergency
    assert "requested (emergency)" in emergency


def test_it_shows_the_audit_trail_and_a_verified_chain(demo_run: Run) -> None:
    audit = _section(demo_run.out, "3. the audit trail")
    assert re.search(r"rotation 1\s+completed\s+retiring -> completed", audit), audit
    assert re.search(r"rotation 2\s+completed\s+retiring -> completed", audit), audit
    assert re.search(r"✓ audit chain verified: \d+ events", audit), audit


def test_its_trail_is_folded_and_explains_the_actors(demo_run: Run) -> None:
    """Issue 28: summaries rather than raw events, the actors explained, the report's path
    printed once."""
    audit = _section(demo_run.out, "3. the audit trail")
    assert "{" not in audit, audit  # no raw detail: `history --json` has it
    assert re.search(r"^   rotation 1, .*: planned -> creating -> .* -> completed$", audit, re.M)
    assert re.search(r"draining \(polled \d+x\)", audit), audit
    assert len(audit.splitlines()) < 16, audit
    assert "host:pid:random" in audit and "asked for the rotations" in audit
    report = str(demo_run.dir / "report.html")
    assert demo_run.out.count(report) == 1, demo_run.out


def test_it_prints_no_secret_value(demo_run: Run) -> None:
    state = json.loads((demo_run.dir / "sandbox-state.json").read_text())
    secrets = [s["value"] for c in state["credentials"] for s in c["secrets"]]
    secrets += [r["value"] for r in state["retired"]]
    tokens = [t["value"] for t in state["tokens"]]
    assert len(secrets) == 3, "the demo's two rotations issue three secrets in all"
    printed = demo_run.out + demo_run.err
    for value in secrets + tokens:
        assert value not in printed
    assert not SANDBOX_SECRET.search(printed)
    assert not JWT.search(printed)
    assert re.search(r"✓ none of the 3 client secrets and \d+ access tokens", demo_run.out)


def test_it_says_where_its_files_are_and_they_work_afterwards(demo_run: Run) -> None:
    assert (demo_run.dir / "rotator.db").is_file()
    assert "the servers have stopped" in demo_run.out
    assert "need --keep-running" in demo_run.out
    cfg = demo_run.dir / "rotator.toml"
    assert str(cfg) in demo_run.out
    settings = config.load(cfg)
    assert [c.name for c in settings.credentials] == ["demo"]
    assert settings.database.url == f"sqlite:///{demo_run.dir / 'rotator.db'}"
    verify = subprocess.run(
        [str(ROTATOR), "--config", str(cfg), "audit", "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert verify.returncode == 0, verify.stderr
    assert "audit chain intact" in verify.stdout


def test_it_ends_by_writing_the_auditors_report(demo_run: Run) -> None:
    report = demo_run.dir / "report.html"
    last_lines = demo_run.out.splitlines()[-2:]
    assert last_lines[0] == f"the auditor's report of this run: {report}", last_lines
    data = json.loads((demo_run.dir / "report.json").read_text())
    assert data["verification"]["ok"] and data["verification"]["keyed"]
    assert data["verification"]["checkpoint"] is not None  # against the demo's checkpoints
    (cred,) = data["credentials"]
    assert [r["trigger"] for r in cred["rotations"]] == ["manual", "emergency"]
    assert [r["outcome"] for r in cred["rotations"]] == ["completed", "completed"]
    assert len(cred["deletions"]) == 2
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "<script" not in html


def test_a_quiet_period_shorter_than_a_token_lifetime_is_a_usage_error() -> None:
    result = subprocess.run(
        [str(ROTATOR), "demo", "--quiet-period", "500ms"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "token lifetime" in result.stderr
