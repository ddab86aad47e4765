"""Webhook signing, bodies and retry pacing, without a network or a database."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta

from standardwebhooks import Webhook

from rotator.observe import notify

NOTICE = {
    "event": "needs_attention",
    "event_id": 42,
    "credential": "analytics",
    "rotation_id": 7,
    "trigger": "scheduled",
    "actor": "host:1:abc",
    "old_uuid": "old-uuid",
    "new_uuid": None,
    "reason": "stray secret s-1 was used 3 minutes ago",
}


def test_the_signature_is_the_one_the_reference_library_computes() -> None:
    for _ in range(5):
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        msg_id, stamp = f"evt_{secrets.randbelow(10**9)}", 1_700_000_000 + secrets.randbelow(10**6)
        body = json.dumps({"n": secrets.token_hex(8)})
        ours = notify.signature(notify.signing_key(secret.encode()), msg_id, stamp, body.encode())
        theirs = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, UTC), body)
        assert ours == theirs


def test_a_secret_without_the_prefix_is_used_as_its_bytes() -> None:
    raw = secrets.token_urlsafe(24).encode()
    assert notify.signing_key(raw) == raw
    unpadded = base64.b64encode(b"0123456789").decode().rstrip("=")
    assert notify.signing_key(f"whsec_{unpadded}".encode()) == b"0123456789"


def test_retries_back_off_from_a_second_up_to_the_cap() -> None:
    cap = timedelta(seconds=20)
    waits = [notify.backoff(n, cap).total_seconds() for n in range(8)]
    assert 0.8 <= waits[0] <= 1.0 and 1.6 <= waits[1] <= 2.0 and 3.2 <= waits[2] <= 4.0
    assert all(16 <= w <= 20 for w in waits[5:])  # capped, with a little jitter below it
    assert notify.backoff(10_000, cap) <= cap


def test_a_slack_body_is_one_text_field_that_tells_the_story() -> None:
    body = json.loads(notify.render(NOTICE, "slack"))
    assert set(body) == {"text"}
    text = body["text"]
    assert "analytics" in text and "needs attention" in text and "rotation 7" in text
    assert NOTICE["reason"] in text and "old-uuid" in text
    assert json.loads(notify.render(NOTICE, "standard")) == NOTICE
