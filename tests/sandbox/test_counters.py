"""Per-endpoint request counters, for tests and benchmarks."""

from __future__ import annotations

from rotator.devkit.sandbox import ENDPOINTS, SandboxAdmin

from .conftest import Adobe


def test_every_adobe_endpoint_is_counted_with_its_statuses(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    token = adobe.token()
    adobe.token_response(secret="wrong")
    adobe.list_secrets(token)
    adobe.add_secret(token)
    adobe.add_secret(token)  # over the limit
    adobe.delete_secret("0" * 32, token)
    adobe.http.get("/ims/logout/v1/token", params={"access_token": token, "client_id": "x"})
    endpoints = admin.counters()["endpoints"]
    assert set(endpoints) == set(ENDPOINTS)
    assert endpoints["token"] == {"requests": 2, "responses": {"200": 1, "400": 1}, "faults": 0}
    assert endpoints["list_secrets"]["responses"] == {"200": 1}
    assert endpoints["add_secret"]["responses"] == {"201": 1, "400": 1}
    assert endpoints["delete_secret"]["responses"] == {"404": 1}
    assert endpoints["logout"]["requests"] == 1
    assert endpoints["revoke"]["requests"] == 0
    assert admin.count("token") == 2


def test_admin_calls_are_not_counted_and_faults_are(adobe: Adobe, admin: SandboxAdmin) -> None:
    admin.state()
    admin.consume(adobe.cred.credential_id, admin.secrets(adobe.cred.credential_id)[0]["uuid"])
    assert admin.count("token") == 0
    admin.fail_next("token")
    adobe.token_response()
    assert admin.counters()["endpoints"]["token"] == {
        "requests": 1,
        "responses": {"503": 1},
        "faults": 1,
    }


def test_counters_reset_on_request(adobe: Adobe, admin: SandboxAdmin) -> None:
    adobe.token()
    admin.reset_counters()
    counters = admin.counters()
    assert all(c["requests"] == 0 for c in counters["endpoints"].values())
    assert counters["in_flight"] == 0 and counters["max_in_flight"] == 0
