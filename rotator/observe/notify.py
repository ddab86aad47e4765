"""Webhook delivery from the durable outbox: signed, retried, in order, never twice once acked.

The store writes what each receiver is owed in the same transaction as the audit event
(rotator/adapters/db/outbox.py); this module only sends. Any replica (and a CLI command on
its way out) may send: a claim keeps one row with one sender at a time, and a row is marked
delivered the moment the receiver answers 2xx, so it is never sent again after that.

Signing follows Standard Webhooks (https://www.standardwebhooks.com): `webhook-id` (the
audit event id: the receiver's idempotency key, the same on every retry), `webhook-timestamp`
(Unix seconds of this attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 over
"{id}.{timestamp}.{body}">`, computed by the reference library (`standardwebhooks`). A
secret written as `whsec_<base64>` is used decoded, as the convention's libraries do; any
other secret is used as its bytes.

Retries back off exponentially (`policy.backoff`, the engine's own) from one second up to
`[notifications] max_backoff`, for any
failure (a receiver that answers 404 while it is being redeployed comes back too), until
`delivery_expiry` after the event; then the row is given up, logged and counted.
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import structlog
from standardwebhooks import Webhook

from rotator import redaction
from rotator.audit.keys import Key
from rotator.config import Settings
from rotator.domain import policy
from rotator.ports import Notice, NoticeOutbox

log = structlog.get_logger("rotator.observe.notify")

FIRST_RETRY = timedelta(seconds=1)
EXPIRE_EVERY = 10.0  # seconds between sweeps for rows past the delivery expiry
BATCH = 10  # rows one pass claims (at most one per receiver and credential)
# What is read of a receiver's answer at most: only its status matters, and a receiver
# must not fill this process's memory.
MAX_RESPONSE_BYTES = 64 * 1024
_PREFIX = b"whsec_"


def webhook_id(event_id: int) -> str:
    """The idempotency key a receiver dedupes on: one audit event, one id, every retry."""
    return f"evt_{event_id}"


def signing_key(material: bytes) -> bytes:
    """Standard Webhooks secrets are `whsec_` + base64; other secrets are used as bytes.

    Kept here rather than left to `Webhook(str)`: the library base64-decodes every string
    secret, prefixed or not, while rotator's documented rule (docs/operations.md#webhooks)
    uses a secret without the prefix as its bytes, as receivers configured before the
    prefix existed expect. Given bytes, the library uses them as they are.
    """
    if material.startswith(_PREFIX):
        return base64.b64decode(material[len(_PREFIX) :] + b"==")  # padding optional
    return material


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}`, by the reference library."""
    return Webhook(key).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body)


def render(payload: Mapping[str, Any], fmt: str) -> bytes:
    """The body to send: the notice itself, or a Slack-compatible `{"text": ...}`."""
    if fmt == "slack":
        return json.dumps({"text": slack_text(payload)}).encode()
    return json.dumps(payload).encode()


_ICONS = {
    "completed": ":white_check_mark:",
    "failed": ":x:",
    "needs_attention": ":warning:",
    "cancelled": ":no_entry_sign:",
    "abandoned": ":fast_forward:",
    "started": ":arrows_counterclockwise:",
}


def slack_text(payload: Mapping[str, Any]) -> str:
    kind = str(payload.get("event", ""))
    text = (
        f"{_ICONS.get(kind, '')} rotator: rotation {payload.get('rotation_id')} of "
        f"*{payload.get('credential')}* {kind.replace('_', ' ')} "
        f"({payload.get('trigger')}, by {payload.get('actor')})"
    )
    if payload.get("old_uuid") or payload.get("new_uuid"):
        text += f"\nsecret {payload.get('old_uuid') or '-'} -> {payload.get('new_uuid') or '-'}"
    if payload.get("reason"):
        text += f"\n> {payload['reason']}"
    return text.strip()


def backoff(attempts: int, cap: timedelta) -> timedelta:
    """1 s, 2 s, 4 s ... up to `cap` after `attempts` failed sends (the engine's
    `policy.backoff`), less up to a fifth at random so replicas spread out.

    Not tenacity: a delivery is not retried inside a call (tenacity's loop) but by a later
    pass, after the wait is stored in the outbox row, so only the delay itself is needed.
    """
    delay = policy.backoff(attempts + 1, base=FIRST_RETRY, cap=cap)
    return delay * random.uniform(0.8, 1.0)


