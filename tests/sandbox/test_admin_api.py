"""The /sandbox admin API: building worlds, reading them, and bending their clock."""

from __future__ import annotations

import json

import httpx
import pytest

from rotator.devkit.sandbox import SandboxAdmin, SandboxAdminError, SandboxServer

from .conftest import Adobe


def test_a_created_credential_works_at_once(admin: SandboxAdmin, http: httpx.Client) -> None:
    cred = admin.create_credential(name="demo")
    assert cred.org_id.isdigit() and cred.credential_id.isdigit()
    assert cred.ims_org_id.endswith("@AdobeOrg")
    assert len(cred.client_id) == 32
    assert cred.secret is not None and len(cred.secret.uuid) == 32
    assert "p8e-" not in repr(cred)  # values stay out of test output
    adobe = Adobe(http, cred)
    assert [e["uuid"] for e in adobe.entries()] == [cred.secret.uuid]
    assert admin.credential(cred.credential_id)["name"] == "demo"


def test_credentials_can_share_an_org_and_come_in_bulk(admin: SandboxAdmin) -> None:
    org_id = admin.create_org()
    one = admin.create_credential(org_id=org_id)
    many = admin.create_credentials(50, org_id=org_id)
    assert {c.org_id for c in many} == {org_id} == {one.org_id}
    assert len({c.client_id for c in many}) == 50
    [org] = admin.state()["orgs"]
    assert len(org["credentials"]) == 51


def test_a_credential_without_a_secret(admin: SandboxAdmin) -> None:
    cred = admin.create_credential(with_secret=False)
    assert cred.secret is None and admin.secrets(cred.credential_id) == []


def test_state_shows_no_values_and_reveal_does(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()
    new = admin.add_secret(adobe.cred.credential_id)
    state_text = json.dumps(admin.state())
    tokens_text = json.dumps(admin.tokens())
    for value in [adobe.secret, new.client_secret, token]:
        assert value not in state_text and value not in tokens_text
    assert adobe.cred.secret is not None
    assert admin.reveal_secrets(adobe.cred.credential_id) == {
        adobe.cred.secret.uuid: adobe.secret,
        new.uuid: new.client_secret,
    }
    assert admin.tokens(adobe.cred.client_id)[0]["secret_uuid"] == adobe.cred.secret.uuid


def test_leak_needles_include_deleted_secrets_and_all_tokens(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    token = adobe.token()
    assert adobe.cred.secret is not None
    admin.add_secret(adobe.cred.credential_id)
    admin.delete_secret(adobe.cred.credential_id, adobe.cred.secret.uuid)
    assert adobe.secret in admin.secret_values()
    assert token in admin.token_values()


def test_consume_moves_last_used_at(adobe: Adobe, admin: SandboxAdmin) -> None:
    assert adobe.cred.secret is not None
    uuid = adobe.cred.secret.uuid
    assert admin.secrets(adobe.cred.credential_id)[0]["last_used_at"] is None
    admin.advance_clock(5)
    response = admin.consume(adobe.cred.credential_id, uuid)
    assert response.status_code == 200 and response.json()["token_type"] == "bearer"
    assert admin.secrets(adobe.cred.credential_id)[0]["last_used_at"] >= admin.now_ms() - 1000


def test_a_secret_can_be_made_to_look_used_long_ago(adobe: Adobe, admin: SandboxAdmin) -> None:
    assert adobe.cred.secret is not None
    uuid = adobe.cred.secret.uuid
    token = adobe.token()
    now = admin.now_ms()
    admin.set_secret_times(
        adobe.cred.credential_id, uuid, last_used_ago_s=30 * 3600, created_ago_s=40 * 24 * 3600
    )
    [entry] = adobe.entries(token)
    # listing minted nothing new: the token was minted before
    assert abs(int(entry["secret_usages"][0]["last_used_at"]) - (now - 30 * 3600 * 1000)) < 1000
    assert abs(int(entry["created_at"]) - (now - 40 * 86400 * 1000)) < 1000
    admin.set_secret_times(adobe.cred.credential_id, uuid, last_used_at=1_683_162_010_101)
    assert adobe.entries(token)[0]["secret_usages"][0]["last_used_at"] == "1683162010101"
    admin.set_secret_times(adobe.cred.credential_id, uuid, never_used=True)
    assert adobe.entries(token)[0]["secret_usages"] is None


def test_the_clock_offset_moves_sandbox_time(admin: SandboxAdmin) -> None:
    before = admin.now_ms()
    admin.set_clock_offset(3600)
    assert admin.clock()["offset_s"] == 3600
    cred = admin.create_credential()
    created = admin.secrets(cred.credential_id)[0]["created_at"]
    assert created >= before + 3600 * 1000
    admin.advance_clock(60)
    assert admin.clock()["offset_s"] == 3660


def test_reset_forgets_everything(adobe: Adobe, admin: SandboxAdmin) -> None:
    adobe.token()
    admin.configure(add_status=200)
    admin.fail_next("token")
    admin.arm_hold("add_secret")
    admin.set_clock_offset(10)
    admin.reset()
    state = admin.state()
    assert state["credentials"] == [] and state["orgs"] == []
    assert state["settings"]["add_status"] == 201
    assert state["clock_offset_s"] == 0
    assert admin.faults()["rules"] == [] and admin.holds() == []
    assert admin.count("token") == 0


def test_the_per_test_fixture_starts_from_a_clean_world(sandbox: SandboxServer) -> None:
    assert sandbox.state.snapshot()["credentials"] == []
    assert sandbox.admin.health()["ok"] is True


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (lambda a: a.configure(add_status=204), 422),
        (lambda a: a.set_add_status(204), 422),
        (lambda a: a.regress_usages("stale"), 422),
        (lambda a: a.omit_secret(count=0), 422),
        (lambda a: a.remove_fault("omission-nope"), 404),
        (lambda a: a.configure(unknown=1), 422),
        (lambda a: a.credential("424242"), 404),
        (lambda a: a.delete_secret("424242", "x"), 404),
        (lambda a: a.release("hold-nope"), 404),
        (lambda a: a.remove_fault("fault-nope"), 404),
        (lambda a: a.save(), 404),
    ],
)
def test_admin_mistakes_are_reported(admin: SandboxAdmin, call: object, status: int) -> None:
    with pytest.raises(SandboxAdminError) as caught:
        call(admin)  # type: ignore[operator]
    assert caught.value.status == status


def test_the_admin_cannot_exceed_the_secret_limit(adobe: Adobe, admin: SandboxAdmin) -> None:
    admin.add_secret(adobe.cred.credential_id)
    with pytest.raises(SandboxAdminError) as caught:
        admin.add_secret(adobe.cred.credential_id)
    assert caught.value.status == 409


def test_bad_admin_json_is_422(http: httpx.Client) -> None:
    response = http.post(
        "/sandbox/credentials", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    response = http.post("/sandbox/credentials", json={"surprise": True})
    assert response.status_code == 422
