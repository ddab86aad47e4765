"""The gateway's checks on every API call: api key, bearer token, its client and scopes."""

from __future__ import annotations

import httpx
import pytest

from rotator.devkit.sandbox import SandboxAdmin

from .conftest import Adobe

TOKEN_INVALID = {"error_code": "401013", "message": "Oauth token is not valid"}
KEY_INVALID = {"error_code": "403003", "message": "Api Key is invalid"}


def test_a_missing_api_key_is_403(adobe: Adobe, http: httpx.Client) -> None:
    headers = {"Authorization": f"Bearer {adobe.token()}"}
    response = http.get(adobe.secrets_path, headers=headers)
    assert (response.status_code, response.json()) == (
        403,
        {"error_code": "403000", "message": "Api Key is required"},
    )


def test_an_unknown_api_key_is_403003(adobe: Adobe, http: httpx.Client) -> None:
    response = http.get(adobe.secrets_path, headers=adobe.headers(api_key="f" * 32))
    assert (response.status_code, response.json()) == (403, KEY_INVALID)


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer nope", "Basic abc"])
def test_a_missing_or_unknown_token_is_401013(
    adobe: Adobe, http: httpx.Client, authorization: str | None
) -> None:
    headers = {"x-api-key": adobe.cred.client_id}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = http.get(adobe.secrets_path, headers=headers)
    assert (response.status_code, response.json()) == (401, TOKEN_INVALID)


def test_an_expired_token_is_401013(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()
    admin.advance_clock(86400)
    response = adobe.list_secrets(token)
    assert (response.status_code, response.json()) == (401, TOKEN_INVALID)


def test_a_revoked_token_is_401013(adobe: Adobe) -> None:
    token = adobe.token()
    adobe.http.post("/ims/revoke", data={"token": token}, auth=(adobe.cred.client_id, adobe.secret))
    assert adobe.add_secret(token).json() == TOKEN_INVALID


def test_a_token_of_another_client_does_not_match_the_api_key(
    adobe: Adobe, admin: SandboxAdmin, http: httpx.Client
) -> None:
    other = Adobe(http, admin.create_credential())
    response = http.get(adobe.secrets_path, headers=adobe.headers(token=other.token()))
    assert (response.status_code, response.json()) == (403, KEY_INVALID)


def test_a_credential_cannot_manage_another_credentials_secrets(
    adobe: Adobe, admin: SandboxAdmin, http: httpx.Client
) -> None:
    other = Adobe(http, admin.create_credential(org_id=adobe.cred.org_id))
    response = http.post(adobe.secrets_path, headers=other.headers())
    assert (response.status_code, response.json()) == (403, KEY_INVALID)
    assert len(adobe.entries()) == 1


def test_read_scope_lists_but_cannot_add_or_delete(adobe: Adobe) -> None:
    token = adobe.token(scope="openid,read_client_secret")
    assert adobe.list_secrets(token).status_code == 200
    added = adobe.add_secret(token)
    assert (added.status_code, added.json()["error_code"]) == (403, "403027")
    assert adobe.cred.secret is not None
    assert adobe.delete_secret(adobe.cred.secret.uuid, token).status_code == 403


def test_manage_scope_alone_cannot_list(adobe: Adobe) -> None:
    token = adobe.token(scope="manage_client_secrets")
    assert adobe.list_secrets(token).status_code == 403
    assert adobe.add_secret(token).status_code == 201


def test_a_token_minted_without_scopes_can_do_nothing(adobe: Adobe) -> None:
    response = adobe.http.post(
        "/ims/token/v3",
        data={
            "grant_type": "client_credentials",
            "client_id": adobe.cred.client_id,
            "client_secret": adobe.secret,
        },
    )
    token = response.json()["access_token"]
    assert adobe.list_secrets(token).status_code == 403


def test_a_credential_created_without_management_scopes_cannot_get_them(
    admin: SandboxAdmin, http: httpx.Client
) -> None:
    adobe = Adobe(http, admin.create_credential(scopes=["openid", "AdobeID"]))
    response = adobe.token_response(scope="openid,manage_client_secrets")
    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")
