"""Holding a request mid-flight, so a test can kill the client or lose the answer."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from rotator.devkit.sandbox import SandboxAdmin, SandboxServer

from .conftest import Adobe

CLIENT = """
import sys, httpx
url, token, api_key = sys.argv[1:]
httpx.post(url, headers={"Authorization": "Bearer " + token, "x-api-key": api_key}, timeout=30)
"""


@pytest.fixture
def background() -> Iterator[Callable[[Callable[[], httpx.Response]], Future[httpx.Response]]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield lambda call: pool.submit(call)


def test_a_hold_before_parks_the_request_until_released(
    adobe: Adobe, admin: SandboxAdmin, background: Callable[..., Future[httpx.Response]]
) -> None:
    token = adobe.token()
    hold = admin.arm_hold("add_secret", "before")
    pending = background(lambda: adobe.add_secret(token))
    assert admin.wait_held(hold)["status"] == "held"
    time.sleep(0.05)
    assert not pending.done()
    assert len(admin.secrets(adobe.cred.credential_id)) == 1  # not yet in effect
    admin.release(hold)
    assert pending.result(timeout=5).status_code == 201
    assert len(admin.secrets(adobe.cred.credential_id)) == 2


def test_a_hold_after_parks_the_answer_of_a_request_in_effect(
    adobe: Adobe, admin: SandboxAdmin, background: Callable[..., Future[httpx.Response]]
) -> None:
    token = adobe.token()
    hold = admin.arm_hold("add_secret", "after")
    pending = background(lambda: adobe.add_secret(token))
    admin.wait_held(hold)
    assert len(admin.secrets(adobe.cred.credential_id)) == 2  # already created
    assert not pending.done()
    assert admin.release(hold)["status"] == "released"
    assert pending.result(timeout=5).status_code == 201


def test_release_with_drop_loses_the_answer(
    adobe: Adobe, admin: SandboxAdmin, background: Callable[..., Future[httpx.Response]]
) -> None:
    token = adobe.token()
    hold = admin.arm_hold("add_secret", "after")
    pending = background(lambda: adobe.add_secret(token))
    admin.wait_held(hold)
    admin.release(hold, drop=True)
    with pytest.raises(httpx.RemoteProtocolError):
        pending.result(timeout=5)
    assert len(admin.secrets(adobe.cred.credential_id)) == 2


def test_a_held_request_goes_on_by_itself_after_its_timeout(
    adobe: Adobe, admin: SandboxAdmin
) -> None:
    hold = admin.arm_hold("token", timeout_s=0.2)
    started = time.perf_counter()
    assert adobe.token_response().status_code == 200
    assert time.perf_counter() - started >= 0.2
    assert admin.holds()[0]["status"] == "timed_out"
    assert admin.wait_held(hold, timeout_s=0)["status"] == "timed_out"


def test_waiting_for_a_hold_nobody_reaches_times_out(adobe: Adobe, admin: SandboxAdmin) -> None:
    hold = admin.arm_hold("delete_secret")
    adobe.token()
    with pytest.raises(TimeoutError):
        admin.wait_held(hold, timeout_s=0.05)
    admin.release(hold)  # disarms it
    assert admin.holds()[0]["status"] == "released"


def test_a_hold_can_wait_for_one_client(
    adobe: Adobe,
    admin: SandboxAdmin,
    http: httpx.Client,
    background: Callable[..., Future[httpx.Response]],
) -> None:
    other = Adobe(http, admin.create_credential())
    hold = admin.arm_hold("token", client_id=other.cred.client_id)
    assert adobe.token_response().status_code == 200  # not the one it waits for
    pending = background(other.token_response)
    assert admin.wait_held(hold)["client_id"] == other.cred.client_id
    admin.clear_holds()
    assert pending.result(timeout=5).status_code == 200


@pytest.mark.parametrize("phase", ["before", "after"])
def test_a_client_process_killed_mid_call_still_leaves_the_effect(
    adobe: Adobe, admin: SandboxAdmin, sandbox: SandboxServer, phase: str
) -> None:
    token = adobe.token()
    hold = admin.arm_hold("add_secret", phase)  # type: ignore[arg-type]
    client = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLIENT,
            sandbox.url + adobe.secrets_path,
            token,
            adobe.cred.client_id,
        ]
    )
    try:
        admin.wait_held(hold, timeout_s=10)
    finally:
        client.kill()
        client.wait(timeout=10)
    admin.release(hold)
    deadline = time.monotonic() + 5
    while len(admin.secrets(adobe.cred.credential_id)) < 2:  # Adobe got the whole request
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert adobe.list_secrets(token).status_code == 200


def test_reset_frees_held_requests_and_their_waiters(
    adobe: Adobe,
    admin: SandboxAdmin,
    sandbox: SandboxServer,
    background: Callable[..., Future[httpx.Response]],
) -> None:
    armed = admin.arm_hold("delete_secret")
    waiter = background(lambda: admin.wait_held(armed, timeout_s=10))
    hold = admin.arm_hold("token")
    pending = background(adobe.token_response)
    admin.wait_held(hold)
    time.sleep(0.1)  # let the waiter's call reach the server
    sandbox.state.reset()
    assert pending.result(timeout=5).status_code == 400  # the world it asked about is gone
    assert waiter.result(timeout=5)["status"] == "released"
