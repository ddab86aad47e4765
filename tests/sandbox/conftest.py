"""Fixtures for the sandbox's own tests: plain httpx against the real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rotator.devkit.sandbox import CreatedCredential, SandboxAdmin, SandboxServer
from rotator.devkit.sandbox.testing import sandbox, sandbox_server

__all__ = ["sandbox", "sandbox_server"]

ALL_SCOPES = "openid,AdobeID,read_organizations,read_client_secret,manage_client_secrets"


class Adobe:
    """Talks to the sandbox as a client of Adobe would, for one credential at a time."""

    def __init__(self, http: httpx.Client, cred: CreatedCredential) -> None:
        self.http = http
        self.cred = cred
        assert cred.secret is not None
        self.secret = cred.secret.client_secret

    def token_response(
        self, secret: str | None = None, scope: str = ALL_SCOPES, **extra: str
    ) -> httpx.Response:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.cred.client_id,
            "client_secret": secret or self.secret,
            "scope": scope,
            **extra,
        }
        return self.http.post("/ims/token/v3", data=form)

    def token(self, secret: str | None = None, scope: str = ALL_SCOPES) -> str:
        response = self.token_response(secret, scope)
        assert response.status_code == 200, response.text
        value: str = response.json()["access_token"]
        return value

    def headers(self, token: str | None = None, api_key: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token or self.token()}",
            "x-api-key": api_key or self.cred.client_id,
        }

    @property
    def secrets_path(self) -> str:
        return (
            f"/console/organizations/{self.cred.org_id}"
            f"/credentials/{self.cred.credential_id}/secrets"
        )

    def list_secrets(self, token: str | None = None) -> httpx.Response:
        return self.http.get(self.secrets_path, headers=self.headers(token))

    def add_secret(self, token: str | None = None) -> httpx.Response:
        return self.http.post(self.secrets_path, headers=self.headers(token))

    def delete_secret(self, uuid: str, token: str | None = None) -> httpx.Response:
        return self.http.delete(f"{self.secrets_path}/{uuid}", headers=self.headers(token))

    def entries(self, token: str | None = None) -> list[dict[str, Any]]:
        response = self.list_secrets(token)
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["client_secrets"]
        return entries


@pytest.fixture
def admin(sandbox: SandboxServer) -> SandboxAdmin:
    return sandbox.admin


@pytest.fixture(scope="session")
def _session_http(sandbox_server: SandboxServer) -> Iterator[httpx.Client]:
    # One client for the session: building an httpx.Client costs ~25 ms (its SSL context).
    with httpx.Client(base_url=sandbox_server.url, timeout=10) as client:
        yield client


@pytest.fixture
def http(sandbox: SandboxServer, _session_http: httpx.Client) -> httpx.Client:
    """A plain HTTP client on the (freshly reset) sandbox."""
    return _session_http


@pytest.fixture
def cred(admin: SandboxAdmin) -> CreatedCredential:
    return admin.create_credential()


@pytest.fixture
def adobe(http: httpx.Client, cred: CreatedCredential) -> Adobe:
    return Adobe(http, cred)
