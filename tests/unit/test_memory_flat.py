"""A daemon that runs for a year stays flat: what the Adobe client and the redactor keep is
bounded by what can still matter, not by uptime (bench/year.py measures it at scale)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from rotator import redaction
from rotator.adapters.adobe import AdobeClient
from rotator.ports import CredentialRef

DAY = 86400.0
IMS, API = "https://ims.test", "https://api.test"


class Ims:
    """Mints a fresh token per request (valid a week, so the test mints less), counts
    invalidations."""

    def __init__(self) -> None:
        self.minted = 0
        self.invalidated: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/invalidate_token/v2":
            self.invalidated.append(request.content.decode())
            return httpx.Response(200, json={})
        self.minted += 1
        token = f"tok-{uuid.uuid4().hex}"
        return httpx.Response(200, json={"access_token": token, "expires_in": 7 * DAY})


@pytest.fixture
def year(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1_700_000_000.0]
    monkeypatch.setattr(redaction, "clock", lambda: now[0])
    for name, empty in (
        ("_values", set()),
        ("_index", {}),
        ("_permanent", set()),
        ("_scopes", {}),
        ("_scoped", {}),
        ("_until", {}),
        ("_expiries", []),
        ("_scope_expiries", []),
    ):
        monkeypatch.setattr(redaction, name, empty)
    return now


def test_a_year_of_daily_tokens_and_quarterly_secrets_keeps_a_few_of_each(
    year: list[float],
) -> None:
    ims = Ims()
    client = AdobeClient(IMS, API, transport=httpx.MockTransport(ims), clock=lambda: year[0])
    creds = [CredentialRef(f"c{i}", "org", f"cred{i}", f"client-{i}") for i in range(40)]
    secrets = {c.name: f"p8e-{uuid.uuid4().hex}" for c in creds}
    try:
        for day in range(365):
            if day % 91 == 0:  # a quarterly rotation: a new secret, verified
                for cred in creds:
                    secrets[cred.name] = f"p8e-{uuid.uuid4().hex}"
                    client.verify(cred, secrets[cred.name])
            for cred in creds:
                client._management_token(cred, secrets[cred.name], "survey")
            year[0] += DAY

        assert ims.minted >= 52 * len(creds)
        # Only the secrets in use keep a token state (swept when the map doubles), each
        # with its unexpired tokens: 5 secrets per credential were used in the year.
        assert len(client._ims.cache.keys) <= 2 * len(creds) < 5 * len(creds)
        assert max(len(s.minted) for s in client._ims.cache.keys.values()) <= 2
        # The redactor: a day's tokens and each credential's last few secrets.
        sizes = redaction.sizes()
        assert sizes["expiring"] <= 2 * len(creds), sizes
        assert sizes["values"] <= len(creds) * (2 + 2 * redaction.KEEP_PER_SCOPE), sizes

        # An emergency invalidates only tokens IMS would still accept.
        cred = creds[0]
        year[0] += 8 * DAY
        assert client.invalidate_tokens(cred, secrets[cred.name]) == 0
        assert ims.invalidated == []
    finally:
        client.close()
