"""A forwarding HTTP proxy in front of moto's server, with holds and faults, for AWS calls.

The rotator talks to it exactly as to AWS (`[aws] endpoint_url` points here). Each request
is matched by its `X-Amz-Target` (``secretsmanager.PutSecretValue`` ...), the `SecretId` in
its JSON body and, optionally, any other body field (``VersionStage="AWSPENDING"``). A
match can be

- held before it is forwarded (AWS has not seen it) or after moto answered but before the
  answer goes back (AWS acted, the caller does not know): the test kills the caller then,
  and releases the request with ``drop=True`` so nothing more happens;
- failed with an AWS-shaped error (``ThrottlingException`` 400, ``InternalServiceError``
  500) or a dropped connection, for the next ``count`` matches or at a seeded ``rate``.

Everything is a thread on 127.0.0.1; the proxy never reaches anything but the upstream.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

Phase = Literal["before", "after"]
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "host"}


@dataclass
class Hold:
    id: str
    target: str
    secret_id: str | None
    phase: Phase
    match: dict[str, Any]
    timeout_s: float
    status: str = "armed"  # armed -> held -> released | timed_out
    drop: bool = False
    held: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


@dataclass
class Fault:
    id: str
    target: str
    secret_id: str | None
    phase: Phase
    action: Literal["error", "drop"]
    status: int
    code: str
    remaining: int | None
    rate: float
    rng: random.Random
    fired: int = 0


def _matches(
    rule_target: str,
    rule_secret: str | None,
    match: dict[str, Any],
    target: str,
    body: dict[str, Any],
) -> bool:
    if rule_target not in ("*", target):
        return False
    if rule_secret is not None and body.get("SecretId") != rule_secret:
        return False
    return all(body.get(k) == v for k, v in match.items())


class AwsProxy:
    """`with AwsProxy(moto_url) as proxy: ... proxy.url ...`"""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self._holds: list[Hold] = []
        self._faults: list[Fault] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.faults_fired = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:
                proxy._handle(self)

            do_GET = do_POST

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> AwsProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release_all()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> AwsProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- knobs ---------------------------------------------------------------------------

    def arm_hold(
        self,
        target: str,
        phase: Phase = "before",
        *,
        secret_id: str | None = None,
        timeout_s: float = 30.0,
        **match: Any,
    ) -> Hold:
        """Park the next matching request before forwarding it, or before answering it."""
        hold = Hold(uuid.uuid4().hex[:8], target, secret_id, phase, match, timeout_s)
        with self._lock:
            self._holds.append(hold)
        return hold

    def wait_held(self, hold: Hold, timeout_s: float = 15.0) -> None:
        if not hold.held.wait(timeout_s):
            raise TimeoutError(f"no {hold.target} request reached proxy hold {hold.id}")

    def release(self, hold: Hold, *, drop: bool = False) -> None:
        with self._lock:
            hold.drop = drop
            if hold.status in ("armed", "held"):
                hold.status = "released"
            hold.released.set()
            if hold in self._holds:
                self._holds.remove(hold)

    def release_all(self) -> None:
        with self._lock:
            holds = list(self._holds)
        for hold in holds:
            self.release(hold)

    def add_fault(
        self,
        target: str,
        *,
        secret_id: str | None = None,
        status: int = 400,
        code: str = "ThrottlingException",
        action: Literal["error", "drop"] = "error",
        count: int | None = None,
        rate: float = 1.0,
        seed: int | None = None,
        phase: Phase = "before",
    ) -> Fault:
        fault = Fault(
            uuid.uuid4().hex[:8],
            target,
            secret_id,
            phase,
            action,
            status,
            code,
            count,
            rate,
            random.Random(seed),
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def count(self, target: str, secret_id: str) -> int:
        with self._lock:
            return self.counts.get((target, secret_id), 0)

    def writes(self, secret_id: str) -> int:
        """PutSecretValue + UpdateSecretVersionStage requests seen for one secret."""
        return self.count("PutSecretValue", secret_id) + self.count(
            "UpdateSecretVersionStage", secret_id
        )

    # --- the request path ----------------------------------------------------------------

    def _take_fault(self, target: str, body: dict[str, Any], phase: Phase) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.phase != phase or not _matches(
                    fault.target, fault.secret_id, {}, target, body
                ):
                    continue
                if fault.rate < 1.0 and fault.rng.random() >= fault.rate:
                    continue
                fault.fired += 1
                self.faults_fired += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def _catch_hold(self, target: str, body: dict[str, Any], phase: Phase) -> Hold | None:
        with self._lock:
            for hold in self._holds:
                if (
                    hold.status == "armed"
                    and hold.phase == phase
                    and _matches(hold.target, hold.secret_id, hold.match, target, body)
                ):
                    hold.status = "held"
                    hold.held.set()
                    return hold
        return None

    def _checkpoint(
        self, handler: BaseHTTPRequestHandler, target: str, body: dict[str, Any], phase: Phase
    ) -> bool:
        """True if the request goes on; False if it was answered or dropped here."""
        hold = self._catch_hold(target, body, phase)
        if hold is not None:
            if not hold.released.wait(hold.timeout_s):
                hold.status = "timed_out"
            if hold.drop:
                _drop(handler)
                return False
        fault = self._take_fault(target, body, phase)
        if fault is None:
            return True
        if fault.action == "drop":
            _drop(handler)
            return False
        payload = json.dumps({"__type": fault.code, "message": f"injected {fault.code}"})
        _reply(
            handler,
            fault.status,
            [("Content-Type", "application/x-amz-json-1.1")],
            payload.encode(),
        )
        return False

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        target = (handler.headers.get("X-Amz-Target") or "").rpartition(".")[2]
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        with self._lock:
            key = (target, str(body.get("SecretId", "")))
            self.counts[key] = self.counts.get(key, 0) + 1
        if not self._checkpoint(handler, target, body, "before"):
            return
        try:
            status, headers, payload = self._forward(handler, raw)
        except OSError:
            _drop(handler)
            return
        if not self._checkpoint(handler, target, body, "after"):
            return
        _reply(handler, status, headers, payload)

    def _forward(
        self, handler: BaseHTTPRequestHandler, raw: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self._upstream, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP}
            conn.request(handler.command, handler.path, body=raw, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            kept = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in _HOP and k.lower() != "content-length"
            ]
            return response.status, kept, payload
        finally:
            conn.close()


def _reply(
    handler: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], payload: bytes
) -> None:
    try:
        handler.send_response(status)
        for key, value in headers:
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()
    except OSError:
        handler.close_connection = True


def _drop(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection without an answer: a lost response, to the caller."""
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll `predicate` until it returns something truthy; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)
