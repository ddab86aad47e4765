"""The HTTP plumbing every sandbox route shares: the fault machinery around Adobe endpoints,
the error mapping around admin endpoints, request parsing and reply rendering.

Around every Adobe endpoint sits the fault machinery: latency (an ``await asyncio.sleep``,
so concurrent requests overlap), holds and injected errors, each either *before* the
request takes effect or *after* it (the effect happened, the answer is lost). Nothing here
logs a request, a body or a query string.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rotator.devkit.sandbox.faults import Hold, Phase
from rotator.devkit.sandbox.model import Reply, fault_reply
from rotator.devkit.sandbox.state import SandboxState

__all__ = [
    "ADMIN_PREFIX",
    "POLL_S",
    "AdminHandler",
    "AdobeDate",
    "Effect",
    "ExposeConnection",
    "admin_endpoint",
    "adobe_endpoint",
    "basic_auth",
    "json_response",
    "path_param",
    "payload",
    "render",
]

ADMIN_PREFIX: Final = "/sandbox"
_CYCLE_KEY: Final = "rotator.devkit.sandbox.cycle"
POLL_S: Final = 0.005

# --------------------------------------------------------------------------- dropping


class ExposeConnection:
    """Outermost ASGI layer: remember uvicorn's per-request cycle so a fault can drop it.

    ASGI has no "close without answering"; uvicorn's ``send`` is a bound method of the
    request cycle, which owns the transport. Aborting that transport is what a client sees
    when a load balancer or the network drops a connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_CYCLE_KEY] = getattr(send, "__self__", None)
        await self.app(scope, receive, send)


class AdobeDate:
    """Adobe's clock in every answer's `Date` header: sandbox time (the host's clock plus
    the clock offset, `SandboxAdmin.set_clock_offset`), as every time the sandbox reports
    follows it. With an offset, the sandbox is an Adobe whose clock is skewed against the
    host's and the database's (uvicorn's own Date header is off: `uvicorn_config`)."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                date = email.utils.formatdate(self.state.now_ms() / 1000, usegmt=True)
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", date.encode())]}
            await send(message)

        await self.app(scope, receive, dated)


class _Drop:
    """Sentinel: the answer to this request is a closed connection."""


_DROP: Final = _Drop()


async def _drop_connection(request: Request) -> None:
    cycle = request.scope.get(_CYCLE_KEY)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("this server does not expose its transport; cannot drop a connection")
    transport.abort()
    # connection_lost runs on the next loop turns; once it has, uvicorn ignores our send.
    for _ in range(50):
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0)


# --------------------------------------------------------------------------- helpers


def render(reply: Reply) -> Response:
    if reply.body is None or reply.status == 204:
        return Response(status_code=reply.status, headers=dict(reply.headers))
    return Response(
        json.dumps(reply.body, separators=(",", ":")),
        status_code=reply.status,
        headers=dict(reply.headers),
        media_type="application/json",
    )


async def _read_form(request: Request) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` body as a dict (first value wins).

    Parsed here rather than with ``request.form()`` because that needs python-multipart,
    which rotator does not depend on, for a format the standard library already reads.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    body = (await request.body()).decode("utf-8", errors="replace")
    form: dict[str, str] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        form.setdefault(key, value)
    return form


def basic_auth(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def _match_key(request: Request, form: Mapping[str, str]) -> str | None:
    """The client id a request is for: what fault and hold ``client_id`` filters match."""
    basic = basic_auth(request)
    return (
        request.headers.get("x-api-key")
        or form.get("client_id")
        or (basic[0] if basic else None)
        or request.query_params.get("client_id")
    )


def _sandbox_of(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def path_param(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    return value


M = TypeVar("M", bound=BaseModel)


async def payload(request: Request, model: type[M]) -> M:
    body = await request.body()
    return model.model_validate_json(body or b"{}")


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def admin_endpoint(
    handler: Callable[[SandboxState, Request], Awaitable[Any]],
) -> Callable[[Request], Awaitable[Response]]:
    """Map the model's exceptions to HTTP: bad input 422, unknown id 404, full 409."""

    async def handle(request: Request) -> Response:
        try:
            result = await handler(_sandbox_of(request), request)
        except ValidationError as exc:
            return json_response(
                {"detail": exc.errors(include_url=False, include_input=False)}, 422
            )
        except (ValueError, json.JSONDecodeError) as exc:
            return json_response({"detail": str(exc)}, 422)
        except LookupError as exc:
            return json_response({"detail": str(exc)}, 404)
        except OverflowError as exc:
            return json_response({"detail": str(exc)}, 409)
        if isinstance(result, Response):
            return result
        return json_response({"ok": True} if result is None else result)

    return handle


# --------------------------------------------------------------------------- Adobe endpoints

Effect = Callable[[SandboxState, Request, Mapping[str, str]], Reply]


async def _wait_released(state: SandboxState, hold: Hold) -> None:
    deadline = time.monotonic() + hold.timeout_s
    while not hold.released_event.is_set():
        if time.monotonic() >= deadline:
            state.faults.expire_hold(hold)
            return
        await asyncio.sleep(POLL_S)


async def _checkpoint(
    state: SandboxState, endpoint: str, key: str | None, phase: Phase
) -> Reply | _Drop | None:
    hold = state.faults.catch_hold(endpoint, key, phase)
    if hold is not None:
        await _wait_released(state, hold)
        if hold.drop:
            return _DROP
    fault = state.faults.take(endpoint, key, phase)
    if fault is None:
        return None
    if fault.action == "drop":
        return _DROP
    return fault_reply(endpoint, fault.status, fault.retry_after_s)


def adobe_endpoint(endpoint: str, effect: Effect) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an Adobe operation with counters, latency, holds and faults."""

    async def handle(request: Request) -> Response:
        state = _sandbox_of(request)
        form = await _read_form(request)
        key = _match_key(request, form)
        state.faults.begin_request(endpoint)
        outcome = "500"
        try:
            delay = state.faults.latency_s(endpoint)
            if delay > 0:
                await asyncio.sleep(delay)
            result = await _checkpoint(state, endpoint, key, "before")
            if result is None:
                reply = effect(state, request, form)
                result = await _checkpoint(state, endpoint, key, "after") or reply
            if isinstance(result, _Drop):
                outcome = "dropped"
                await _drop_connection(request)
                return Response(status_code=500)  # never sent: the connection is gone
            outcome = str(result.status)
            return render(result)
        finally:
            state.faults.end_request(endpoint, outcome)

    return handle


AdminHandler = Callable[[SandboxState, Request], Awaitable[Any]]
