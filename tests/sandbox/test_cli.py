"""`rotator sandbox`: the command, its help, and a real run in another process."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from rotator.devkit.sandbox.cli import sandbox

RUN = "from rotator.devkit.sandbox.cli import sandbox; sandbox()"


def test_help_explains_how_to_point_rotator_at_it() -> None:
    result = CliRunner().invoke(sandbox, ["--help"])
    assert result.exit_code == 0
    for text in [
        'ims_url = "http://127.0.0.1:8765"',
        'api_url = "http://127.0.0.1:8765"',
        "/sandbox/credentials",
        "--state",
        "--add-status",
        "--delete-status",
        "--token-lifetime",
        "plaintext",
    ]:
        assert text in result.output


def test_bad_options_are_refused() -> None:
    result = CliRunner().invoke(sandbox, ["--add-status", "202"])
    assert result.exit_code == 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_real_run_serves_saves_and_logs_no_secrets(tmp_path: Path) -> None:
    port, state = _free_port(), tmp_path / "state.json"
    args = [
        "--port",
        str(port),
        "--state",
        str(state),
        "--add-status",
        "200",
        "--token-lifetime",
        "60",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=5) as http:
            deadline = time.monotonic() + 10
            while True:
                try:
                    http.get("/sandbox/health")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the sandbox did not come up"
                    time.sleep(0.05)
            created = http.post("/sandbox/credentials", json={}).json()
            form = {
                "grant_type": "client_credentials",
                "client_id": created["client_id"],
                "client_secret": created["secret"]["client_secret"],
                "scope": "manage_client_secrets",
            }
            timings = []
            for _ in range(10):
                started = time.perf_counter()
                minted = http.post("/ims/token/v3", data=form).json()
                timings.append(time.perf_counter() - started)
            # with Nagle on, every answer waits ~40 ms for the client's delayed ACK
            assert min(timings) < 0.02, "responses must not wait on delayed ACKs"
            assert minted["expires_in"] == 60
            token = minted["access_token"]
            http.get("/ims/logout/v1/token", params={"access_token": "x" + token, "client_id": "y"})
            org, credential = created["org_id"], created["credential_id"]
            path = f"/console/organizations/{org}/credentials/{credential}/secrets"
            added = http.post(
                path,
                headers={"Authorization": f"Bearer {token}", "x-api-key": created["client_id"]},
            )
            assert added.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err.decode()
    saved = json.loads(state.read_text())
    assert saved["credentials"][0]["client_id"] == created["client_id"]
    logs = (out + err).decode()
    assert "127.0.0.1" in logs  # it did say where it listens
    for needle in [created["secret"]["client_secret"], added.json()["client_secret"], token]:
        assert needle not in logs


def test_the_devkit_speaks_with_the_cli_exit_codes() -> None:
    """The devkit keeps its own `say`/`die` so it never imports the CLI; the codes agree."""
    from rotator.cli import output
    from rotator.devkit import console

    assert (console.EXIT_OK, console.EXIT_FAILED, console.EXIT_USAGE) == (
        output.EXIT_OK,
        output.EXIT_FAILED,
        output.EXIT_USAGE,
    )
