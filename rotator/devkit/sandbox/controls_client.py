"""``SandboxControls``: the test controls of a running sandbox over HTTP: faults, latency,
the eventual-consistency switches, the oracle, holds and counters.

:class:`~rotator.devkit.sandbox.client.SandboxAdmin` adds the world (credentials, secrets,
tokens, clock) to these; a harness that only injects faults can use this class alone.
"""

from __future__ import annotations

from typing import Any, Literal

from rotator.devkit.sandbox.admin_http import AdminHttp, SandboxAdminError

__all__ = ["SandboxControls"]

Phase = Literal["before", "after"]


class SandboxControls(AdminHttp):
    """One method per test-control endpoint (``routes_controls.py``)."""

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
