"""The smaller leaks of issue 27, through the installed `rotator` command: a key file others
can read, an AWS endpoint in clear text (in the config or in the environment), a configured
checkpoint file that is missing (and a relative one found from any directory), control
characters in `--actor` and `--reason`, and the files rotator writes being private."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
from pathlib import Path

from tests.system.conftest import ROTATOR, System, to_toml


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_bad_keys_endpoints_and_checkpoints_are_one_line_errors(
    system: System, tmp_path: Path
) -> None:
    system.credential()
    etc = tmp_path / "etc"
    etc.mkdir()
    key = etc / "audit.key"
    key.write_text(secrets.token_urlsafe(32))
    key.chmod(0o644)
    config = etc / "rotator.toml"
    audit = f'[audit]\nkeys = [{{ id = "a1", file = "{key}" }}]\ncheckpoint_file = "cp.jsonl"\n'
    config.write_text(to_toml(system.config()) + audit)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(ROTATOR), "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=elsewhere,
            env={**system.env(), **(env or {})},
        )
        system.transcript += [done.stdout, done.stderr]
        return done

    assert run("db", "upgrade").returncode == 0
    uuid = system.world.adobe_uuids()[0]
    readable = run("adopt", "analytics", "--uuid", uuid)
    assert readable.returncode == 2, readable
    assert f"chmod 600 {key}" in _one_line(readable.stderr)
    key.chmod(0o600)

    clear = run("status", env={"AWS_ENDPOINT_URL": "http://aws.example.net"})
    assert clear.returncode == 2 and "AWS_ENDPOINT_URL" in _one_line(clear.stderr), clear

    missing = run("audit", "verify")
    assert missing.returncode == 1, missing
    assert f"{etc / 'cp.jsonl'} does not exist" in _one_line(missing.stderr)

    # A checkpoint written from another directory lands beside the config, and is found.
    actor = "\x1b[2J\x1b[31mticket-9\x07"
    adopted = run("--actor", actor, "adopt", "analytics", "--uuid", uuid)
    assert adopted.returncode == 0, adopted
    assert run("audit", "checkpoint").returncode == 0
    assert (etc / "cp.jsonl").exists() and not (elsewhere / "cp.jsonl").exists()
    verified = run("audit", "verify")
    assert verified.returncode == 0 and "checkpoint" in verified.stdout, verified

    # --actor stored without its control characters (so `history` prints none).
    claimed = [e["actor"] for e in system.events() if "ticket-9" in e["actor"]]
    assert claimed and set(claimed) == {"[2J[31mticket-9"}, claimed

    # Everything rotator wrote is private (umask 0o077), whatever the caller's umask.
    report = elsewhere / "report.html"
    assert run("report", "-o", str(report)).returncode == 0
    database = Path(system.world.db_url.removeprefix("sqlite:///"))
    for written in (report, etc / "cp.jsonl", database):
        mode = stat.S_IMODE(os.stat(written).st_mode)
        assert mode == 0o600, f"{written}: {mode:04o}"
