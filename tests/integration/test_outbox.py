"""The notification outbox and its sender, on SQLite and the real PostgreSQL.

Notices are written in the audit event's transaction, sent signed (checked with the
Standard Webhooks reference verifier), retried with capped backoff, in order per receiver
and credential, once per receiver even with two senders racing, and given up after the
expiry. A real HTTP receiver on 127.0.0.1 answers; nothing is mocked.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import Engine, func, select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from rotator import config
from rotator.adapters.db.outbox import Outbox, Receiver
from rotator.adapters.db.store import Claim, Store
from rotator.adapters.db.tables import outbox
from rotator.app import deliverer
from rotator.audit.keys import Key
from rotator.domain.errors import LeaseLost
from rotator.domain.model import State, Trigger
from rotator.observe import notify

MINUTE = timedelta(minutes=1)


class Receiver_:
    """A webhook receiver on 127.0.0.1: keeps (headers, body) of every request it acks.

    `fail_every` makes every n-th request answer 503 (not acknowledged, so retried).
    """

    def __init__(self, fail_every: int = 0) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.requests = 0
        self.fail_every = fail_every
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with lock:
                    owner.requests += 1
                    failing = owner.fail_every and owner.requests % owner.fail_every == 0
                    if not failing:
                        owner.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver_]:
    r = Receiver_()
    yield r
    r.close()


def settings(*hooks: dict[str, Any], **notifications: Any) -> config.Settings:
    return config.from_mapping(
        {"notifications": {"webhooks": list(hooks), **notifications}}, source="test.toml"
    )


def store_for(engine: Engine, s: config.Settings) -> Store:
    receivers = [Receiver(h.receiver, frozenset(h.events)) for h in s.notifications.webhooks]
    st = Store(engine, receivers=receivers)
    st.sync_credentials({name: f"hash-{name}" for name in ("alpha", "beta", "gamma")})
    return st


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(outbox).order_by(outbox.c.id)).mappings()]


def walk(st: Store, name: str, *states: State) -> None:
    """Start a rotation of `name` and save it through `states` (one audit event each)."""
    rotation = st.start(name, Trigger.MANUAL, actor="test", reason="walk")
    [claim] = st.claim("walker", MINUTE, rotation_id=rotation.id)
    for state in states:
        claim = st.save(
            claim,
            claim.rotation.evolve(state=state),
            kind=state.value,
            actor="walker",
            keep_lease=None if state.terminal else MINUTE,
        )


# --- issue 11, finding 8 ---------------------------------------------------------------------


def test_a_failed_delivery_is_logged_with_its_event_kind(engine: Engine) -> None:
    """Failed on 1921d21: `log.warning(..., event=kind)` raised TypeError in the pool, so a
    failed delivery left no trace at all (first form of this test: commit 885014d)."""
    s = settings({"url": f"http://127.0.0.1:{closed_port()}/hook", "events": ["failed"]})
    st = store_for(engine, s)
    walk(st, "alpha", State.CREATING, State.FAILED)
    sender = deliverer(s, engine)
    with structlog.testing.capture_logs() as logs:
        assert sender.deliver_due() == 0
    sender.close()
    failures = [e for e in logs if e["event"] == "webhook delivery failed"]
    assert len(failures) == 1, logs
    assert (failures[0]["kind"], failures[0]["credential"]) == ("failed", "alpha")
    assert failures[0]["error"] == "ConnectError"
    [row] = rows(engine)
    assert row["attempts"] == 1 and row["delivered_at"] is None and row["last_error"]


# --- written with the event ------------------------------------------------------------------


def test_notices_are_written_with_their_event_for_subscribers_only(engine: Engine) -> None:
    s = settings(
        {"url": "http://127.0.0.1:1/a", "name": "ops", "events": ["started", "needs_attention"]},
        {"url": "http://127.0.0.1:1/b", "name": "audit", "events": ["completed", "failed"]},
    )
    st = store_for(engine, s)
    rotation = st.start("alpha", Trigger.MANUAL, actor="test", reason="go")
    [claim] = st.claim("w", MINUTE, rotation_id=rotation.id)
    # Entering needs_attention is one notice; staying there (a retry) is none.
    claim = st.save(
        claim,
        claim.rotation.evolve(state=State.NEEDS_ATTENTION),
        kind="x",
        actor="w",
        keep_lease=MINUTE,
    )
    claim = st.save(claim, claim.rotation, kind="x", actor="w", keep_lease=MINUTE)
    # A save that lost its lease writes neither the event nor a notice.
    stale = Claim(claim.rotation, "w", claim.fence - 1)
    with pytest.raises(LeaseLost):
        st.save(stale, claim.rotation.evolve(state=State.FAILED), kind="failed", actor="w")
    st.save(claim, claim.rotation.evolve(state=State.FAILED), kind="failed", actor="w")

    got = [(r["receiver"], r["kind"]) for r in rows(engine)]
    assert got == [("ops", "started"), ("ops", "needs_attention"), ("audit", "failed")]
    failed = rows(engine)[-1]["payload"]
    assert failed["event"] == "failed" and failed["state"] == "failed"
    assert failed["rotation_id"] == rotation.id and failed["reason"] == "go"


# --- signed, formatted -----------------------------------------------------------------------


def test_signed_per_standard_webhooks_and_a_slack_body(engine: Engine, receiver: Receiver_) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    s = settings(
        {"url": receiver.url, "name": "std", "events": ["completed"]},
        {"url": receiver.url, "name": "chat", "events": ["completed"], "format": "slack"},
    )
    st = store_for(engine, s)
    walk(st, "alpha", State.CREATING, State.COMPLETED)
    key = Key("wh", secret.encode())
    sender = notify.Deliverer(Outbox(engine), s, {"std": key, "chat": key})
    assert sender.deliver_due() == 2
    sender.close()

    std, chat = sorted(receiver.got, key=lambda g: b'"text"' in g[1])
    verified = Webhook(secret).verify(std[1].decode(), std[0])  # raises if the signature is wrong
    assert verified["event"] == "completed" and verified["credential"] == "alpha"
    event_id = verified["event_id"]
    assert std[0]["webhook-id"] == chat[0]["webhook-id"] == f"evt_{event_id}"
    assert abs(int(std[0]["webhook-timestamp"]) - time.time()) < 60
    text = json.loads(chat[1])["text"]
    assert "alpha" in text and "completed" in text
    Webhook(secret).verify(chat[1].decode(), chat[0])
    tampered = dict(std[0], **{"webhook-timestamp": str(int(std[0]["webhook-timestamp"]) + 1)})
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(std[1].decode(), tampered)
    assert all(r["delivered_at"] is not None for r in rows(engine))


# --- two senders, in order, once -------------------------------------------------------------


def test_two_senders_deliver_each_notice_once_and_in_order_per_credential(
    engine: Engine,
) -> None:
    flaky = Receiver_(fail_every=3)  # every third request is refused, then retried
    try:
        s = settings(
            {"url": flaky.url, "name": "ops", "events": ["started", "completed", "failed"]},
            max_backoff="100ms",
        )
        st = store_for(engine, s)
        for _ in range(3):
            for name in ("alpha", "beta", "gamma"):
                walk(st, name, State.CREATING, State.COMPLETED)
        expected = len(rows(engine))
        assert expected == 18

        senders = [deliverer(s, engine, owner=f"replica-{i}") for i in range(2)]
        stop = threading.Event()
        threads = [
            threading.Thread(target=d.run, args=(stop,), kwargs={"interval": 0.05}) for d in senders
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(flaky.got) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a duplicate would arrive now
        stop.set()
        for t in threads:
            t.join(timeout=10)
        for d in senders:
            d.close()
    finally:
        flaky.close()

    ids = [h["webhook-id"] for h, _ in flaky.got]
    assert len(ids) == len(set(ids)) == expected, ids
    assert flaky.requests > expected  # some were refused and sent again
    by_credential: dict[str, list[int]] = {}
    for _, body in flaky.got:
        notice = json.loads(body)
        by_credential.setdefault(notice["credential"], []).append(notice["event_id"])
    for name, order in by_credential.items():
        assert order == sorted(order), (name, order)
    assert all(r["delivered_at"] is not None for r in rows(engine))


# --- expiry ----------------------------------------------------------------------------------


def test_a_notice_past_the_expiry_is_given_up_and_the_next_goes(
    engine: Engine, receiver: Receiver_
) -> None:
    s = settings(
        {"url": receiver.url, "name": "ops", "events": ["started", "failed"]},
        delivery_expiry="1s",
    )
    st = store_for(engine, s)
    walk(st, "alpha", State.CREATING, State.FAILED)  # started + failed
    time.sleep(1.2)
    walk(st, "alpha", State.CREATING, State.FAILED)  # two more, fresh
    sender = deliverer(s, engine)
    with structlog.testing.capture_logs() as logs:
        delivered = sender.deliver_due() + sender.deliver_due()
    sender.close()

    assert delivered == 2
    assert [json.loads(b)["event"] for _, b in receiver.got] == ["started", "failed"]
    assert len([e for e in logs if e["event"] == "webhook notice expired undelivered"]) == 2
    backlog = Outbox(engine).backlog()
    assert (backlog.pending, backlog.expired) == (0, 2)
    with engine.connect() as conn:
        expired = conn.execute(
            select(func.count()).where(outbox.c.expired_at.is_not(None))
        ).scalar_one()
    assert expired == 2


def test_after_a_receiver_fails_its_other_notices_wait_for_the_next_pass(
    engine: Engine,
) -> None:
    refusing = Receiver_(fail_every=1)  # every request answered 503
    try:
        s = settings({"url": refusing.url, "name": "ops", "events": ["started"]})
        st = store_for(engine, s)
        for name in ("alpha", "beta", "gamma"):
            st.start(name, Trigger.MANUAL, actor="t")
        sender = deliverer(s, engine)
        assert sender.deliver_due() == 0
        sender.close()
    finally:
        refusing.close()
    assert refusing.requests == 1  # one try, not one timeout per notice
    attempts = sorted(r["attempts"] for r in rows(engine))
    assert attempts == [0, 0, 1]
    assert all(r["claimed_by"] is None and r["delivered_at"] is None for r in rows(engine))


def test_a_receiver_whose_url_httpx_refuses_does_not_starve_the_others(engine: Engine) -> None:
    """Issue 26: on fae5c9a httpx's InvalidURL (no HTTPError) escaped `_send` and aborted
    every pass, so no other receiver got a notice until theirs expired. (Config refuses
    such URLs now; the deliverer must survive one anyway.)"""
    s = settings(
        {"url": "https://bad.example/hook", "name": "bad", "events": ["started"]},
        {"url": "https://good.example/hook", "name": "good", "events": ["started"]},
    )
    st = store_for(engine, s)
    st.start("alpha", Trigger.MANUAL, actor="t")

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "bad.example":
            raise httpx.InvalidURL("Invalid non-printable ASCII character in URL")
        return httpx.Response(204, stream=httpx.ByteStream(b""))  # a wire answer, read as one

    sender = notify.Deliverer(Outbox(engine), s, {}, transport=httpx.MockTransport(answer))
    assert sender.deliver_due() == 1
    sender.close()
    by_receiver = {r["receiver"]: r for r in rows(engine)}
    assert by_receiver["good"]["delivered_at"] is not None
    assert by_receiver["bad"]["delivered_at"] is None
    assert by_receiver["bad"]["last_error"] == "InvalidURL"
