"""``SandboxAdmin``: the test-side handle on a running sandbox's ``/sandbox`` admin API.

It speaks HTTP (not the in-process model) so the same code drives a sandbox started by a
fixture, by ``rotator sandbox`` in another process, or by a benchmark harness. The world
(credentials, secrets, tokens, the clock) is here; the test controls (faults, holds,
counters, the oracle) are :class:`~rotator.devkit.sandbox.controls_client.SandboxControls`,
which it extends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from rotator.devkit.sandbox.admin_http import SandboxAdminError
from rotator.devkit.sandbox.controls_client import SandboxControls

__all__ = [
    "CreatedCredential",
    "SandboxAdmin",
    "SandboxAdminError",
    "SecretValue",
]


@dataclass(frozen=True)
class SecretValue:
    """A secret as Adobe hands it out once; the value stays out of reprs and test output."""

    uuid: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True)
class CreatedCredential:
    org_id: str
    ims_org_id: str
    credential_id: str
    client_id: str
    technical_account_id: str
    secret: SecretValue | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CreatedCredential:
        raw = data.get("secret")
        return cls(
            org_id=data["org_id"],
            ims_org_id=data["ims_org_id"],
            credential_id=data["credential_id"],
            client_id=data["client_id"],
            technical_account_id=data["technical_account_id"],
            secret=None if raw is None else SecretValue(raw["uuid"], raw["client_secret"]),
        )


class SandboxAdmin(SandboxControls):
    """One method per admin endpoint: the world here (``routes_admin.py``), the test controls
    inherited; plus a few conveniences tests keep needing."""

    # ------------------------------------------------------------------ world

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/health")
        return result

    def reset(self) -> None:
        """Empty world, default settings, no faults/holds, zero counters, clock offset 0."""
        self._call("POST", "/reset")

    def state(self) -> dict[str, Any]:
        """Orgs, credentials, secrets (uuids, ms timestamps), token counts; no values."""
        result: dict[str, Any] = self._call("GET", "/state")
        return result

    def save(self) -> None:
        """Write the ``--state`` file now instead of at the next autosave."""
        self._call("POST", "/save")

    def settings(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/settings")
        return result

    def configure(self, **changes: Any) -> dict[str, Any]:
        """E.g. ``configure(add_status=200, delete_status=200, token_lifetime_s=2)``."""
        result: dict[str, Any] = self._call("PATCH", "/settings", changes)
        return result

    def create_org(self) -> str:
        org_id: str = self._call("POST", "/orgs")["org_id"]
        return org_id

    def create_credential(
        self,
        *,
        org_id: str | None = None,
        name: str | None = None,
        scopes: Iterable[str] | None = None,
        meta_scopes: Iterable[str] | None = None,
        public_keys: Iterable[str] = (),
        with_secret: bool = True,
    ) -> CreatedCredential:
        """A credential (in a new org unless ``org_id``) with its first secret."""
        body = _credential_body(org_id, name, scopes, meta_scopes, public_keys, with_secret)
        return CreatedCredential.from_json(self._call("POST", "/credentials", body))

    def create_credentials(
        self,
        count: int,
        *,
        org_id: str | None = None,
        scopes: Iterable[str] | None = None,
        with_secret: bool = True,
    ) -> list[CreatedCredential]:
        """Many credentials in one org in one call (benchmarks create a thousand)."""
        body = {
            **_credential_body(org_id, None, scopes, None, (), with_secret),
            "count": count,
        }
        data = self._call("POST", "/credentials/bulk", body)
        return [CreatedCredential.from_json(c) for c in data["credentials"]]

    def credential(self, credential_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/credentials/{credential_id}")
        return result

    def secrets(self, credential_id: str) -> list[dict[str, Any]]:
        """Secrets oldest first: uuid, created_at, last_used_at (int ms or None), usages."""
        result: list[dict[str, Any]] = self.credential(credential_id)["secrets"]
        return result

    def add_secret(self, credential_id: str) -> SecretValue:
        """Add a secret as a person in the Console would (no token needed; limit holds)."""
        data = self._call("POST", f"/credentials/{credential_id}/secrets")
        return SecretValue(data["uuid"], data["client_secret"])

    def delete_secret(self, credential_id: str, uuid: str) -> None:
        self._call("DELETE", f"/credentials/{credential_id}/secrets/{uuid}")

    def set_secret_times(
        self,
        credential_id: str,
        uuid: str,
        *,
        created_at: int | None = None,
        last_used_at: int | None = None,
        created_ago_s: float | None = None,
        last_used_ago_s: float | None = None,
        never_used: bool = False,
        grant_type: str = "client_credentials",
    ) -> dict[str, Any]:
        """Rewrite a secret's history, e.g. ``last_used_ago_s=30 * 3600``; ms epoch or ago."""
        body: dict[str, Any] = {"never_used": never_used, "grant_type": grant_type}
        for key, value in (
            ("created_at", created_at),
            ("last_used_at", last_used_at),
            ("created_ago_s", created_ago_s),
            ("last_used_ago_s", last_used_ago_s),
        ):
            if value is not None:
                body[key] = value
        result: dict[str, Any] = self._call(
            "PATCH", f"/credentials/{credential_id}/secrets/{uuid}", body
        )
        return result

    def reveal_secrets(self, credential_id: str) -> dict[str, str]:
        """Plaintext values by uuid: the only way a test sees a secret it did not create."""
        result: dict[str, str] = self._call("GET", f"/credentials/{credential_id}/secret-values")
        return result

    def secret_values(self) -> list[str]:
        """Every secret value ever issued (deleted ones too): needles for leak scans."""
        return [row["client_secret"] for row in self._call("GET", "/secret-values")]

    def token_values(self) -> list[str]:
        """Every access token minted since the last reset: needles for leak scans."""
        result: list[str] = self._call("GET", "/token-values")
        return result

    def consume(self, credential_id: str, uuid: str, scope: str | None = None) -> httpx.Response:
        """Act as a consumer: mint a token with that secret (its ``last_used_at`` moves).

        Answers exactly as the token endpoint would (so 400 ``invalid_client`` while the
        ``accept_delay`` fault holds), without faults or latency.
        """
        body: dict[str, Any] = {"uuid": uuid}
        if scope is not None:
            body["scope"] = scope
        response = self._http.post(f"/credentials/{credential_id}/consume", json=body)
        if response.status_code == 404:
            raise SandboxAdminError(404, response.json().get("detail"))
        return response

    def add_public_key(self, credential_id: str, pem: str) -> None:
        """Register a JWT binding (public key or certificate PEM) for the legacy exchange."""
        self._call("POST", f"/credentials/{credential_id}/public-keys", {"pem": pem})

    def tokens(self, client_id: str | None = None) -> list[dict[str, Any]]:
        """Token metadata (fingerprint, status, secret_uuid, scopes...), never values."""
        params = {"client_id": client_id} if client_id else None
        result: list[dict[str, Any]] = self._call("GET", "/tokens", params=params)
        return result

    def introspect(self, token: str) -> dict[str, Any]:
        """``status`` is active, revoked, expired or unknown."""
        result: dict[str, Any] = self._call("POST", "/tokens/introspect", {"token": token})
        return result

    # ------------------------------------------------------------------ clock

    def clock(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/clock")
        return result

    def now_ms(self) -> int:
        now: int = self.clock()["now"]
        return now

    def set_clock_offset(self, offset_s: float) -> None:
        self._call("PUT", "/clock", {"offset_s": offset_s})

    def advance_clock(self, seconds: float) -> None:
        """Move sandbox time forward: tokens expire, secrets age."""
        self._call("POST", "/clock/advance", {"seconds": seconds})


def _credential_body(
    org_id: str | None,
    name: str | None,
    scopes: Iterable[str] | None,
    meta_scopes: Iterable[str] | None,
    public_keys: Iterable[str],
    with_secret: bool,
) -> dict[str, Any]:
    return {
        "org_id": org_id,
        "name": name,
        "scopes": None if scopes is None else list(scopes),
        "meta_scopes": None if meta_scopes is None else list(meta_scopes),
        "public_keys": list(public_keys),
        "with_secret": with_secret,
    }
