"""The Starlette application: Adobe's IMS and I/O Management API on one port, plus ``/sandbox``.

Handlers are thin: they unpack the request, ask :class:`SandboxState` for a :class:`Reply`
and render it, inside the fault machinery of ``asgi.py``. The routes live by concern:

* ``routes_ims.py``: ``token`` POST /ims/token/v3, ``jwt_exchange`` POST /ims/exchange/jwt,
  ``revoke`` POST /ims/revoke, ``invalidate`` POST /ims/invalidate_token/v2, ``logout``
  GET|POST /ims/logout/v1/token;
* ``routes_secrets.py``: ``list_secrets`` GET, ``add_secret`` POST .../secrets,
  ``delete_secret`` DELETE .../secrets/{uuid} under
  /console/organizations/{org}/credentials/{credential};
* ``routes_admin.py`` (the world: credentials, orgs, clock, tokens) and
  ``routes_controls.py`` (faults, holds, counters, oracle): admin endpoints under
  ``/sandbox`` (JSON, no auth, never counted or faulted), each wrapped by
  :class:`rotator.devkit.sandbox.client.SandboxAdmin`.

The endpoint names are what counters, faults and holds use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from rotator.devkit.sandbox.asgi import (
    ADMIN_PREFIX,
    AdminHandler,
    AdobeDate,
    ExposeConnection,
    admin_endpoint,
    json_response,
    render,
)
from rotator.devkit.sandbox.model import gateway_error
from rotator.devkit.sandbox.persistence import save_state
from rotator.devkit.sandbox.routes_admin import WORLD_ROUTES
from rotator.devkit.sandbox.routes_controls import CONTROL_ROUTES
from rotator.devkit.sandbox.routes_ims import IMS_ROUTES
from rotator.devkit.sandbox.routes_secrets import SECRETS_ROUTES
from rotator.devkit.sandbox.state import SandboxState

__all__ = ["ADMIN_PREFIX", "create_app"]

_log = logging.getLogger(__name__)


def _admin_routes(state_file: Path | None) -> list[Route]:
    async def _save(state: SandboxState, request: Request) -> Any:
        if state_file is None:
            raise LookupError("the sandbox was started without --state")
        save_state(state, state_file)
        return {"ok": True, "revision": state.revision}

    save: list[tuple[str, AdminHandler, list[str]]] = [("/save", _save, ["POST"])]
    return [
        Route(ADMIN_PREFIX + path, admin_endpoint(handler), methods=methods)
        for path, handler, methods in [*WORLD_ROUTES, *save, *CONTROL_ROUTES]
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods: JSON like the gateway's, so clients parse one shape."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith(ADMIN_PREFIX + "/"):
        response = json_response({"detail": exc.detail}, exc.status_code)
    else:
        reply = gateway_error(exc.status_code, f"{exc.status_code}000", exc.detail)
        response = render(reply)
    response.headers.update(exc.headers or {})
    return response


async def _autosave(state: SandboxState, path: Path, interval_s: float) -> None:
    saved = state.revision
    while True:
        await asyncio.sleep(interval_s)
        if state.revision != saved:
            saved = state.revision
            try:
                await asyncio.to_thread(save_state, state, path)
            except OSError as exc:
                _log.warning("could not save sandbox state to %s: %s", path, exc.strerror)


def create_app(
    state: SandboxState,
    *,
    state_file: Path | None = None,
    save_interval_s: float = 0.5,
) -> ASGIApp:
    """Build the ASGI app around ``state``; with ``state_file``, save it while running.

    Saving is debounced (every ``save_interval_s`` when something changed) and done once
    more at shutdown, so a benchmark's thousands of writes do not each rewrite the file.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = None
        if state_file is not None:
            task = asyncio.create_task(_autosave(state, state_file, save_interval_s))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if state_file is not None:
                save_state(state, state_file)

    app = Starlette(
        routes=[*IMS_ROUTES, *SECRETS_ROUTES, *_admin_routes(state_file)],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.sandbox = state
    return ExposeConnection(AdobeDate(app, state))
