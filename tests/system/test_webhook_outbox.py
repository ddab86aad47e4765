"""Issue 12: outcomes nobody misses. A webhook receiver is down for two minutes while
rotations run (by the daemon and by the CLI, one of them needing a person), and the daemon is
restarted in between. When the receiver is back, every notice arrives exactly once, signed
(checked with the Standard Webhooks reference verifier), in order per credential, within
seconds. No secret value is in any notice, outbox row or log line.

This test takes about 2.5 minutes of wall time by design (the two-minute outage).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from standardwebhooks import Webhook

from rotator.adapters.db.tables import outbox
from rotator.devkit.localaws import free_port
from tests.system.conftest import System, to_toml

OUTAGE_S = 120
NOTICES = ["started", "completed", "failed", "cancelled", "abandoned", "needs_attention"]


class FlakyReceiver:
    """A webhook receiver on a fixed 127.0.0.1 port that can go away and come back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/rotator"
        self.got: list[tuple[float, dict[str, str], bytes]] = []
        self.server: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                got.append((time.monotonic(), headers, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def outbox_rows(system: System) -> list[dict[str, Any]]:
    engine = create_engine(system.world.db_url)
    try:
        with engine.connect() as conn:
            query = select(outbox).order_by(outbox.c.id)
            return [dict(r) for r in conn.execute(query).mappings()]
    finally:
        engine.dispose()


@pytest.mark.timeout(300)
def test_a_receiver_down_for_two_minutes_across_a_restart_gets_everything_once_in_order(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    monkeypatch.setenv("ROTATOR_TEST_WEBHOOK_SECRET", secret)
    receiver = FlakyReceiver()
    try:
        _run(system, receiver, secret)
    finally:
        receiver.stop()


def _run(system: System, receiver: FlakyReceiver, secret: str) -> None:
    system.credential("analytics")  # due: the daemon rotates it at once
    system.credential("billing")  # due too
    blocked = system.credential("blocked", age_s=3600, quiet_period="1h")  # not due
    stray = system.admin.add_secret(blocked.credential_id)
    system.admin.set_secret_times(blocked.credential_id, stray.uuid, last_used_ago_s=10)
    config = system.config()
    config.pop("notifications.webhooks")
    config["notifications"] = {"delivery_expiry": "1h", "max_backoff": "2s"}
    hook = (
        f'[[notifications.webhooks]]\nname = "ops"\nurl = "{receiver.url}"\n'
        f"events = {json.dumps(NOTICES)}\n"
        'secret = { id = "ops-signing", env = "ROTATOR_TEST_WEBHOOK_SECRET" }\n'
    )
    system.config_path.write_text(to_toml(config) + "\n" + hook)

    # Receiver up: the daemon's first two rotations are delivered as they happen.
    first = system.start_daemon()
    system.wait_state("completed", name="analytics")
    system.wait_state("completed", name="billing")
    first.wait_until(lambda: len(receiver.got) == 4, 15, "the first four notices")

    # Receiver down for two minutes: a CLI rotation, an emergency, one needing a person,
    # a restart of the daemon, and one more rotation after it.
    receiver.stop()
    down_at = time.monotonic()
    ran = system.rotator("rotate", "analytics", "--wait", timeout=60)
    assert ran.code == 0, ran
    ran = system.rotator("rotate", "billing", "--emergency", "--reason", "test leak", "--wait")
    assert ran.code == 0, ran
    ran = system.rotator("rotate", "blocked")
    assert ran.code == 3, ran  # needs a person: the stray was used seconds ago
    assert first.stop() == 0, first.output()
    owed = [r for r in outbox_rows(system) if r["delivered_at"] is None]
    assert len(owed) == 6, owed  # started+completed x2, started+needs_attention
    second = system.start_daemon()
    second.wait_ready()
    ran = system.rotator("rotate", "analytics", "--wait", timeout=60)
    assert ran.code == 0, ran
    assert len(receiver.got) == 4  # nothing got through while it was down
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))

    receiver.start()
    up_at = time.monotonic()
    rows = outbox_rows(system)
    assert len(rows) == 12
    second.wait_until(lambda: len(receiver.got) >= len(rows), 20, "every owed notice")
    caught_up = receiver.got[-1][0] - up_at
    time.sleep(3)  # a duplicate would arrive now
    assert second.stop() == 0, second.output()
    print(f"outage {OUTAGE_S}s; all {len(rows)} notices delivered {caught_up:.1f}s after return")
    assert caught_up < 10

    # Exactly once: one request per outbox row, each row acknowledged, none expired.
    rows = outbox_rows(system)
    ids = [h["webhook-id"] for _, h, _ in receiver.got]
    assert sorted(ids) == sorted(f"evt_{r['event_id']}" for r in rows)
    assert len(set(ids)) == len(ids)
    assert all(r["delivered_at"] is not None and r["expired_at"] is None for r in rows)
    # Signed: the reference verifier accepts every one.
    verifier = Webhook(secret)
    notices = [verifier.verify(body.decode(), headers) for _, headers, body in receiver.got]
    # In order per credential, and the alert that came up before the restart went out.
    per_credential: dict[str, list[int]] = {}
    for notice in notices:
        per_credential.setdefault(notice["credential"], []).append(notice["event_id"])
    assert all(order == sorted(order) for order in per_credential.values()), per_credential
    kinds = {(n["credential"], n["event"]) for n in notices}
    assert ("blocked", "needs_attention") in kinds
    assert ("billing", "completed") in kinds and ("analytics", "completed") in kinds
    assert any(n["trigger"] == "emergency" for n in notices)
    # No secret value anywhere: the fixture scans the transcript at teardown.
    system.transcript += [body.decode() for _, _, body in receiver.got]
    system.transcript.append(json.dumps(rows, default=str))
    haystack = "\n".join([*system.transcript, first.output(), second.output()])
    raw_key = base64.b64decode(secret.removeprefix("whsec_"))
    assert secret not in haystack and secret.removeprefix("whsec_") not in haystack
    assert raw_key.hex() not in haystack
