"""The model on its own, with a hand-driven clock: no server, no sleeping."""

from __future__ import annotations

import pytest

from rotator.devkit.sandbox.state import (
    CLIENT_CREDENTIALS,
    Reply,
    SandboxState,
    Settings,
    format_ms,
)

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> SandboxState:
    return SandboxState(clock=clock)


def mint(state: SandboxState, client_id: str, secret: str, scope: str = "") -> Reply:
    form = {"grant_type": CLIENT_CREDENTIALS, "client_id": client_id, "client_secret": secret}
    return state.mint_client_credentials({**form, "scope": scope})


def test_adobe_timestamp_rendering_matches_the_documented_example() -> None:
    assert format_ms(1682448485000) == "Tue, Apr 25 2023 18:48:05.000 UTC"
    assert format_ms(1682448485123).endswith("05.123 UTC")


def test_a_use_becomes_visible_only_after_the_lag(state: SandboxState, clock: Clock) -> None:
    credential, secret = state.create_credential()
    assert secret is not None
    state.faults.set_timing(usage_lag_ms=60_000)
    assert mint(state, credential.client_id, secret.value).status == 200
    view = state.credential_view(credential.credential_id)
    assert view["secrets"][0]["last_used_at"] is None
    assert view["secrets"][0]["pending_uses"] == 1
    clock.now += 61
    view = state.credential_view(credential.credential_id)
    assert view["secrets"][0]["last_used_at"] == int(T0 * 1000)


def test_a_new_api_secret_is_refused_until_the_accept_delay_passes(
    state: SandboxState, clock: Clock
) -> None:
    credential, first = state.create_credential()
    assert first is not None
    token = mint(state, credential.client_id, first.value, "manage_client_secrets")
    bearer = f"Bearer {token.body['access_token']}"  # type: ignore[index]
    state.faults.set_timing(accept_delay_ms=5_000)
    added = state.add_secret(
        credential.org_id, credential.credential_id, credential.client_id, bearer
    )
    assert added.status == 201
    new_value = added.body["client_secret"]  # type: ignore[index]
    assert mint(state, credential.client_id, new_value).body == {
        "error": "invalid_client",
        "error_description": "invalid client_secret parameter",
    }
    clock.now += 5
    assert mint(state, credential.client_id, new_value).status == 200


def test_tokens_expire_on_the_sandbox_clock(state: SandboxState, clock: Clock) -> None:
    state.configure(token_lifetime_s=10)
    credential, secret = state.create_credential()
    assert secret is not None
    reply = mint(state, credential.client_id, secret.value, "read_client_secret")
    assert reply.body is not None and reply.body["expires_in"] == 10
    bearer = f"Bearer {reply.body['access_token']}"
    args = (credential.org_id, credential.credential_id, credential.client_id, bearer)
    assert state.list_secrets(*args).status == 200
    clock.now += 10
    assert state.list_secrets(*args).status == 401


def test_the_secret_limit_holds_for_admin_and_api(state: SandboxState) -> None:
    credential, _ = state.create_credential()
    state.admin_add_secret(credential.credential_id)
    with pytest.raises(OverflowError):
        state.admin_add_secret(credential.credential_id)


def test_next_n_faults_fire_exactly_n_times(state: SandboxState) -> None:
    state.faults.add("token", count=2)
    fired = [state.faults.take("token", None, "before") is not None for _ in range(4)]
    assert fired == [True, True, False, False]
    assert state.faults.view()["rules"] == []


def test_seeded_fault_rates_repeat_exactly() -> None:
    runs = []
    for _ in range(2):
        state = SandboxState()
        state.faults.add("list_secrets", rate=0.3, seed=42)
        runs.append(
            [state.faults.take("list_secrets", None, "before") is not None for _ in range(200)]
        )
    assert runs[0] == runs[1]
    assert 30 < sum(runs[0]) < 90


def test_faults_match_endpoint_phase_and_client(state: SandboxState) -> None:
    state.faults.add("add_secret", phase="after", client_id="abc")
    assert state.faults.take("add_secret", "abc", "before") is None
    assert state.faults.take("add_secret", "other", "after") is None
    assert state.faults.take("list_secrets", "abc", "after") is None
    assert state.faults.take("add_secret", "abc", "after") is not None


def test_a_hold_catches_one_request_and_can_be_released(state: SandboxState) -> None:
    hold = state.faults.arm_hold("add_secret", "after")
    assert state.faults.catch_hold("add_secret", None, "before") is None
    assert state.faults.catch_hold("add_secret", None, "after") is hold
    assert hold.held_event.is_set() and hold.status == "held"
    assert state.faults.catch_hold("add_secret", None, "after") is None
    state.faults.release(hold.id)
    assert hold.released_event.is_set() and hold.view()["status"] == "released"


@pytest.mark.parametrize(
    "changes",
    [
        {"add_status": 204},
        {"add_status": "200"},
        {"delete_status": 201},
        {"token_lifetime_s": 0},
        {"allow_delete_last_secret": "no"},
        {"nope": 1},
    ],
)
def test_settings_refuse_what_adobe_could_not_answer(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Settings().replace(changes)


def test_the_world_survives_a_round_trip_through_its_document(
    state: SandboxState, clock: Clock
) -> None:
    credential, secret = state.create_credential()
    assert secret is not None
    reply = mint(state, credential.client_id, secret.value, "read_client_secret")
    assert reply.body is not None
    state.set_clock_offset(120)
    restored = SandboxState(clock=clock)
    restored.load_document(state.to_document())
    assert restored.snapshot()["credentials"] == state.snapshot()["credentials"]
    assert restored.reveal_secrets(credential.credential_id) == {secret.uuid: secret.value}
    bearer = f"Bearer {reply.body['access_token']}"
    args = (credential.org_id, credential.credential_id, credential.client_id, bearer)
    assert restored.list_secrets(*args).status == 200
    assert restored.create_credential()[0].credential_id != credential.credential_id


def test_latency_jitter_stays_in_bounds_and_repeats_with_a_seed() -> None:
    draws = []
    for _ in range(2):
        plan = SandboxState().faults
        plan.set_latency("*", 10, jitter_ms=5, seed=3)
        plan.set_latency("token", 20)
        draws.append([plan.latency_s("token") for _ in range(50)])
    assert draws[0] == draws[1]
    assert all(0.030 <= d <= 0.035 for d in draws[0])
    assert len(set(draws[0])) > 1
