"""The HTTP handle both admin clients share: one ``httpx.Client`` on ``/sandbox``, errors as
:class:`SandboxAdminError`."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

__all__ = ["AdminHttp", "SandboxAdminError"]


class SandboxAdminError(Exception):
    """The admin API refused a call (bad input 422, unknown id 404, secret limit 409)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"sandbox admin call failed with {status}: {detail}")
        self.status = status
        self.detail = detail


class AdminHttp:
    """A connection to a running sandbox's admin API (``/sandbox``)."""

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
