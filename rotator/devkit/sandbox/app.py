"""The Starlette application: Adobe's IMS and I/O Management API on one port, plus ``/sandbox``.

Handlers are thin: they unpack the request, ask :class:`SandboxState` for a :class:`Reply`
and render it. Around every Adobe endpoint sits the fault machinery: latency (an
``await asyncio.sleep``, so concurrent requests overlap), holds and injected errors,
each either *before* the request takes effect or *after* it (the effect happened, the
answer is lost). Nothing here logs a request, a body or a query string.

Adobe endpoints (names used by counters, faults and holds): ``token`` POST /ims/token/v3,
``jwt_exchange`` POST /ims/exchange/jwt, ``revoke`` POST /ims/revoke, ``invalidate`` POST
/ims/invalidate_token/v2, ``logout`` GET|POST /ims/logout/v1/token, ``list_secrets`` GET,
``add_secret`` POST .../secrets, ``delete_secret`` DELETE .../secrets/{uuid} under
/console/organizations/{org}/credentials/{credential}.

Admin endpoints (JSON, no auth, never counted or faulted) are listed in
:func:`_admin_routes`; :class:`rotator.devkit.sandbox.client.SandboxAdmin` wraps each of them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rotator.devkit.sandbox.faults import Hold, Phase
from rotator.devkit.sandbox.persistence import save_state
from rotator.devkit.sandbox.state import (
    CLIENT_CREDENTIALS,
    PRODUCTION_IMS,
    Reply,
    SandboxState,
    fault_reply,
    gateway_error,
    ims_error,
)

__all__ = ["ADMIN_PREFIX", "create_app"]

ADMIN_PREFIX: Final = "/sandbox"
_CYCLE_KEY: Final = "rotator.devkit.sandbox.cycle"
_POLL_S: Final = 0.005
_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- dropping


class _ExposeConnection:
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


class _AdobeDate:
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


DROP: Final = _Drop()


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


def _render(reply: Reply) -> Response:
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


def _basic(request: Request) -> tuple[str, str] | None:
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
    basic = _basic(request)
    return (
        request.headers.get("x-api-key")
        or form.get("client_id")
        or (basic[0] if basic else None)
        or request.query_params.get("client_id")
    )


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


# --------------------------------------------------------------------------- Adobe endpoints

Effect = Callable[[SandboxState, Request, Mapping[str, str]], Reply]


async def _wait_released(state: SandboxState, hold: Hold) -> None:
    deadline = time.monotonic() + hold.timeout_s
    while not hold.released_event.is_set():
        if time.monotonic() >= deadline:
            state.faults.expire_hold(hold)
            return
        await asyncio.sleep(_POLL_S)


async def _checkpoint(
    state: SandboxState, endpoint: str, key: str | None, phase: Phase
) -> Reply | _Drop | None:
    hold = state.faults.catch_hold(endpoint, key, phase)
    if hold is not None:
        await _wait_released(state, hold)
        if hold.drop:
            return DROP
    fault = state.faults.take(endpoint, key, phase)
    if fault is None:
        return None
    if fault.action == "drop":
        return DROP
    return fault_reply(endpoint, fault.status, fault.retry_after_s)


def adobe_endpoint(endpoint: str, effect: Effect) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an Adobe operation with counters, latency, holds and faults."""

    async def handle(request: Request) -> Response:
        state = _state(request)
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
            return _render(result)
        finally:
            state.faults.end_request(endpoint, outcome)

    return handle


