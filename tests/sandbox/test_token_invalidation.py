"""revoke, invalidate_token/v2 and logout each really end a token's life."""

from __future__ import annotations

import pytest

from rotator.devkit.sandbox import SandboxAdmin

from .conftest import Adobe

INVALID_SECRET = {"error": "invalid_client", "error_description": "invalid client_secret parameter"}


def test_revoke_with_basic_auth_ends_the_token(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()
    response = adobe.http.post(
        "/ims/revoke", data={"token": token}, auth=(adobe.cred.client_id, adobe.secret)
    )
    assert (response.status_code, response.content) == (200, b"")
    assert admin.introspect(token)["status"] == "revoked"
    assert adobe.list_secrets(token).json() == {
        "error_code": "401013",
        "message": "Oauth token is not valid",
    }


def test_revoke_with_a_wrong_secret_is_invalid_client(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()
    response = adobe.http.post(
        "/ims/revoke", data={"token": token}, auth=(adobe.cred.client_id, "x")
    )
    assert (response.status_code, response.json()) == (400, INVALID_SECRET)
    assert admin.introspect(token)["status"] == "active"


def test_revoke_of_an_unknown_token_succeeds_as_rfc_7009_says(adobe: Adobe) -> None:
    auth = (adobe.cred.client_id, adobe.secret)
    assert adobe.http.post("/ims/revoke", data={"token": "nope"}, auth=auth).status_code == 200
    response = adobe.http.post("/ims/revoke", data={}, auth=auth)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


def test_a_client_cannot_revoke_another_clients_token(adobe: Adobe, admin: SandboxAdmin) -> None:
    other = admin.create_credential()
    assert other.secret is not None
    token = adobe.token()
    response = adobe.http.post(
        "/ims/revoke", data={"token": token}, auth=(other.client_id, other.secret.client_secret)
    )
    assert response.status_code == 400
    assert admin.introspect(token)["status"] == "active"


def test_invalidate_token_v2_ends_the_token(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()
    form = {
        "token_type": "access_token",
        "token": token,
        "cascading": "all",
        "client_id": adobe.cred.client_id,
        "client_secret": adobe.secret,
    }
    assert adobe.http.post("/ims/invalidate_token/v2", data=form).status_code == 200
    assert admin.introspect(token)["status"] == "revoked"
    assert adobe.list_secrets(token).status_code == 401


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"token_type": "id_token"}, "invalid_request"),
        ({"token": ""}, "invalid_request"),
    ],
)
def test_invalidate_token_v2_refuses_bad_requests(
    adobe: Adobe, admin: SandboxAdmin, change: dict[str, str], error: str
) -> None:
    token = adobe.token()
    form = {
        "token_type": "access_token",
        "token": token,
        "client_id": adobe.cred.client_id,
        "client_secret": adobe.secret,
        **change,
    }
    response = adobe.http.post("/ims/invalidate_token/v2", data=form)
    assert (response.status_code, response.json()["error"]) == (400, error)
    assert admin.introspect(token)["status"] == "active"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_logout_v1_ends_the_token(adobe: Adobe, admin: SandboxAdmin, method: str) -> None:
    token = adobe.token()
    params = {"access_token": token, "client_id": adobe.cred.client_id}
    response = adobe.http.request(method, "/ims/logout/v1/token", params=params)
    assert (response.status_code, response.json()) == (200, {})
    assert admin.introspect(token)["status"] == "revoked"
    assert adobe.list_secrets(token).status_code == 401


def test_logout_v1_needs_both_parameters_and_a_known_client(adobe: Adobe) -> None:
    token = adobe.token()
    missing = adobe.http.get("/ims/logout/v1/token", params={"access_token": token})
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    unknown = adobe.http.get(
        "/ims/logout/v1/token", params={"access_token": token, "client_id": "unknown"}
    )
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_client"


def test_emergency_flow_revokes_tokens_of_a_deleted_secret_with_the_new_one(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    leaked_token = adobe.token()
    new = admin.add_secret(adobe.cred.credential_id)
    assert adobe.cred.secret is not None
    admin.delete_secret(adobe.cred.credential_id, adobe.cred.secret.uuid)
    # Deleting a secret does not end its tokens (Adobe's FAQ): that takes an explicit call.
    assert adobe.list_secrets(leaked_token).status_code == 200
    response = adobe.http.post(
        "/ims/revoke",
        data={"token": leaked_token},
        auth=(adobe.cred.client_id, new.client_secret),
    )
    assert response.status_code == 200
    assert adobe.list_secrets(leaked_token).status_code == 401
