"""The sandbox over HTTP as the real Adobe behaves (issue 26's test world).

Only a token mint is a use of a secret: rotator's client reuses its cached management
token for list, add and delete, so those move no `last_used_at`. And Adobe keeps its own
clock: with the sandbox's clock offset (`SandboxAdmin.set_clock_offset`), every time it
reports and its `Date` header follow Adobe's clock, not the host's (nor the database's).
"""

from __future__ import annotations

import email.utils
import time

import httpx

from rotator.adapters.adobe import AdobeClient
from rotator.devkit.sandbox.testing import running_sandbox
from rotator.ports import CredentialRef

SKEW_S = -600  # Adobe ten minutes behind this host


def test_only_token_mints_are_uses_and_adobe_keeps_its_own_clock() -> None:
    with running_sandbox() as server:
        admin = server.admin
        admin.set_clock_offset(SKEW_S)
        cred = admin.create_credential()
        assert cred.secret is not None
        ref = CredentialRef("clock", cred.org_id, cred.credential_id, cred.client_id)
        client = AdobeClient(server.url, server.url, sleep=lambda _s: None)
        try:
            [first] = client.list_secrets(ref, cred.secret.client_secret)  # mints: a use
            assert first.last_used_at is not None
            assert abs(first.last_used_at.timestamp() - (time.time() + SKEW_S)) < 30
            assert abs(first.created_at.timestamp() - (time.time() + SKEW_S)) < 30

            made = client.add_secret(ref, cred.secret.client_secret)  # the cached token
            client.delete_secret(ref, cred.secret.client_secret, made.uuid)
            [again] = client.list_secrets(ref, cred.secret.client_secret)
            assert again.last_used_at == first.last_used_at  # list/add/delete: no use

            answer = httpx.get(f"{server.url}/ims/token/v3")
            adobe_now = email.utils.parsedate_to_datetime(answer.headers["date"])
            assert len(answer.headers.get_list("date")) == 1
            assert abs(adobe_now.timestamp() - (time.time() + SKEW_S)) < 30
        finally:
            client.close()
