"""The demo's simulated consumer: a service using the credential as docs/operations.md asks.

It caches its access token until it expires (1 s here, about 24 h at Adobe), then reads
AWSCURRENT again and mints a new one. Its tally is the demo's proof of invariant I8: during
the normal rotation it never gets ``invalid_client``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rotator.devkit.demo.constants import CONSUMER_SCOPE, TOKEN_LIFETIME_S

__all__ = ["Consumer", "Tally"]


@dataclass
class Tally:
    minted: int = 0
    invalid_client: int = 0
    other_errors: int = 0
    by_uuid: Counter[str] = field(default_factory=Counter)


class Consumer(threading.Thread):
    """A service using the credential as consumers should: read AWSCURRENT when the cached
    token expires, mint a new token with it. It counts what happens, per phase."""

    def __init__(self, *, ims_url: str, aws_endpoint: str, secret_id: str, client_id: str) -> None:
        super().__init__(name="demo-consumer", daemon=True)
        self.ims_url, self.aws_endpoint = ims_url, aws_endpoint
        self.secret_id, self.client_id = secret_id, client_id
        self.phase = "normal"
        self.tallies: dict[str, Tally] = {}
        self.last_used: dict[str, float] = {}  # secret uuid -> monotonic time of last mint
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def tally(self, phase: str) -> Tally:
        with self._lock:
            return self.tallies.setdefault(phase, Tally())

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        import boto3
        import httpx

        from rotator import redaction

        sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=self.aws_endpoint)
        with httpx.Client(timeout=5) as http:
            renew_at = 0.0
            while not self._halt.wait(0.02):
                if time.monotonic() < renew_at:
                    continue
                phase = self.phase
                try:
                    answer = sm.get_secret_value(SecretId=self.secret_id, VersionStage="AWSCURRENT")
                    value = json.loads(answer["SecretString"])
                    secret, uuid = str(value["client_secret"]), str(value.get("secret_uuid"))
                    redaction.register(secret)
                    response = http.post(
                        f"{self.ims_url}/ims/token/v3",
                        data={
                            "grant_type": "client_credentials",
                            "client_id": self.client_id,
                            "client_secret": secret,
                            "scope": CONSUMER_SCOPE,
                        },
                    )
                except Exception:  # the servers stop under us at the very end: count it
                    tally = self.tally(phase)
                    with self._lock:
                        tally.other_errors += 1
                    renew_at = time.monotonic() + 0.2
                    continue
                tally = self.tally(phase)
                if response.status_code == 200:
                    body = response.json()
                    redaction.register(body.get("access_token"))
                    with self._lock:
                        tally.minted += 1
                        tally.by_uuid[uuid] += 1
                        self.last_used[uuid] = time.monotonic()
                    renew_at = time.monotonic() + float(body.get("expires_in", TOKEN_LIFETIME_S))
                else:
                    with self._lock:
                        if _ims_error(response) == "invalid_client":
                            tally.invalid_client += 1
                        else:
                            tally.other_errors += 1
                    renew_at = time.monotonic() + 0.2

    def describe(self, phase: str, uuids: dict[str, str]) -> str:
        """'12 tokens (7 with the old secret, 5 with the new), 0 invalid_client'."""
        tally = self.tally(phase)
        with self._lock:
            parts = [
                f"{count} with the {label} secret"
                for label, uuid in uuids.items()
                if (count := tally.by_uuid.get(uuid, 0))
            ]
            text = f"{tally.minted} token{'' if tally.minted == 1 else 's'}"
            if parts:
                text += f" ({', '.join(parts)})"
            text += f", {tally.invalid_client} invalid_client"
            if tally.other_errors:
                text += f", {tally.other_errors} other errors"
        return text


def _ims_error(response: Any) -> str:
    try:
        return str(response.json().get("error", ""))
    except ValueError:
        return ""
