"""One total deadline per webhook delivery, and a bounded read of the answer: a receiver
that trickles its answer a byte at a time, or answers without end, holds a sender no longer
than the webhook's `timeout` (httpx's own timeouts are per read). Real sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from rotator import config
from rotator.observe import notify


def _serve(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def run() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)  # the request (small)
            with contextlib.suppress(OSError):  # the sender hung up: what a bounded reader does
                answer(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    listener.close()
    thread.join(timeout=5)


def _deliverer() -> notify.Deliverer:
    settings = config.from_mapping({}, source="test")
    return notify.Deliverer(outbox=None, settings=settings, keys={})  # type: ignore[arg-type]


@pytest.fixture
def trickling() -> Iterator[str]:
    def answer(conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok":
            conn.sendall(bytes([byte]))
            time.sleep(0.2)  # each read answers well within a per-read timeout

    yield from _serve(answer)


@pytest.fixture
def endless() -> Iterator[str]:
    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        chunk = b"x" * 8192
        for _ in range(100_000):  # 800 MB if read whole
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    yield from _serve(answer)


def test_a_trickling_receiver_is_cut_off_at_the_delivery_deadline(trickling: str) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        _deliverer()._post(trickling, b"{}", {"content-type": "application/json"}, 1.0)
    took = time.monotonic() - started
    assert took < 2.0, f"held {took:.1f}s with a 1s deadline"


def test_an_endless_answer_is_read_only_up_to_the_bound(endless: str) -> None:
    started = time.monotonic()
    status = _deliverer()._post(endless, b"{}", {}, 10.0)
    assert status == 200 and time.monotonic() - started < 5.0
    assert notify.MAX_RESPONSE_BYTES == 64 * 1024


def test_a_delivery_past_its_deadline_is_recorded_as_such(trickling: str) -> None:
    """The deadline's own sentence reaches the outbox (a broader `except` before it hid it)."""
    from datetime import UTC, datetime

    from rotator.adapters.db.outbox import Delivery

    failed: list[str] = []

    class Outbox:
        def failed(self, delivery: Delivery, owner: str, *, error: str, retry_in: object) -> None:
            failed.append(error)

    settings = config.from_mapping(
        {"notifications": {"webhooks": [{"name": "ops", "url": trickling, "timeout": "1s"}]}},
        source="test",
    )
    deliverer = notify.Deliverer(outbox=Outbox(), settings=settings, keys={})  # type: ignore[arg-type]
    delivery = Delivery(1, 1, "ops", "alpha", "completed", {}, datetime.now(UTC), 0)
    assert deliverer._send(delivery) is False
    assert failed == ["no answer within 1s (the whole delivery)"]
