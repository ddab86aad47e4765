"""POST /ims/token/v3: client credentials, as Adobe IMS answers them."""

from __future__ import annotations

import httpx
import pytest

from rotator.devkit.sandbox import CreatedCredential, SandboxAdmin

from .conftest import Adobe

INVALID_SECRET = {"error": "invalid_client", "error_description": "invalid client_secret parameter"}
INVALID_ID = {"error": "invalid_client", "error_description": "invalid client_id parameter"}


def test_a_form_post_mints_a_bearer_token_for_a_day(adobe: Adobe) -> None:
    response = adobe.token_response()
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86399
    assert response.headers["content-type"] == "application/json"


def test_http_basic_client_authentication_is_accepted(
    http: httpx.Client, cred: CreatedCredential
) -> None:
    assert cred.secret is not None
    response = http.post(
        "/ims/token/v3",
        data={"grant_type": "client_credentials", "scope": "openid"},
        auth=(cred.client_id, cred.secret.client_secret),
    )
    assert response.status_code == 200, response.text


def test_basic_auth_naming_another_client_than_the_form_is_refused(
    http: httpx.Client, cred: CreatedCredential
) -> None:
    assert cred.secret is not None
    response = http.post(
        "/ims/token/v3",
        data={"grant_type": "client_credentials", "client_id": "someone-else"},
        auth=(cred.client_id, cred.secret.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_a_wrong_secret_is_invalid_client_exactly_as_adobe_says(adobe: Adobe) -> None:
    response = adobe.token_response(secret="p8e-wrong")
    assert response.status_code == 400
    assert response.json() == INVALID_SECRET


def test_a_wrong_basic_secret_is_invalid_client_too(
    http: httpx.Client, cred: CreatedCredential
) -> None:
    response = http.post(
        "/ims/token/v3", data={"grant_type": "client_credentials"}, auth=(cred.client_id, "no")
    )
    assert (response.status_code, response.json()) == (400, INVALID_SECRET)


@pytest.mark.parametrize("client_id", ["0123456789abcdef0123456789abcdef", ""])
def test_an_unknown_client_id_is_invalid_client(http: httpx.Client, client_id: str) -> None:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"}
    response = http.post("/ims/token/v3", data=form)
    assert (response.status_code, response.json()) == (400, INVALID_ID)


@pytest.mark.parametrize("grant_type", ["password", ""])
def test_other_grant_types_are_unsupported(adobe: Adobe, grant_type: str) -> None:
    response = adobe.token_response(grant_type=grant_type)
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_a_scope_the_credential_lacks_is_invalid_scope(adobe: Adobe) -> None:
    response = adobe.token_response(scope="openid,creative_sdk")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_a_secret_in_the_query_string_is_refused(adobe: Adobe) -> None:
    response = adobe.http.post(
        "/ims/token/v3",
        params={"client_secret": adobe.secret},
        data={"grant_type": "client_credentials", "client_id": adobe.cred.client_id},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_minting_moves_the_secrets_last_used_at(adobe: Adobe, admin: SandboxAdmin) -> None:
    before = admin.now_ms()
    adobe.token()
    [secret] = admin.secrets(adobe.cred.credential_id)
    assert secret["last_used_at"] is not None and secret["last_used_at"] >= before
    assert secret["usages"] == {"client_credentials": secret["last_used_at"]}


def test_both_secrets_mint_during_a_rotation_and_a_deleted_one_stops(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    new = admin.add_secret(adobe.cred.credential_id)
    adobe.token()
    adobe.token(secret=new.client_secret)
    assert adobe.cred.secret is not None
    admin.delete_secret(adobe.cred.credential_id, adobe.cred.secret.uuid)
    assert adobe.token_response().json() == INVALID_SECRET
    adobe.token(secret=new.client_secret)


def test_the_token_lifetime_is_a_setting(adobe: Adobe, admin: SandboxAdmin) -> None:
    admin.configure(token_lifetime_s=5)
    token_response = adobe.token_response()
    assert token_response.json()["expires_in"] == 5
    token = token_response.json()["access_token"]
    assert adobe.list_secrets(token).status_code == 200
    admin.advance_clock(6)
    assert adobe.list_secrets(token).status_code == 401
    assert admin.introspect(token)["status"] == "expired"
