"""Webhooks on rotation outcomes: a JSON POST, retried, never carrying a secret value.

Delivery runs on a small background pool so a slow receiver never holds up a rotation.
Bodies carry uuids, states and reasons only, and pass the redactor before they leave.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from rotator import redaction
from rotator.config import WebhookConfig
from rotator.domain.model import Rotation

log = structlog.get_logger("rotator.notify")


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


class Notifier:
    def __init__(
        self, hooks: tuple[WebhookConfig, ...], *, attempts: int = 4, max_wait: float = 30.0
    ) -> None:
        self.hooks = hooks
        redaction.register(*(h.url for h in hooks))  # webhook URLs often embed a credential
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook")
        self._client = httpx.Client()
        self._post = retry(
            retry=retry_if_exception_type(httpx.HTTPError),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.5, max=max_wait),
            reraise=True,
        )(self._post_once)

    def __call__(self, kind: str, rotation: Rotation) -> None:
        """Engine listener."""
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
            log.warning("webhook delivery failed", event=kind, error=type(exc).__name__)

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
        self._client.close()
