"""The I/O Management API's client-secret calls: shapes, limits and status codes."""

from __future__ import annotations

import re

import httpx
import pytest

from rotator.devkit.sandbox import SandboxAdmin

from .conftest import Adobe

ADOBE_TIME = re.compile(r"^\w{3}, \w{3} \d{2} \d{4} \d{2}:\d{2}:\d{2}\.\d{3} UTC$")


def test_list_has_adobes_shape_with_millisecond_strings(adobe: Adobe, admin: SandboxAdmin) -> None:
    unused = admin.add_secret(adobe.cred.credential_id)
    response = adobe.list_secrets()
    assert response.status_code == 200
    body = response.json()
    assert body["client_id"] == adobe.cred.client_id
    used, fresh = body["client_secrets"]
    assert fresh["uuid"] == unused.uuid
    for entry in (used, fresh):
        assert set(entry) == {
            "uuid",
            "created_at",
            "created_at_str",
            "expires_at",
            "expires_at_str",
            "secret_usages",
        }
        assert isinstance(entry["created_at"], str) and entry["created_at"].isdigit()
        assert len(entry["created_at"]) == 13
        assert ADOBE_TIME.match(entry["created_at_str"])
        assert entry["expires_at"] == entry["expires_at_str"] == "PERMANENT"
    assert fresh["secret_usages"] is None
    [usage] = used["secret_usages"]
    assert usage["grant_type"] == "client_credentials"
    assert isinstance(usage["last_used_at"], str) and usage["last_used_at"].isdigit()


def test_list_never_shows_a_secret_value(adobe: Adobe, admin: SandboxAdmin) -> None:
    admin.add_secret(adobe.cred.credential_id)
    text = adobe.list_secrets().text
    for value in admin.secret_values():
        assert value not in text


def test_secrets_are_listed_oldest_first(adobe: Adobe, admin: SandboxAdmin) -> None:
    first = adobe.entries()[0]["uuid"]
    admin.advance_clock(1)
    second = adobe.add_secret().json()["uuid"]
    assert [e["uuid"] for e in adobe.entries()] == [first, second]


def test_add_returns_the_plaintext_once_with_201(adobe: Adobe, admin: SandboxAdmin) -> None:
    response = adobe.add_secret()
    assert response.status_code == 201
    body = response.json()
    assert body["client_secret"].startswith("p8e-")
    assert admin.reveal_secrets(adobe.cred.credential_id)[body["uuid"]] == body["client_secret"]
    assert body["secret_usages"] is None and body["expires_at"] == "PERMANENT"
    listed = {e["uuid"]: e for e in adobe.entries()}
    assert "client_secret" not in listed[body["uuid"]]
    assert listed[body["uuid"]] == {k: v for k, v in body.items() if k != "client_secret"}
    # the new secret works at IMS at once (no accept delay unless a test asks for one)
    adobe.token(secret=body["client_secret"])


@pytest.mark.parametrize("status", [200, 201, 202])
def test_the_add_status_is_a_setting(adobe: Adobe, admin: SandboxAdmin, status: int) -> None:
    admin.configure(add_status=status)
    response = adobe.add_secret()
    assert response.status_code == status
    assert "client_secret" in response.json()


@pytest.mark.parametrize("status", [200, 204])
def test_the_delete_status_is_a_setting(adobe: Adobe, admin: SandboxAdmin, status: int) -> None:
    admin.configure(delete_status=status)
    new_uuid = adobe.add_secret().json()["uuid"]
    response = adobe.delete_secret(new_uuid)
    assert (response.status_code, response.content) == (status, b"")
    assert new_uuid not in [e["uuid"] for e in adobe.entries()]


def test_a_third_secret_is_refused_with_a_gateway_shaped_4xx(adobe: Adobe) -> None:
    assert adobe.add_secret().status_code == 201
    response = adobe.add_secret()
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error_code", "message"} and body["error_code"] == "400003"
    assert len(adobe.entries()) == 2


def test_the_limit_status_is_a_setting(adobe: Adobe, admin: SandboxAdmin) -> None:
    admin.configure(secret_limit_status=409)
    adobe.add_secret()
    assert adobe.add_secret().status_code == 409


def test_deleting_an_unknown_uuid_is_404(adobe: Adobe) -> None:
    response = adobe.delete_secret("0" * 32)
    assert (response.status_code, response.json()) == (
        404,
        {"error_code": "404002", "message": "Client Secret Not Found"},
    )


def test_an_unknown_credential_is_404(adobe: Adobe, http: httpx.Client) -> None:
    path = f"/console/organizations/{adobe.cred.org_id}/credentials/999999/secrets"
    response = http.get(path, headers=adobe.headers())
    assert (response.status_code, response.json()) == (
        404,
        {"error_code": "404001", "message": "Credential Not Found"},
    )


def test_a_credential_under_the_wrong_org_is_404(adobe: Adobe, http: httpx.Client) -> None:
    path = f"/console/organizations/1/credentials/{adobe.cred.credential_id}/secrets"
    assert http.get(path, headers=adobe.headers()).status_code == 404


def test_deleting_a_secret_leaves_its_tokens_alive(adobe: Adobe) -> None:
    token = adobe.token()
    new_value = adobe.add_secret(token).json()["client_secret"]
    assert adobe.cred.secret is not None
    assert adobe.delete_secret(adobe.cred.secret.uuid, token).status_code == 204
    assert adobe.list_secrets(token).status_code == 200
    adobe.token(secret=new_value)


def test_the_last_secret_may_be_deleted_unless_configured_otherwise(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    assert adobe.cred.secret is not None
    token = adobe.token()
    admin.configure(allow_delete_last_secret=False)
    refused = adobe.delete_secret(adobe.cred.secret.uuid, token)
    assert refused.status_code == 400 and refused.json()["error_code"] == "400004"
    admin.configure(allow_delete_last_secret=True)
    assert adobe.delete_secret(adobe.cred.secret.uuid, token).status_code == 204
    assert adobe.entries(token) == []


def test_unknown_paths_and_methods_answer_gateway_shaped_json(http: httpx.Client) -> None:
    missing = http.get("/console/organizations/1/nothing")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error_code": "404000", "message": "Not Found"},
    )
    wrong = http.put("/ims/token/v3")
    assert wrong.status_code == 405 and wrong.json()["error_code"] == "405000"
    assert "POST" in wrong.headers["allow"]
    assert http.get("/sandbox/nothing").json() == {"detail": "Not Found"}