def sender_id() -> str:
    """Who holds a claim: host, process and a random part (two senders in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Deliverer:
    """Sends due outbox rows to their webhooks and records each answer."""

    def __init__(
        self,
        outbox: NoticeOutbox,
        settings: Settings,
        keys: Mapping[str, Key],
        *,
        owner: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.outbox = outbox
        self.config = settings.notifications
        self.hooks = {h.receiver: h for h in self.config.webhooks}
        redaction.register(*(h.url for h in self.hooks.values()))  # URLs often embed a token
        self.keys = {name: signing_key(k.material) for name, k in keys.items()}
        self.owner = owner or sender_id()
        self._transport = transport
        longest = max((h.timeout for h in self.hooks.values()), default=timedelta(seconds=10))
        # A claim outlives a whole pass (every row of a batch timing out), so no other
        # sender takes a row while this one may still be sending it.
        self._hold = longest * BATCH + timedelta(seconds=30)
        self._swept = 0.0

    def deliver_due(self, limit: int = BATCH) -> int:
        """One pass: give up expired rows, then send what is due; return rows delivered.

        A claim holds at most one row per receiver and credential (the oldest open one),
        so the next notice of a credential goes only after this one is settled. After a
        receiver fails, its other rows in the pass are not tried (they wait a backoff).
        """
        if not self.hooks:
            return 0
        if time.monotonic() - self._swept >= EXPIRE_EVERY:
            self._swept = time.monotonic()
            for gone in self.outbox.expire(self.config.delivery_expiry):
                log.error(
                    "webhook notice expired undelivered",
                    receiver=gone.receiver,
                    kind=gone.kind,
                    credential=gone.credential,
                    event_id=gone.event_id,
                    expiry=self.config.delivery_expiry.total_seconds(),
                )
        claimed = self.outbox.claim(self.owner, self.hooks, hold=self._hold, limit=limit)
        delivered, failing = 0, set()
        for delivery in claimed:
            if delivery.receiver in failing:
                retry_in = backoff(delivery.attempts, self.config.max_backoff)
                self.outbox.release(delivery, self.owner, retry_in=retry_in)
            elif self._send(delivery):
                delivered += 1
            else:
                failing.add(delivery.receiver)
        return delivered

    def _send(self, delivery: Notice) -> bool:
        hook = self.hooks[delivery.receiver]
        body = redaction.redact(render(delivery.payload, hook.format).decode()).encode()
        msg_id = webhook_id(delivery.event_id)
        stamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "rotator",
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
        }
        key = self.keys.get(delivery.receiver)
        if key is not None:
            headers["webhook-signature"] = signature(key, msg_id, stamp, body)
        error = ""
        status: int | None = None
        try:
            status = self._post(hook.url, body, headers, hook.timeout.total_seconds())
            if 200 <= status < 300:
                self.outbox.delivered(delivery)
                log.info(
                    "webhook delivered",
                    receiver=delivery.receiver,
                    kind=delivery.kind,
                    credential=delivery.credential,
                    event_id=delivery.event_id,
                    attempts=delivery.attempts + 1,
                )
                return True
            error = f"HTTP {status}"
        except TimeoutError:
            error = f"no answer within {hook.timeout.total_seconds():g}s (the whole delivery)"
        except Exception as exc:  # this delivery failed, whatever httpx raised: not the pass
            # (InvalidURL or an IDNA error is no HTTPError: uncaught, one receiver's bad
            # URL aborted every pass and starved the other receivers.)
            error = type(exc).__name__
        retry_in = backoff(delivery.attempts, self.config.max_backoff)
        self.outbox.failed(delivery, self.owner, error=error, retry_in=retry_in)
        log.warning(
            "webhook delivery failed",
            receiver=delivery.receiver,
            kind=delivery.kind,
            credential=delivery.credential,
            event_id=delivery.event_id,
            attempts=delivery.attempts + 1,
            error=error,
            status=status,
            retry_in=round(retry_in.total_seconds(), 1),
        )
        return False

    def _post(self, url: str, body: bytes, headers: dict[str, str], deadline: float) -> int:
        """POST and return the answer's status within ONE deadline for the whole delivery
        (connect, send, the answer's head and what is read of its body together: httpx's
        own timeouts are per read, so a receiver that trickles bytes would hold a sender
        for as long as it likes). At most MAX_RESPONSE_BYTES of the body is read.
        TimeoutError when the deadline passes; redirects are not followed."""

        async def attempt() -> int:
            with anyio.fail_after(deadline):
                async with (
                    httpx.AsyncClient(
                        transport=self._transport, timeout=deadline, follow_redirects=False
                    ) as client,
                    client.stream("POST", url, content=body, headers=headers) as response,
                ):
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read >= MAX_RESPONSE_BYTES:
                            break
                    return response.status_code

        return anyio.run(attempt)

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        """Deliver until `stop` is set; after a delivery look again at once (the next notice
        of that credential is due now), else wait `interval`."""
        while not stop.is_set():
            try:
                delivered = self.deliver_due()
            except Exception as exc:  # the database may be away: the next pass retries
                log.error("webhook delivery pass failed", error=type(exc).__name__)
                delivered = 0
            if not delivered:
                stop.wait(interval)

    def flush(self, budget: float = 10.0) -> None:
        """Send what is due now, for at most `budget` seconds (a CLI command on its way out).

        A row that fails stays in the outbox for the daemon or the next command.
        """
        deadline = time.monotonic() + budget
        while time.monotonic() < deadline and self.deliver_due() > 0:
            pass

    def close(self) -> None:
        """Nothing held between deliveries (each has its own connection and deadline)."""


def load_keys(settings: Settings) -> dict[str, Key]:
    """Each webhook's signing secret, read now (a missing one is a one-line ConfigError)."""
    keys: dict[str, Key] = {}
    for hook in settings.notifications.webhooks:
        if hook.secret is not None:
            keys[hook.receiver] = hook.secret.source().load(
                region=settings.aws.region, endpoint_url=settings.aws.endpoint_url
            )
    return keys
