"""``SandboxAdmin``: the test-side handle on a running sandbox's ``/sandbox`` admin API.

It speaks HTTP (not the in-process model) so the same code drives a sandbox started by a
fixture, by ``rotator sandbox`` in another process, or by a benchmark harness.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import httpx

__all__ = [
    "CreatedCredential",
    "SandboxAdmin",
    "SandboxAdminError",
    "SecretValue",
]

Phase = Literal["before", "after"]


class SandboxAdminError(Exception):
    """The admin API refused a call (bad input 422, unknown id 404, secret limit 409)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"sandbox admin call failed with {status}: {detail}")
        self.status = status
        self.detail = detail


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


class SandboxAdmin:
    """One method per admin endpoint, plus a few conveniences tests keep needing."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url + "/sandbox", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any) -> Any:
        response = self._http.request(method, path, json=body, **kw)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise SandboxAdminError(response.status_code, detail)
        return response.json()

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

    # ------------------------------------------------------------------ faults

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/faults")
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def add_fault(
        self,
        endpoint: str,
        *,
        action: Literal["error", "drop"] = "error",
        status: int = 503,
        count: int | None = None,
        rate: float = 1.0,
        seed: int | None = None,
        phase: Phase = "before",
        client_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> str:
        """Arm a fault rule on an endpoint name (or ``"*"``); returns its id."""
        body = {
            "endpoint": endpoint,
            "action": action,
            "status": status,
            "count": count,
            "rate": rate,
            "seed": seed,
            "phase": phase,
            "client_id": client_id,
            "retry_after_s": retry_after_s,
        }
        rule_id: str = self._call("POST", "/faults/rules", body)["id"]
        return rule_id

    def fail_next(self, endpoint: str, count: int = 1, status: int = 503, **kw: Any) -> str:
        """The next ``count`` calls to ``endpoint`` answer ``status`` (deterministic)."""
        return self.add_fault(endpoint, status=status, count=count, **kw)

    def drop_next(self, endpoint: str, count: int = 1, **kw: Any) -> str:
        """The next ``count`` calls to ``endpoint`` get their connection dropped."""
        return self.add_fault(endpoint, action="drop", count=count, **kw)

    def remove_fault(self, rule_id: str) -> None:
        """Disarm a fault rule, an omission or a usage regression by its id."""
        self._call("DELETE", f"/faults/rules/{rule_id}")

    def set_latency(
        self, endpoint: str = "*", ms: float = 0.0, jitter_ms: float = 0.0, seed: int | None = None
    ) -> None:
        """Added latency (non-blocking) per endpoint, or for all with ``"*"``; 0 removes."""
        body = {"endpoint": endpoint, "ms": ms, "jitter_ms": jitter_ms, "seed": seed}
        self._call("PUT", "/faults/latency", body)

    def set_timing(
        self,
        *,
        usage_lag_ms: int | None = None,
        accept_delay_ms: int | None = None,
        usage_lag_jitter_ms: int | None = None,
        client_id: str | None = None,
        seed: int | None = None,
    ) -> None:
        """``usage_lag_ms`` (+ a uniform draw up to ``usage_lag_jitter_ms`` per use): uses
        show in last_used_at late; ``accept_delay_ms``: new secrets are refused by IMS for
        that long after the API created them. For one ``client_id``, or everyone."""
        body = {
            "usage_lag_ms": usage_lag_ms,
            "usage_lag_jitter_ms": usage_lag_jitter_ms,
            "accept_delay_ms": accept_delay_ms,
            "client_id": client_id,
            "seed": seed,
        }
        self._call("PUT", "/faults/timing", body)

    def set_add_status(self, status: int | None, *, client_id: str | None = None) -> None:
        """Answer adds with 200, 201 or 202 (full body each); None: back to the setting."""
        self._call("PUT", "/faults/add-status", {"status": status, "client_id": client_id})

    def omit_secret(
        self,
        *,
        client_id: str | None = None,
        uuid: str | None = None,
        count: int | None = None,
        rate: float = 1.0,
        seed: int | None = None,
    ) -> str:
        """The next ``count`` list answers leave ``uuid`` out (None: a random listed one)."""
        body = {"client_id": client_id, "uuid": uuid, "count": count, "rate": rate, "seed": seed}
        rule_id: str = self._call("POST", "/faults/omissions", body)["id"]
        return rule_id

    def regress_usages(
        self,
        mode: Literal["null", "stale"] = "null",
        *,
        stale_ms: int = 0,
        client_id: str | None = None,
        uuid: str | None = None,
        count: int | None = None,
        rate: float = 1.0,
        seed: int | None = None,
    ) -> str:
        """The next ``count`` list answers show ``secret_usages`` as null, or as they were
        ``stale_ms`` ago (``mode="stale"``), for ``uuid`` (None: every secret)."""
        body = {
            "mode": mode,
            "stale_ms": stale_ms,
            "client_id": client_id,
            "uuid": uuid,
            "count": count,
            "rate": rate,
            "seed": seed,
        }
        rule_id: str = self._call("POST", "/faults/usages", body)["id"]
        return rule_id

    def linger_deleted(
        self,
        *,
        answers: int = 1,
        client_id: str | None = None,
        count: int | None = None,
        rate: float = 1.0,
        seed: int | None = None,
    ) -> str:
        """The next ``count`` deletions leave the deleted secret listed for ``answers``
        more list answers (a replica that has not seen the delete)."""
        body = {
            "answers": answers,
            "client_id": client_id,
            "count": count,
            "rate": rate,
            "seed": seed,
        }
        rule_id: str = self._call("POST", "/faults/lingering", body)["id"]
        return rule_id

    # ------------------------------------------------------------------ oracle

    def oracle(self, credential_id: str | None = None) -> dict[str, Any]:
        """The truth: every secret's uses (with source), refusals, deletion and what the
        list answers showed and hid. See ``rotator.devkit.sandbox.oracle``."""
        path = "/oracle" if credential_id is None else f"/credentials/{credential_id}/oracle"
        result: dict[str, Any] = self._call("GET", path)
        return result

    # ------------------------------------------------------------------ holds

    def holds(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/holds")
        return result

    def arm_hold(
        self,
        endpoint: str,
        phase: Phase = "before",
        *,
        client_id: str | None = None,
        timeout_s: float = 30.0,
    ) -> str:
        """Hold the next matching request before (or after) it takes effect; returns an id."""
        body = {
            "endpoint": endpoint,
            "phase": phase,
            "client_id": client_id,
            "timeout_s": timeout_s,
        }
        hold_id: str = self._call("POST", "/holds", body)["id"]
        return hold_id

    def wait_held(self, hold_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """Block until a request is parked on the hold; TimeoutError if none arrives."""
        try:
            result: dict[str, Any] = self._call(
                "POST", f"/holds/{hold_id}/wait", {"timeout_s": timeout_s}
            )
        except SandboxAdminError as exc:
            if exc.status == 408:
                raise TimeoutError(f"no request reached hold {hold_id}") from None
            raise
        return result

    def release(self, hold_id: str, *, drop: bool = False) -> dict[str, Any]:
        """Let the held request finish (``drop=True``: close its connection instead)."""
        result: dict[str, Any] = self._call("POST", f"/holds/{hold_id}/release", {"drop": drop})
        return result

    def clear_holds(self) -> None:
        self._call("DELETE", "/holds")

    # ------------------------------------------------------------------ counters

    def counters(self) -> dict[str, Any]:
        """``{"endpoints": {name: {requests, responses: {status: n}, faults}}, ...}``."""
        result: dict[str, Any] = self._call("GET", "/counters")
        return result

    def count(self, endpoint: str) -> int:
        requests: int = self.counters()["endpoints"][endpoint]["requests"]
        return requests

    def reset_counters(self) -> None:
        self._call("DELETE", "/counters")


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
