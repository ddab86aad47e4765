"""Injected faults: errors, rates, dropped connections, latency and Adobe's lags."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from rotator.devkit.sandbox import SandboxAdmin, SandboxAdminError

from .conftest import Adobe


def test_fail_next_n_fails_exactly_n_calls(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()
    admin.fail_next("list_secrets", 2, status=503)
    statuses = [adobe.list_secrets(token).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert adobe.list_secrets(token).status_code == 200


def test_api_faults_are_gateway_shaped_and_ims_faults_oauth_shaped(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    token = adobe.token()
    admin.fail_next("add_secret", status=500)
    admin.fail_next("token", status=502)
    api = adobe.add_secret(token)
    assert api.status_code == 500
    assert api.json() == {"error_code": "500050", "message": "Internal Server Error"}
    ims = adobe.token_response()
    assert (ims.status_code, ims.json()["error"]) == (502, "server_error")


def test_429_carries_retry_after(adobe: Adobe, admin: SandboxAdmin) -> None:
    admin.fail_next("token", status=429, retry_after_s=2.5)
    response = adobe.token_response()
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"] == "too_many_requests"


def test_a_before_fault_has_no_effect_and_an_after_fault_has(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    token = adobe.token()
    admin.fail_next("add_secret", status=503)
    assert adobe.add_secret(token).status_code == 503
    assert len(admin.secrets(adobe.cred.credential_id)) == 1
    admin.fail_next("add_secret", status=503, phase="after")
    assert adobe.add_secret(token).status_code == 503
    assert len(admin.secrets(adobe.cred.credential_id)) == 2  # created, answer lost


def test_a_dropped_connection_before_the_effect_changes_nothing(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    token = adobe.token()
    admin.drop_next("add_secret")
    with pytest.raises(httpx.RemoteProtocolError):
        adobe.add_secret(token)
    assert len(admin.secrets(adobe.cred.credential_id)) == 1
    assert admin.counters()["endpoints"]["add_secret"]["responses"] == {"dropped": 1}
    assert adobe.add_secret(token).status_code == 201  # the server is fine afterwards


def test_a_dropped_connection_after_the_effect_leaves_an_orphan(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    token = adobe.token()
    admin.drop_next("add_secret", phase="after")
    with pytest.raises(httpx.RemoteProtocolError):
        adobe.add_secret(token)
    assert len(admin.secrets(adobe.cred.credential_id)) == 2


def test_a_seeded_rate_repeats_exactly(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()
    runs = []
    for _ in range(2):
        rule = admin.add_fault("list_secrets", status=503, rate=0.5, seed=7)
        runs.append([adobe.list_secrets(token).status_code for _ in range(20)])
        admin.remove_fault(rule)
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 503}


def test_a_fault_can_target_one_client(
    adobe: Adobe, admin: SandboxAdmin, http: httpx.Client
) -> None:
    other = Adobe(http, admin.create_credential())
    admin.add_fault("token", status=503, client_id=other.cred.client_id)
    assert adobe.token_response().status_code == 200
    assert other.token_response().status_code == 503
    assert other.token_response().status_code == 503  # no count: until removed
    admin.clear_faults()
    assert other.token_response().status_code == 200


def test_a_fault_on_every_endpoint(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()
    admin.fail_next("*", 2, status=504)
    assert adobe.token_response().status_code == 504
    assert adobe.list_secrets(token).status_code == 504
    assert adobe.list_secrets(token).status_code == 200


@pytest.mark.parametrize(
    "fault",
    [
        {"endpoint": "nope"},
        {"endpoint": "token", "status": 404},
        {"endpoint": "token", "rate": 1.5},
        {"endpoint": "token", "count": 0},
    ],
)
def test_impossible_faults_are_refused(admin: SandboxAdmin, fault: dict[str, object]) -> None:
    with pytest.raises(SandboxAdminError) as caught:
        admin.add_fault(**fault)  # type: ignore[arg-type]
    assert caught.value.status == 422


def test_latency_is_added_per_endpoint_and_globally(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()
    admin.set_latency("list_secrets", ms=150)
    started = time.perf_counter()
    adobe.list_secrets(token)
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    adobe.token_response()
    assert time.perf_counter() - started < 0.1
    admin.set_latency("*", ms=100)
    started = time.perf_counter()
    adobe.list_secrets(token)
    assert time.perf_counter() - started >= 0.25
    admin.set_latency("*", ms=0)
    admin.set_latency("list_secrets", ms=0)
    assert admin.faults()["latency"] == {}


def test_latency_does_not_block_other_requests(adobe: Adobe, admin: SandboxAdmin) -> None:
    token = adobe.token()
    admin.set_latency("list_secrets", ms=300)
    admin.reset_counters()
    with ThreadPoolExecutor(max_workers=30) as pool:
        started = time.perf_counter()
        statuses = list(pool.map(lambda _: adobe.list_secrets(token).status_code, range(30)))
        elapsed = time.perf_counter() - started
    assert statuses == [200] * 30
    assert elapsed < 1.5, "sleeps must overlap"
    assert admin.counters()["max_in_flight"] >= 20


def test_uses_show_in_last_used_at_only_after_the_lag(adobe: Adobe, admin: SandboxAdmin) -> None:
    admin.set_timing(usage_lag_ms=60_000)
    token = adobe.token()
    [entry] = adobe.entries(token)
    assert entry["secret_usages"] is None
    admin.advance_clock(61)
    [entry] = adobe.entries(token)
    assert entry["secret_usages"][0]["grant_type"] == "client_credentials"


def test_a_new_secret_is_refused_until_accepted(adobe: Adobe, admin: SandboxAdmin) -> None:
    admin.set_timing(accept_delay_ms=30_000)
    added = adobe.add_secret().json()
    refused = adobe.token_response(secret=added["client_secret"])
    assert (refused.status_code, refused.json()["error_description"]) == (
        400,
        "invalid client_secret parameter",
    )
    assert admin.consume(adobe.cred.credential_id, added["uuid"]).status_code == 400
    admin.advance_clock(30)
    assert adobe.token_response(secret=added["client_secret"]).status_code == 200
