"""Contract: rotator's own Adobe client against the sandbox, in every documented status setting.

Adobe's guide and swagger disagree (201 or 200 on add, 204 or 200 on delete); the client
must accept both, so the sandbox is run in each combination.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rotator.adapters.adobe import AdobeClient
from rotator.devkit.sandbox.server import SandboxServer
from rotator.devkit.sandbox.testing import running_sandbox
from rotator.domain.errors import AccessDenied, InvalidClient, NotFound, SecretLimit
from rotator.ports import CredentialRef


@pytest.fixture(
    params=[(201, 204), (200, 200), (201, 200), (200, 204)], ids=lambda p: f"add{p[0]}-delete{p[1]}"
)
def server(request: pytest.FixtureRequest) -> Iterator[SandboxServer]:
    add_status, delete_status = request.param
    with running_sandbox(add_status=add_status, delete_status=delete_status) as sandbox:
        yield sandbox


def test_list_add_verify_delete_and_the_limit(server: SandboxServer) -> None:
    admin = server.admin
    cred = admin.create_credential()
    assert cred.secret is not None
    ref = CredentialRef("contract", cred.org_id, cred.credential_id, cred.client_id)
    client = AdobeClient(server.url, server.url, sleep=lambda _s: None)
    try:
        first = client.list_secrets(ref, cred.secret.client_secret)
        assert [s.uuid for s in first] == [cred.secret.uuid]
        assert first[0].last_used_at is not None  # our management token was a use

        created = client.add_secret(ref, cred.secret.client_secret)
        assert created.uuid in {s.uuid for s in client.list_secrets(ref, cred.secret.client_secret)}
        client.verify(ref, created.value)

        with pytest.raises(SecretLimit):
            client.add_secret(ref, cred.secret.client_secret)

        client.delete_secret(ref, created.value, cred.secret.uuid)
        client.delete_secret(ref, created.value, cred.secret.uuid)  # already gone: fine
        assert [s.uuid for s in client.list_secrets(ref, created.value)] == [created.uuid]

        with pytest.raises(InvalidClient):
            client.verify(ref, cred.secret.client_secret)  # the deleted secret mints nothing
        assert admin.count("token") >= 3
    finally:
        client.close()


def test_errors_are_typed_and_name_the_credential(server: SandboxServer) -> None:
    cred = server.admin.create_credential()
    assert cred.secret is not None
    client = AdobeClient(server.url, server.url, sleep=lambda _s: None)
    try:
        wrong_cred = CredentialRef("contract", cred.org_id, "999999", cred.client_id)
        with pytest.raises((NotFound, AccessDenied)) as caught:
            client.list_secrets(wrong_cred, cred.secret.client_secret)
        assert "contract" in str(caught.value)
        assert cred.secret.client_secret not in str(caught.value)

        wrong_client = CredentialRef("contract", cred.org_id, cred.credential_id, "nope")
        with pytest.raises(InvalidClient) as refused:
            client.list_secrets(wrong_client, cred.secret.client_secret)
        assert "contract" in str(refused.value)
    finally:
        client.close()


def test_emergency_invalidation_kills_tokens_minted_with_a_secret(server: SandboxServer) -> None:
    admin = server.admin
    cred = admin.create_credential()
    assert cred.secret is not None
    ref = CredentialRef("contract", cred.org_id, cred.credential_id, cred.client_id)
    client = AdobeClient(server.url, server.url, sleep=lambda _s: None)
    try:
        client.list_secrets(ref, cred.secret.client_secret)
        assert client.invalidate_tokens(ref, cred.secret.client_secret) == 1
        statuses = {t["status"] for t in admin.tokens(cred.client_id)}
        assert statuses == {"revoked"}
    finally:
        client.close()