def _token(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    if "client_secret" in request.query_params:
        # Adobe asks for the body because query strings end up in logs; be strict about it.
        return ims_error("invalid_request", "client_secret must be sent in the request body")
    return state.mint_client_credentials(form, _basic(request))


def _jwt(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.exchange_jwt(form, (str(request.base_url).rstrip("/"), PRODUCTION_IMS))


def _revoke(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.revoke(form, _basic(request))


def _invalidate(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.invalidate_token(form, _basic(request))


def _logout(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.logout({**form, **request.query_params})


def _path(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    return value


def _list(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.list_secrets(
        _path(request, "org_id"),
        _path(request, "credential_id"),
        request.headers.get("x-api-key"),
        request.headers.get("authorization"),
    )


def _add(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.add_secret(
        _path(request, "org_id"),
        _path(request, "credential_id"),
        request.headers.get("x-api-key"),
        request.headers.get("authorization"),
    )


def _delete(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.delete_secret(
        _path(request, "org_id"),
        _path(request, "credential_id"),
        _path(request, "uuid"),
        request.headers.get("x-api-key"),
        request.headers.get("authorization"),
    )


_SECRETS: Final = "/console/organizations/{org_id}/credentials/{credential_id}/secrets"

ADOBE_ROUTES: Final = [
    Route("/ims/token/v3", adobe_endpoint("token", _token), methods=["POST"]),
    Route("/ims/exchange/jwt", adobe_endpoint("jwt_exchange", _jwt), methods=["POST"]),
    Route("/ims/revoke", adobe_endpoint("revoke", _revoke), methods=["POST"]),
    Route("/ims/invalidate_token/v2", adobe_endpoint("invalidate", _invalidate), methods=["POST"]),
    Route("/ims/logout/v1/token", adobe_endpoint("logout", _logout), methods=["GET", "POST"]),
    Route(_SECRETS, adobe_endpoint("list_secrets", _list), methods=["GET"]),
    Route(_SECRETS, adobe_endpoint("add_secret", _add), methods=["POST"]),
    Route(_SECRETS + "/{uuid}", adobe_endpoint("delete_secret", _delete), methods=["DELETE"]),
]


# --------------------------------------------------------------------------- admin payloads


class _In(BaseModel):
    """Admin request bodies: unknown keys are refused so a typo fails loudly (422)."""

    model_config = ConfigDict(extra="forbid")


class CredentialIn(_In):
    org_id: str | None = None
    name: str | None = None
    scopes: list[str] | None = None
    meta_scopes: list[str] | None = None
    public_keys: list[str] = Field(default_factory=list)
    with_secret: bool = True


class BulkCredentialsIn(CredentialIn):
    count: int = Field(ge=1, le=100_000)


class SecretTimesIn(_In):
    created_at: int | None = None
    last_used_at: int | None = None
    created_ago_s: float | None = None
    last_used_ago_s: float | None = None
    never_used: bool = False
    grant_type: str = CLIENT_CREDENTIALS


class ConsumeIn(_In):
    uuid: str
    scope: str | None = None


class PublicKeyIn(_In):
    pem: str


class TokenIn(_In):
    token: str


class ClockIn(_In):
    offset_s: float


class AdvanceIn(_In):
    seconds: float


class FaultIn(_In):
    endpoint: str
    action: Literal["error", "drop"] = "error"
    status: int = 503
    count: int | None = None
    rate: float = 1.0
    seed: int | None = None
    phase: Literal["before", "after"] = "before"
    client_id: str | None = None
    retry_after_s: float | None = None


class LatencyIn(_In):
    endpoint: str = "*"
    ms: float = Field(ge=0)
    jitter_ms: float = Field(default=0, ge=0)
    seed: int | None = None


class TimingIn(_In):
    usage_lag_ms: int | None = Field(default=None, ge=0)
    usage_lag_jitter_ms: int | None = Field(default=None, ge=0)
    accept_delay_ms: int | None = Field(default=None, ge=0)
    client_id: str | None = None
    seed: int | None = None


class AddStatusIn(_In):
    status: int | None
    client_id: str | None = None


class OmissionIn(_In):
    client_id: str | None = None
    uuid: str | None = None
    count: int | None = Field(default=None, ge=1)
    rate: float = Field(default=1.0, ge=0, le=1)
    seed: int | None = None


class LingeringIn(_In):
    answers: int = Field(default=1, ge=1)
    client_id: str | None = None
    count: int | None = Field(default=None, ge=1)
    rate: float = Field(default=1.0, ge=0, le=1)
    seed: int | None = None


class UsagesIn(OmissionIn):
    mode: Literal["null", "stale"] = "null"
    stale_ms: int = Field(default=0, ge=0)


class HoldIn(_In):
    endpoint: str
    phase: Literal["before", "after"] = "before"
    client_id: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)


class WaitIn(_In):
    timeout_s: float = Field(default=10.0, ge=0)


class ReleaseIn(_In):
    drop: bool = False


M = TypeVar("M", bound=BaseModel)


async def _payload(request: Request, model: type[M]) -> M:
    body = await request.body()
    return model.model_validate_json(body or b"{}")


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def admin_endpoint(
    handler: Callable[[SandboxState, Request], Awaitable[Any]],
) -> Callable[[Request], Awaitable[Response]]:
    """Map the model's exceptions to HTTP: bad input 422, unknown id 404, full 409."""

    async def handle(request: Request) -> Response:
        try:
            result = await handler(_state(request), request)
        except ValidationError as exc:
            return _json({"detail": exc.errors(include_url=False, include_input=False)}, 422)
        except (ValueError, json.JSONDecodeError) as exc:
            return _json({"detail": str(exc)}, 422)
        except LookupError as exc:
            return _json({"detail": str(exc)}, 404)
        except OverflowError as exc:
            return _json({"detail": str(exc)}, 409)
        if isinstance(result, Response):
            return result
        return _json({"ok": True} if result is None else result)

    return handle


# --------------------------------------------------------------------------- admin handlers


async def _health(state: SandboxState, request: Request) -> Any:
    return {"ok": True, "now": state.now_ms()}


async def _reset(state: SandboxState, request: Request) -> Any:
    state.reset()


async def _snapshot(state: SandboxState, request: Request) -> Any:
    return state.snapshot()


async def _get_settings(state: SandboxState, request: Request) -> Any:
    return state.snapshot()["settings"]


async def _patch_settings(state: SandboxState, request: Request) -> Any:
    changes = json.loads(await request.body() or b"{}")
    if not isinstance(changes, dict):
        raise ValueError("settings must be a JSON object")
    return dataclasses.asdict(state.configure(**changes))


async def _create_org(state: SandboxState, request: Request) -> Any:
    org = state.create_org()
    return {"org_id": org.org_id, "ims_org_id": org.ims_org_id}


def _create_one(state: SandboxState, spec: CredentialIn) -> dict[str, Any]:
    credential, secret = state.create_credential(
        org_id=spec.org_id,
        name=spec.name,
        scopes=spec.scopes,
        meta_scopes=spec.meta_scopes,
        public_keys=spec.public_keys,
        with_secret=spec.with_secret,
    )
    view = state.credential_view(credential.credential_id)
    return {
        "org_id": credential.org_id,
        "ims_org_id": view["ims_org_id"],
        "credential_id": credential.credential_id,
        "client_id": credential.client_id,
        "technical_account_id": credential.technical_account_id,
        "secret": None if secret is None else {"uuid": secret.uuid, "client_secret": secret.value},
    }


async def _create_credential(state: SandboxState, request: Request) -> Any:
    return _json(_create_one(state, await _payload(request, CredentialIn)), 201)


async def _create_credentials(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, BulkCredentialsIn)
    org_id = spec.org_id or state.create_org().org_id
    one = CredentialIn(**{**spec.model_dump(exclude={"count"}), "org_id": org_id})
    return _json({"credentials": [_create_one(state, one) for _ in range(spec.count)]}, 201)


async def _credential(state: SandboxState, request: Request) -> Any:
    return state.credential_view(_path(request, "credential_id"))


async def _admin_add_secret(state: SandboxState, request: Request) -> Any:
    secret = state.admin_add_secret(_path(request, "credential_id"))
    return _json({"uuid": secret.uuid, "client_secret": secret.value}, 201)


async def _admin_delete_secret(state: SandboxState, request: Request) -> Any:
    state.admin_delete_secret(_path(request, "credential_id"), _path(request, "uuid"))


async def _secret_times(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, SecretTimesIn)
    now = state.now_ms()
    created_at = spec.created_at
    if spec.created_ago_s is not None:
        created_at = now - int(spec.created_ago_s * 1000)
    last_used_at = spec.last_used_at
    if spec.last_used_ago_s is not None:
        last_used_at = now - int(spec.last_used_ago_s * 1000)
    state.set_secret_times(
        _path(request, "credential_id"),
        _path(request, "uuid"),
        created_at=created_at,
        last_used_at=last_used_at,
        never_used=spec.never_used,
        grant_type=spec.grant_type,
    )
    return state.credential_view(_path(request, "credential_id"))


async def _consume(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, ConsumeIn)
    return _render(state.consume(_path(request, "credential_id"), spec.uuid, spec.scope))


async def _reveal(state: SandboxState, request: Request) -> Any:
    return state.reveal_secrets(_path(request, "credential_id"))


async def _public_key(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, PublicKeyIn)
    state.add_public_key(_path(request, "credential_id"), spec.pem)


async def _all_secret_values(state: SandboxState, request: Request) -> Any:
    return state.all_secret_values()


async def _token_values(state: SandboxState, request: Request) -> Any:
    return state.all_token_values()


async def _tokens(state: SandboxState, request: Request) -> Any:
    return state.tokens(request.query_params.get("client_id"))


async def _introspect(state: SandboxState, request: Request) -> Any:
    return state.introspect((await _payload(request, TokenIn)).token)


async def _get_clock(state: SandboxState, request: Request) -> Any:
    return {"now": state.now_ms(), "offset_s": state.clock_offset_s}


async def _set_clock(state: SandboxState, request: Request) -> Any:
    state.set_clock_offset((await _payload(request, ClockIn)).offset_s)
    return await _get_clock(state, request)


async def _advance_clock(state: SandboxState, request: Request) -> Any:
    state.advance_clock((await _payload(request, AdvanceIn)).seconds)
    return await _get_clock(state, request)


async def _faults(state: SandboxState, request: Request) -> Any:
    return state.faults.view()


async def _clear_faults(state: SandboxState, request: Request) -> Any:
    state.faults.clear_faults()


async def _add_fault(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, FaultIn)
    return _json({"id": state.faults.add(**spec.model_dump())}, 201)


async def _remove_fault(state: SandboxState, request: Request) -> Any:
    rule_id = _path(request, "fault_id")
    if not state.faults.consistency.remove(rule_id):
        state.faults.remove(rule_id)


async def _latency(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, LatencyIn)
    state.faults.set_latency(spec.endpoint, spec.ms, spec.jitter_ms, spec.seed)
    return state.faults.view()


async def _timing(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, TimingIn)
    state.faults.set_timing(**spec.model_dump())
    return state.faults.view()


async def _add_status(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, AddStatusIn)
    state.faults.consistency.set_add_status(spec.status, client_id=spec.client_id)
    return state.faults.view()


async def _omission(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, OmissionIn)
    return _json({"id": state.faults.consistency.omit(**spec.model_dump())}, 201)


async def _usages(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, UsagesIn)
    return _json({"id": state.faults.consistency.distort_usages(**spec.model_dump())}, 201)


async def _lingering(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, LingeringIn)
    return _json({"id": state.faults.consistency.linger(**spec.model_dump())}, 201)


async def _oracle(state: SandboxState, request: Request) -> Any:
    return state.oracle.view(request.query_params.get("credential_id"))


async def _credential_oracle(state: SandboxState, request: Request) -> Any:
    credential_id = _path(request, "credential_id")
    state.credential_view(credential_id)  # 404 for an unknown credential
    return state.oracle.view(credential_id)


async def _holds(state: SandboxState, request: Request) -> Any:
    return state.faults.holds_view()


async def _arm_hold(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, HoldIn)
    hold = state.faults.arm_hold(
        spec.endpoint, spec.phase, client_id=spec.client_id, timeout_s=spec.timeout_s
    )
    return _json(hold.view(), 201)


async def _wait_hold(state: SandboxState, request: Request) -> Any:
    hold = state.faults.hold(_path(request, "hold_id"))
    spec = await _payload(request, WaitIn)
    deadline = time.monotonic() + spec.timeout_s
    while not hold.held_event.is_set():
        if time.monotonic() >= deadline:
            return _json({"detail": "no request was held in time", **hold.view()}, 408)
        await asyncio.sleep(_POLL_S)
    return hold.view()


async def _release_hold(state: SandboxState, request: Request) -> Any:
    spec = await _payload(request, ReleaseIn)
    state.faults.release(_path(request, "hold_id"), drop=spec.drop)
    return state.faults.hold(_path(request, "hold_id")).view()


async def _clear_holds(state: SandboxState, request: Request) -> Any:
    state.faults.clear_holds()


async def _counters(state: SandboxState, request: Request) -> Any:
    return state.faults.counters()


async def _reset_counters(state: SandboxState, request: Request) -> Any:
    state.faults.reset_counters()


def _admin_routes(state_file: Path | None) -> list[Route]:
    async def _save(state: SandboxState, request: Request) -> Any:
        if state_file is None:
            raise LookupError("the sandbox was started without --state")
        save_state(state, state_file)
        return {"ok": True, "revision": state.revision}

    table: list[tuple[str, Callable[[SandboxState, Request], Awaitable[Any]], list[str]]] = [
        ("/health", _health, ["GET"]),
        ("/reset", _reset, ["POST"]),
        ("/state", _snapshot, ["GET"]),
        ("/save", _save, ["POST"]),
        ("/settings", _get_settings, ["GET"]),
        ("/settings", _patch_settings, ["PATCH"]),
        ("/orgs", _create_org, ["POST"]),
        ("/credentials", _create_credential, ["POST"]),
        ("/credentials/bulk", _create_credentials, ["POST"]),
        ("/credentials/{credential_id}", _credential, ["GET"]),
        ("/credentials/{credential_id}/secrets", _admin_add_secret, ["POST"]),
        ("/credentials/{credential_id}/secrets/{uuid}", _admin_delete_secret, ["DELETE"]),
        ("/credentials/{credential_id}/secrets/{uuid}", _secret_times, ["PATCH"]),
        ("/credentials/{credential_id}/secret-values", _reveal, ["GET"]),
        ("/credentials/{credential_id}/consume", _consume, ["POST"]),
        ("/credentials/{credential_id}/public-keys", _public_key, ["POST"]),
        ("/secret-values", _all_secret_values, ["GET"]),
        ("/token-values", _token_values, ["GET"]),
        ("/tokens", _tokens, ["GET"]),
        ("/tokens/introspect", _introspect, ["POST"]),
        ("/clock", _get_clock, ["GET"]),
        ("/clock", _set_clock, ["PUT"]),
        ("/clock/advance", _advance_clock, ["POST"]),
        ("/faults", _faults, ["GET"]),
        ("/faults", _clear_faults, ["DELETE"]),
        ("/faults/rules", _add_fault, ["POST"]),
        ("/faults/rules/{fault_id}", _remove_fault, ["DELETE"]),
        ("/faults/latency", _latency, ["PUT"]),
        ("/faults/timing", _timing, ["PUT"]),
        ("/faults/add-status", _add_status, ["PUT"]),
        ("/faults/omissions", _omission, ["POST"]),
        ("/faults/usages", _usages, ["POST"]),
        ("/faults/lingering", _lingering, ["POST"]),
        ("/oracle", _oracle, ["GET"]),
        ("/credentials/{credential_id}/oracle", _credential_oracle, ["GET"]),
        ("/holds", _holds, ["GET"]),
        ("/holds", _arm_hold, ["POST"]),
        ("/holds", _clear_holds, ["DELETE"]),
        ("/holds/{hold_id}/wait", _wait_hold, ["POST"]),
        ("/holds/{hold_id}/release", _release_hold, ["POST"]),
        ("/counters", _counters, ["GET"]),
        ("/counters", _reset_counters, ["DELETE"]),
    ]
    return [
        Route(ADMIN_PREFIX + path, admin_endpoint(handler), methods=methods)
        for path, handler, methods in table
    ]


# --------------------------------------------------------------------------- the app


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods: JSON like the gateway's, so clients parse one shape."""
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith(ADMIN_PREFIX + "/"):
        response = _json({"detail": exc.detail}, exc.status_code)
    else:
        reply = gateway_error(exc.status_code, f"{exc.status_code}000", exc.detail)
        response = _render(reply)
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
        routes=[*ADOBE_ROUTES, *_admin_routes(state_file)],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.sandbox = state
    return _ExposeConnection(_AdobeDate(app, state))
