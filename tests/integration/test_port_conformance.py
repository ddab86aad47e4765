"""One contract for each port the engine uses, run against the devkit's fake and the real adapter.

`AdobeApi`: `rotator.devkit.fakes.FakeAdobe` and `rotator.adapters.adobe.AdobeClient` over
HTTP to the sandbox. `SecretsStore`: `rotator.devkit.fakes.FakeAws` and
`rotator.adapters.aws_secrets.AwsSecrets` against moto's server. Each test runs once per
implementation, so a fake that drifts from the adapter (or the adapter from the world the
fake stands for) fails here and not in a model run that trusts the fake.

The checks are the behaviours the engine relies on: list, add and delete, the two-secret
limit, a deleted uuid counts as deleted, a deleted secret mints nothing, only a mint moves
`last_used_at`; AWS's labels (AWSPENDING by token, RemoveFromVersionId, AWSPREVIOUS follows
AWSCURRENT, immutable versions) and reads by stage and by version. Where the fake is
stricter than moto (the reference on AWS Secrets Manager lists where moto is lenient), the
shared tests check only the common contract, and the fake's strictness is checked apart.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import boto3
import pytest

from rotator.adapters.adobe import AdobeClient
from rotator.adapters.aws_secrets import AwsSecrets
from rotator.devkit.fakes import (
    CREDENTIAL_ID,
    CURRENT,
    PENDING,
    PREVIOUS,
    FakeAdobe,
    FakeAws,
    FakeClock,
)
from rotator.devkit.localaws import LocalAws
from rotator.devkit.sandbox.server import SandboxServer
from rotator.domain.errors import InvalidClient, NotFound, PermanentError, SecretLimit
from rotator.domain.model import AdobeSecret
from rotator.ports import AdobeApi, CredentialRef, SecretsStore

HOUR = timedelta(hours=1)

# --- Adobe ---------------------------------------------------------------------------------


@dataclass
class AdobeSide:
    """One `AdobeApi` with a credential that holds one secret, and Adobe's time to move."""

    api: AdobeApi
    ref: CredentialRef
    first_uuid: str
    first_secret: str
    advance: Callable[[timedelta], None]

    def listed(self, secret: str) -> dict[str, AdobeSecret]:
        return {s.uuid: s for s in self.api.list_secrets(self.ref, secret)}

    def last_used(self, secret: str, uuid: str) -> datetime | None:
        return self.listed(secret)[uuid].last_used_at


def _fake_adobe() -> AdobeSide:
    clock = FakeClock()
    fake = FakeAdobe(clock)
    first = fake.seed()
    ref = CredentialRef("conformance", "org", CREDENTIAL_ID, "client")
    return AdobeSide(fake, ref, first.uuid, first.value, clock.advance)


@pytest.fixture(params=["fake", "sandbox"])
def adobe(request: pytest.FixtureRequest) -> Iterator[AdobeSide]:
    """The in-memory fake, then the real client over HTTP to the sandbox (its clock moved
    by the admin API, as Adobe's own time passing)."""
    if request.param == "fake":
        yield _fake_adobe()
        return
    sandbox: SandboxServer = request.getfixturevalue("sandbox")
    cred = sandbox.admin.create_credential()
    assert cred.secret is not None
    ref = CredentialRef("conformance", cred.org_id, cred.credential_id, cred.client_id)
    client = AdobeClient(sandbox.url, sandbox.url, sleep=lambda _s: None)

    def advance(delta: timedelta) -> None:
        sandbox.state.advance_clock(delta.total_seconds())

    try:
        yield AdobeSide(client, ref, cred.secret.uuid, cred.secret.client_secret, advance)
    finally:
        client.close()


def test_list_add_and_the_two_secret_limit(adobe: AdobeSide) -> None:
    assert list(adobe.listed(adobe.first_secret)) == [adobe.first_uuid]

    created = adobe.api.add_secret(adobe.ref, adobe.first_secret)

    assert created.uuid != adobe.first_uuid and created.value != adobe.first_secret
    assert list(adobe.listed(adobe.first_secret)) == [adobe.first_uuid, created.uuid]
    with pytest.raises(SecretLimit):
        adobe.api.add_secret(adobe.ref, adobe.first_secret)
    assert len(adobe.listed(created.value)) == 2  # the refused add made nothing


