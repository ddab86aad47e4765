"""Webhooks on rotation outcomes: a JSON POST, retried, never carrying a secret value.

Delivery runs on a small background pool so a slow receiver never holds up a rotation;
`close()` waits for deliveries in flight, so a short-lived `rotator rotate` still sends
what it owes before it exits. Bodies carry uuids, states and reasons only (never a value),
and pass the redactor before they leave. Connection errors, 429 and 5xx are retried with
backoff; any other answer is final.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from rotator import redaction
from rotator.config import WebhookConfig
from rotator.domain.model import Rotation

log = structlog.get_logger("rotator.notify")

Listener = Callable[[str, Rotation], None]


def body(kind: str, rotation: Rotation) -> dict[str, Any]:
    return {
        "event": kind,
        "at": datetime.now(UTC).isoformat(),
        "credential": rotation.credential,
        "rotation_id": rotation.id,
        "trigger": rotation.trigger.value,
        "state": rotation.state.value,
        "old_uuid": rotation.old_uuid,
        "new_uuid": rotation.new_uuid,
        "reason": rotation.last_error or rotation.reason or "",
    }


def _worth_retrying(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return status == 429 or status >= 500
    return isinstance(exc, httpx.TransportError)


class Notifier:
    """Engine listener that POSTs the outcomes each webhook subscribed to."""

    def __init__(
        self, hooks: tuple[WebhookConfig, ...], *, attempts: int = 4, max_wait: float = 30.0
    ) -> None:
        self.hooks = hooks
        redaction.register(*(h.url for h in hooks))  # webhook URLs often embed a credential
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook")
        self._client = httpx.Client()
        self._post = retry(
            retry=retry_if_exception(_worth_retrying),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.5, max=max_wait),
            reraise=True,
        )(self._post_once)

    def __call__(self, kind: str, rotation: Rotation) -> None:
        for hook in self.hooks:
            if kind in hook.events:
                self._pool.submit(self._deliver, hook, kind, rotation)

    def _post_once(self, hook: WebhookConfig, payload: str) -> None:
        response = self._client.post(
            hook.url,
            content=payload,
            timeout=hook.timeout.total_seconds(),
            headers={"content-type": "application/json"},
        )
        response.raise_for_status()

    def _deliver(self, hook: WebhookConfig, kind: str, rotation: Rotation) -> None:
        payload = redaction.redact(json.dumps(body(kind, rotation)))
        try:
            self._post(hook, payload)
        except httpx.HTTPError as exc:
            status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
            log.warning(
                "webhook delivery failed",
                kind=kind,
                credential=rotation.credential,
                rotation_id=rotation.id,
                error=type(exc).__name__,
                status=status,
            )

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
        self._client.close()


def once_each(listeners: Iterable[Listener]) -> Listener:
    """Pass each outcome of a rotation on once.

    The engine reports `needs_attention` again at every retry of a step that is still
    blocked (every poll interval); an alert and a counter want it once, until the rotation
    moves on and perhaps gets stuck again.
    """
    targets = list(listeners)
    waiting: set[int] = set()
    lock = threading.Lock()

    def listener(kind: str, rotation: Rotation) -> None:
        with lock:
            if kind == "needs_attention":
                if rotation.id in waiting:
                    return
                waiting.add(rotation.id)
            else:
                waiting.discard(rotation.id)
        for target in targets:
            target(kind, rotation)

    return listener
