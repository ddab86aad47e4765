"""--state FILE: the sandbox's world survives a restart (and the file is kept private)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from rotator.devkit.sandbox import SandboxServer
from rotator.devkit.sandbox.testing import running_sandbox

from .conftest import Adobe


def test_credentials_secrets_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.json"
    with running_sandbox(state_file=path) as first, httpx.Client(base_url=first.url) as http:
        cred = first.admin.create_credential()
        adobe = Adobe(http, cred)
        token = adobe.token()
        added = adobe.add_secret(token).json()
    assert path.stat().st_mode & 0o777 == 0o600
    with running_sandbox(state_file=path) as second, httpx.Client(base_url=second.url) as http:
        adobe = Adobe(http, cred)
        entries = adobe.entries(token)  # the old token is still good
        assert cred.secret is not None
        assert [e["uuid"] for e in entries] == [cred.secret.uuid, added["uuid"]]
        assert entries[0]["secret_usages"] is not None
        adobe.token(secret=added["client_secret"])
        assert second.admin.create_credential().credential_id != cred.credential_id


def test_changes_are_saved_while_running(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with SandboxServer(state_file=path, save_interval_s=0.02) as server:
        cred = server.admin.create_credential()
        deadline = time.monotonic() + 5
        while not path.exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server.admin.create_credential()
        server.admin.save()
        saved = json.loads(path.read_text())
        assert saved["credentials"][0]["credential_id"] == cred.credential_id
        assert len(saved["credentials"]) == 2


def test_a_missing_state_file_starts_an_empty_world(tmp_path: Path) -> None:
    with running_sandbox(state_file=tmp_path / "nothing-yet.json") as server:
        assert server.admin.state()["credentials"] == []
