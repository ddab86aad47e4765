"""Reusable pytest fixtures and helpers for any test suite that needs a fake Adobe.

In a ``conftest.py``::

    from rotator.devkit.sandbox.testing import sandbox, sandbox_server  # noqa: F401

``sandbox_server`` is one server per test session (starting uvicorn costs ~50 ms, a
thousand tests would feel it); ``sandbox`` hands each test that server freshly reset
(empty world, default settings, no faults, holds or counters). A test that needs its own
server, e.g. with other default settings or a state file, uses :func:`running_sandbox`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from rotator.devkit.sandbox.rs256 import generate_rsa_key_pair, sign_rs256
from rotator.devkit.sandbox.server import SandboxServer
from rotator.devkit.sandbox.state import PRODUCTION_IMS, Settings

__all__ = [
    "generate_rsa_key_pair",
    "jwt_for",
    "running_sandbox",
    "sandbox",
    "sandbox_server",
]


@contextmanager
def running_sandbox(
    *, state_file: Path | None = None, port: int = 0, **settings: Any
) -> Iterator[SandboxServer]:
    """A sandbox of its own on a free port, e.g. ``running_sandbox(add_status=200)``."""
    with SandboxServer(port=port, settings=Settings(**settings), state_file=state_file) as server:
        yield server


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """One sandbox for the whole session; prefer ``sandbox``, which resets it per test."""
    with running_sandbox() as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> Iterator[SandboxServer]:
    """The session's sandbox, reset before the test and its holds released after it."""
    sandbox_server.state.reset()
    yield sandbox_server
    sandbox_server.state.faults.release_all_holds()


def jwt_for(
    *,
    private_key_pem: str,
    client_id: str,
    ims_org_id: str,
    technical_account_id: str,
    ims_url: str = PRODUCTION_IMS,
    meta_scopes: tuple[str, ...] = ("ent_adobeio_sdk",),
    lifetime_s: int = 300,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A Service Account JWT with the claims Adobe's legacy exchange expects."""
    claims: dict[str, Any] = {
        "exp": int(time.time()) + lifetime_s,
        "iss": ims_org_id,
        "sub": technical_account_id,
        "aud": f"{ims_url.rstrip('/')}/c/{client_id}",
    }
    for meta_scope in meta_scopes:
        claims[f"{ims_url.rstrip('/')}/s/{meta_scope}"] = True
    claims.update(extra or {})
    return sign_rs256(claims, private_key_pem)
