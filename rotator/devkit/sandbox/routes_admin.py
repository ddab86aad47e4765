"""The admin API's world routes: health, reset, settings, orgs, credentials, secrets, tokens
and the clock (JSON under ``/sandbox``, no auth, never counted or faulted).

:class:`rotator.devkit.sandbox.client.SandboxAdmin` wraps each of them.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Final

from starlette.requests import Request

from rotator.devkit.sandbox.admin_payloads import (
    AdvanceIn,
    BulkCredentialsIn,
    ClockIn,
    ConsumeIn,
    CredentialIn,
    PublicKeyIn,
    SecretTimesIn,
    TokenIn,
)
from rotator.devkit.sandbox.asgi import AdminHandler, json_response, path_param, payload, render
from rotator.devkit.sandbox.state import SandboxState

__all__ = ["WORLD_ROUTES"]


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
    return json_response(_create_one(state, await payload(request, CredentialIn)), 201)


async def _create_credentials(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, BulkCredentialsIn)
    org_id = spec.org_id or state.create_org().org_id
    one = CredentialIn(**{**spec.model_dump(exclude={"count"}), "org_id": org_id})
    return json_response({"credentials": [_create_one(state, one) for _ in range(spec.count)]}, 201)


async def _credential(state: SandboxState, request: Request) -> Any:
    return state.credential_view(path_param(request, "credential_id"))


async def _admin_add_secret(state: SandboxState, request: Request) -> Any:
    secret = state.admin_add_secret(path_param(request, "credential_id"))
    return json_response({"uuid": secret.uuid, "client_secret": secret.value}, 201)


async def _admin_delete_secret(state: SandboxState, request: Request) -> Any:
    state.admin_delete_secret(path_param(request, "credential_id"), path_param(request, "uuid"))


async def _secret_times(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, SecretTimesIn)
    now = state.now_ms()
    created_at = spec.created_at
    if spec.created_ago_s is not None:
        created_at = now - int(spec.created_ago_s * 1000)
    last_used_at = spec.last_used_at
    if spec.last_used_ago_s is not None:
        last_used_at = now - int(spec.last_used_ago_s * 1000)
    state.set_secret_times(
        path_param(request, "credential_id"),
        path_param(request, "uuid"),
        created_at=created_at,
        last_used_at=last_used_at,
        never_used=spec.never_used,
        grant_type=spec.grant_type,
    )
    return state.credential_view(path_param(request, "credential_id"))


async def _consume(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, ConsumeIn)
    return render(state.consume(path_param(request, "credential_id"), spec.uuid, spec.scope))


async def _reveal(state: SandboxState, request: Request) -> Any:
    return state.reveal_secrets(path_param(request, "credential_id"))


async def _public_key(state: SandboxState, request: Request) -> Any:
    spec = await payload(request, PublicKeyIn)
    state.add_public_key(path_param(request, "credential_id"), spec.pem)


async def _all_secret_values(state: SandboxState, request: Request) -> Any:
    return state.all_secret_values()


async def _token_values(state: SandboxState, request: Request) -> Any:
    return state.all_token_values()


async def _tokens(state: SandboxState, request: Request) -> Any:
    return state.tokens(request.query_params.get("client_id"))


async def _introspect(state: SandboxState, request: Request) -> Any:
    return state.introspect((await payload(request, TokenIn)).token)


async def _get_clock(state: SandboxState, request: Request) -> Any:
    return {"now": state.now_ms(), "offset_s": state.clock_offset_s}


async def _set_clock(state: SandboxState, request: Request) -> Any:
    state.set_clock_offset((await payload(request, ClockIn)).offset_s)
    return await _get_clock(state, request)


async def _advance_clock(state: SandboxState, request: Request) -> Any:
    state.advance_clock((await payload(request, AdvanceIn)).seconds)
    return await _get_clock(state, request)


WORLD_ROUTES: Final[list[tuple[str, AdminHandler, list[str]]]] = [
    ("/health", _health, ["GET"]),
    ("/reset", _reset, ["POST"]),
    ("/state", _snapshot, ["GET"]),
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
]
