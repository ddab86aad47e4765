"""Issue 11, finding 8: a webhook delivery that fails is logged, never lost silently.

structlog's first parameter is `event`; passing `event=` as a keyword raised TypeError
inside the delivery thread, so nothing was logged at all.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import structlog

from rotator.config import WebhookConfig
from rotator.domain.model import Rotation, State, Trigger
from rotator.notify import Notifier


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_failed_delivery_is_logged_with_its_event_kind() -> None:

    hook = WebhookConfig(
        url=f"http://127.0.0.1:{_closed_port()}/hook",
        events=("failed",),
        timeout=timedelta(seconds=1),
    )
    now = datetime.now(UTC)
    rotation = Rotation(
        id=7,
        credential="analytics",
        trigger=Trigger.MANUAL,
        state=State.FAILED,
        created_at=now,
        actor="test",
        state_since=now,
    )
    notifier = Notifier((hook,), attempts=1)
    with structlog.testing.capture_logs() as logs:
        notifier("failed", rotation)
        notifier.close()
    failures = [e for e in logs if e["event"] == "webhook delivery failed"]
    assert len(failures) == 1, logs
    assert failures[0]["kind"] == "failed"
    assert failures[0]["credential"] == "analytics"
