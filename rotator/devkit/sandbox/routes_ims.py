"""IMS's routes: tokens (client credentials, JWT exchange), revoke, invalidate, logout."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from starlette.requests import Request
from starlette.routing import Route

from rotator.devkit.sandbox.asgi import adobe_endpoint, basic_auth
from rotator.devkit.sandbox.model import PRODUCTION_IMS, Reply, ims_error
from rotator.devkit.sandbox.state import SandboxState

__all__ = ["IMS_ROUTES"]


def _token(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    if "client_secret" in request.query_params:
        # Adobe asks for the body because query strings end up in logs; be strict about it.
        return ims_error("invalid_request", "client_secret must be sent in the request body")
    return state.mint_client_credentials(form, basic_auth(request))


def _jwt(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.exchange_jwt(form, (str(request.base_url).rstrip("/"), PRODUCTION_IMS))


def _revoke(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.revoke(form, basic_auth(request))


def _invalidate(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.invalidate_token(form, basic_auth(request))


def _logout(state: SandboxState, request: Request, form: Mapping[str, str]) -> Reply:
    return state.logout({**form, **request.query_params})


IMS_ROUTES: Final = [
    Route("/ims/token/v3", adobe_endpoint("token", _token), methods=["POST"]),
    Route("/ims/exchange/jwt", adobe_endpoint("jwt_exchange", _jwt), methods=["POST"]),
    Route("/ims/revoke", adobe_endpoint("revoke", _revoke), methods=["POST"]),
    Route("/ims/invalidate_token/v2", adobe_endpoint("invalidate", _invalidate), methods=["POST"]),
    Route("/ims/logout/v1/token", adobe_endpoint("logout", _logout), methods=["GET", "POST"]),
]
