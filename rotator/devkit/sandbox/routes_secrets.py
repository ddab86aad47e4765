"""The I/O Management API's routes: list, add and delete a credential's secrets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from starlette.requests import Request
from starlette.routing import Route

from rotator.devkit.sandbox.asgi import adobe_endpoint, path_param
from rotator.devkit.sandbox.model import Reply
from rotator.devkit.sandbox.state import SandboxState

__all__ = ["SECRETS_ROUTES"]


def _list(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.list_secrets(
        path_param(request, "org_id"),
        path_param(request, "credential_id"),
        request.headers.get("x-api-key"),
        request.headers.get("authorization"),
    )


def _add(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.add_secret(
        path_param(request, "org_id"),
        path_param(request, "credential_id"),
        request.headers.get("x-api-key"),
        request.headers.get("authorization"),
    )


def _delete(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.delete_secret(
        path_param(request, "org_id"),
        path_param(request, "credential_id"),
        path_param(request, "uuid"),
        request.headers.get("x-api-key"),
        request.headers.get("authorization"),
    )


_SECRETS: Final = "/console/organizations/{org_id}/credentials/{credential_id}/secrets"

SECRETS_ROUTES: Final = [
    Route(_SECRETS, adobe_endpoint("list_secrets", _list), methods=["GET"]),
    Route(_SECRETS, adobe_endpoint("add_secret", _add), methods=["POST"]),
    Route(_SECRETS + "/{uuid}", adobe_endpoint("delete_secret", _delete), methods=["DELETE"]),
]
