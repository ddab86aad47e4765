"""SandboxServer: a real server in a thread, on a free port, that always stops."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from rotator.devkit.sandbox import SandboxServer
from rotator.devkit.sandbox.testing import running_sandbox


def test_servers_get_their_own_free_ports_and_stop_cleanly() -> None:
    with SandboxServer() as one, SandboxServer() as two:
        assert one.port != two.port
        assert one.url == f"http://127.0.0.1:{one.port}"
        assert httpx.get(one.url + "/sandbox/health").json()["ok"] is True
        assert two.admin.health()["ok"] is True
        with pytest.raises(RuntimeError):
            one.start()
    with pytest.raises(httpx.ConnectError):
        httpx.get(one.url + "/sandbox/health")


def test_settings_given_at_start_are_the_defaults_reset_returns_to() -> None:
    with running_sandbox(add_status=200, token_lifetime_s=60) as server:
        server.admin.configure(add_status=201)
        server.admin.reset()
        settings = server.admin.settings()
        assert (settings["add_status"], settings["token_lifetime_s"]) == (200, 60)


def test_responses_do_not_wait_on_delayed_acks(sandbox: SandboxServer) -> None:
    with httpx.Client(base_url=sandbox.url) as http:
        timings = []
        for _ in range(10):
            started = time.perf_counter()
            http.post("/sandbox/tokens/introspect", json={"token": "x"})
            timings.append(time.perf_counter() - started)
    # with Nagle on, each answer (headers, then body) waits ~40 ms for the client's ACK
    assert min(timings) < 0.02


def test_stopping_does_not_hang_on_a_held_request() -> None:
    server = SandboxServer().start()
    hold = server.admin.arm_hold("token", timeout_s=60)
    caller = threading.Thread(
        target=lambda: httpx.post(server.url + "/ims/token/v3", data={}, timeout=30)
    )
    caller.start()
    server.admin.wait_held(hold)
    started = time.perf_counter()
    server.stop()
    assert time.perf_counter() - started < 3
    caller.join(timeout=5)
    assert not caller.is_alive()