def test_delete_by_uuid_and_a_deleted_uuid_counts_as_deleted(adobe: AdobeSide) -> None:
    created = adobe.api.add_secret(adobe.ref, adobe.first_secret)
    adobe.api.verify(adobe.ref, created.value)

    adobe.api.delete_secret(adobe.ref, created.value, adobe.first_uuid)
    adobe.api.delete_secret(adobe.ref, created.value, adobe.first_uuid)  # already gone: fine

    assert list(adobe.listed(created.value)) == [created.uuid]


def test_a_deleted_secret_mints_nothing(adobe: AdobeSide) -> None:
    created = adobe.api.add_secret(adobe.ref, adobe.first_secret)
    adobe.api.verify(adobe.ref, created.value)
    adobe.api.delete_secret(adobe.ref, created.value, adobe.first_uuid)

    with pytest.raises(InvalidClient):
        adobe.api.verify(adobe.ref, adobe.first_secret)
    with pytest.raises(InvalidClient):
        adobe.api.verify(adobe.ref, "s-" + uuid.uuid4().hex)  # never a secret of this client
    adobe.api.verify(adobe.ref, created.value)  # the one that is left still mints


def test_only_a_mint_moves_last_used_at(adobe: AdobeSide) -> None:
    adobe.api.verify(adobe.ref, adobe.first_secret)  # a mint: a use
    minted = adobe.last_used(adobe.first_secret, adobe.first_uuid)
    assert minted is not None

    adobe.advance(HOUR)
    adobe.api.add_secret(adobe.ref, adobe.first_secret)  # list and add on the cached token
    assert adobe.last_used(adobe.first_secret, adobe.first_uuid) == minted, "not a mint"

    adobe.advance(HOUR)
    adobe.api.verify(adobe.ref, adobe.first_secret)  # a test token is always a fresh mint
    again = adobe.last_used(adobe.first_secret, adobe.first_uuid)
    assert again is not None and again - minted >= 2 * HOUR - timedelta(seconds=5)


def test_invalidated_tokens_make_the_next_call_mint(adobe: AdobeSide) -> None:
    adobe.api.verify(adobe.ref, adobe.first_secret)
    before = adobe.last_used(adobe.first_secret, adobe.first_uuid)
    assert before is not None

    assert adobe.api.invalidate_tokens(adobe.ref, adobe.first_secret) >= 1
    assert adobe.api.invalidate_tokens(adobe.ref, adobe.first_secret) == 0  # none left

    adobe.advance(HOUR)
    after = adobe.last_used(adobe.first_secret, adobe.first_uuid)  # this list had to mint
    assert after is not None and after - before >= HOUR - timedelta(seconds=5)


# --- AWS Secrets Manager -------------------------------------------------------------------

FIRST = {"client_secret": "s-first", "consumer_setting": "kept"}


@dataclass
class AwsSide:
    """One `SecretsStore` with a secret whose first version holds FIRST under AWSCURRENT."""

    store: SecretsStore
    secret_id: str
    first_version: str

    def labels(self) -> dict[str, set[str]]:
        """version id -> its labels, for the versions that have one."""
        return {v: set(ls) for v, ls in self.store.stages(self.secret_id).items() if ls}

    def promote(self, token: str, value: dict[str, str], *, from_version: str) -> None:
        """The engine's three writes: put AWSPENDING, move AWSCURRENT, remove AWSPENDING."""
        self.store.put_pending(self.secret_id, token, value)
        self.store.move_stage(self.secret_id, CURRENT, to_version=token, from_version=from_version)
        self.store.move_stage(self.secret_id, PENDING, to_version=None, from_version=token)


@pytest.fixture(params=["fake", "moto"])
def aws(request: pytest.FixtureRequest) -> AwsSide:
    """The in-memory fake, then the real adapter against moto's server."""
    secret_id = f"adobe/conformance-{uuid.uuid4().hex[:8]}"
    if request.param == "fake":
        fake = FakeAws(secret_id)
        return AwsSide(fake, secret_id, fake.seed(FIRST))
    local: LocalAws = request.getfixturevalue("local_aws")
    sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=local.endpoint_url)
    made = sm.create_secret(Name=secret_id, SecretString=json.dumps(FIRST))
    store = AwsSecrets(region="us-east-1", endpoint_url=local.endpoint_url)
    return AwsSide(store, secret_id, made["VersionId"])


def _token() -> str:
    return uuid.uuid4().hex  # 32 characters: a ClientRequestToken AWS takes


def test_read_by_stage_and_by_version(aws: AwsSide) -> None:
    current = aws.store.read(aws.secret_id)
    assert current is not None
    assert (current.version_id, current.value) == (aws.first_version, FIRST)
    assert CURRENT in current.stages

    by_version = aws.store.read(aws.secret_id, version_id=aws.first_version)
    assert by_version is not None and by_version.value == FIRST
    assert aws.store.read(aws.secret_id, stage=PENDING) is None  # no such label: None
    assert aws.store.read(aws.secret_id, stage=PREVIOUS) is None
    assert aws.store.read(aws.secret_id, version_id=_token()) is None  # no such version
    assert aws.labels() == {aws.first_version: {CURRENT}}


def test_a_missing_secret_is_not_found(aws: AwsSide) -> None:
    missing = f"adobe/missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(NotFound):
        aws.store.read(missing)
    with pytest.raises(NotFound):
        aws.store.stages(missing)


def test_put_pending_labels_the_tokens_version_and_repeats_harmlessly(aws: AwsSide) -> None:
    token, value = _token(), {"client_secret": "s-new", "consumer_setting": "kept"}

    aws.store.put_pending(aws.secret_id, token, value)
    aws.store.put_pending(aws.secret_id, token, value)  # a retry after a lost answer

    assert aws.labels() == {aws.first_version: {CURRENT}, token: {PENDING}}
    pending = aws.store.read(aws.secret_id, stage=PENDING)
    assert pending is not None and (pending.version_id, pending.value) == (token, value)
    current = aws.store.read(aws.secret_id)
    assert current is not None and current.value == FIRST  # AWSCURRENT untouched


def test_awsprevious_follows_awscurrent(aws: AwsSide) -> None:
    first_token, second_token = _token(), _token()
    second = {"client_secret": "s-second", "consumer_setting": "kept"}
    third = {"client_secret": "s-third", "consumer_setting": "kept"}

    aws.promote(first_token, second, from_version=aws.first_version)

    assert aws.labels() == {first_token: {CURRENT}, aws.first_version: {PREVIOUS}}
    previous = aws.store.read(aws.secret_id, stage=PREVIOUS)
    assert previous is not None and previous.value == FIRST

    aws.promote(second_token, third, from_version=first_token)

    assert aws.labels() == {second_token: {CURRENT}, first_token: {PREVIOUS}}
    current = aws.store.read(aws.secret_id)
    assert current is not None and current.value == third
    oldest = aws.store.read(aws.secret_id, version_id=aws.first_version)
    assert oldest is not None and oldest.value == FIRST and not oldest.stages


def test_moving_awscurrent_must_name_its_holder(aws: AwsSide) -> None:
    token = _token()
    aws.store.put_pending(aws.secret_id, token, {"client_secret": "s-new"})

    with pytest.raises(PermanentError):  # RemoveFromVersionId missing
        aws.store.move_stage(aws.secret_id, CURRENT, to_version=token, from_version=None)
    with pytest.raises(PermanentError):  # RemoveFromVersionId names a version without it
        aws.store.move_stage(aws.secret_id, CURRENT, to_version=token, from_version=token)

    assert aws.labels() == {aws.first_version: {CURRENT}, token: {PENDING}}


def test_a_version_is_immutable(aws: AwsSide) -> None:
    token, value = _token(), {"client_secret": "s-new", "consumer_setting": "kept"}
    aws.promote(token, value, from_version=aws.first_version)

    with pytest.raises(PermanentError):  # the same token with another value
        aws.store.put_pending(aws.secret_id, token, {"client_secret": "s-other"})

    kept = aws.store.read(aws.secret_id, version_id=token)
    assert kept is not None and kept.value == value and CURRENT in kept.stages


def test_the_fake_refuses_what_aws_refuses_and_moto_lets_through() -> None:
    """Stricter than moto, as AWS is (moto's leniencies 1 and 3 in the reference): these
    are checked on the fake alone, since moto would pass a wrong call."""
    fake = FakeAws("adobe/strict")
    first = fake.seed(FIRST)
    token, other = _token(), _token()
    fake.put_pending("adobe/strict", token, {"client_secret": "s-new"})

    with pytest.raises(PermanentError):  # moto overwrites a PENDING version's value
        fake.put_pending("adobe/strict", token, {"client_secret": "s-changed"})
    fake.put_pending("adobe/strict", other, {"client_secret": "s-other"})  # PENDING moves
    with pytest.raises(PermanentError):  # moto leaves AWSPENDING on two versions
        fake.move_stage("adobe/strict", PENDING, to_version=token, from_version=None)
    with pytest.raises(PermanentError):  # a label taken from a version that lacks it
        fake.move_stage("adobe/strict", PENDING, to_version=None, from_version=first)

    assert fake.stages("adobe/strict") == {first: (CURRENT,), other: (PENDING,)}
