"""Issue 11 finding 4: success is judged by content, and no answer's body reaches error text.

An add answered 202 (or any 2xx) with the new secret in its body is a success; an answer
of a shape rotator does not expect fails with a message that quotes no body, and every
field named like a secret or token is masked wherever it might show up later.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

import httpx
import pytest

from rotator import redaction
from rotator.adapters.adobe import AdobeClient
from rotator.domain.errors import StepError
from rotator.ports import CredentialRef

IMS, API = "https://ims.test", "https://api.test"
CRED = CredentialRef(name="analytics", org_id="1234", credential_id="5678", client_id="cid-abc")
SECRETS_PATH = "/console/organizations/1234/credentials/5678/secrets"


def _client(
    answer: Callable[[httpx.Request], httpx.Response], token_status: int = 200
) -> AdobeClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ims/token/v3":
            token = "tok-" + secrets.token_hex(16)
            return httpx.Response(
                token_status,
                json={"access_token": token, "token_type": "bearer", "expires_in": 86399},
            )
        return answer(request)

    return AdobeClient(IMS, API, transport=httpx.MockTransport(handler), sleep=lambda _: None)


@pytest.mark.parametrize("status", [200, 201, 202])
def test_an_add_answered_with_any_2xx_and_the_expected_fields_is_a_success(status: int) -> None:
    value, uuid = "p8e-" + secrets.token_hex(16), secrets.token_hex(16)
    body = {"uuid": uuid, "client_secret": value, "created_at": "1700000000000"}
    client = _client(lambda r: httpx.Response(status, json=body))

    made = client.add_secret(CRED, "p8e-" + secrets.token_hex(16))

    assert (made.uuid, made.value) == (uuid, value)


@pytest.mark.parametrize(
    "status,shape",
    [
        (202, {"status": "accepted", "client_secret": None, "secret": "VALUE"}),
        (200, {"client_secret": "VALUE"}),  # no uuid
        (299, {"result": {"clientSecret": "VALUE", "id": "x"}}),
        (302, {"location": "elsewhere", "client_secret": "VALUE"}),
        (418, {"unexpected": {"access_token": "VALUE"}}),
    ],
)
def test_an_unexpected_answer_fails_without_quoting_its_body(status: int, shape: object) -> None:
    value = "p8e-" + secrets.token_hex(16)
    body = json.loads(json.dumps(shape).replace("VALUE", value))
    client = _client(lambda r: httpx.Response(status, json=body))

    with pytest.raises(StepError) as caught:
        client.add_secret(CRED, "p8e-" + secrets.token_hex(16))

    message = str(caught.value)
    assert value not in message
    assert value not in redaction.redact(f"later, a log line quoting {value}")


def test_a_token_answered_202_is_a_token() -> None:
    client = _client(lambda r: httpx.Response(200, json={"client_secrets": []}), token_status=202)
    assert client.list_secrets(CRED, "p8e-" + secrets.token_hex(16)) == []


def test_an_error_that_is_not_json_is_described_not_quoted() -> None:
    leaked = "p8e-" + secrets.token_hex(16)
    page = f"<html><body>upstream said client_secret={leaked}</body></html>"
    client = _client(
        lambda r: httpx.Response(400, text=page, headers={"content-type": "text/html"})
    )

    with pytest.raises(StepError) as caught:
        client.list_secrets(CRED, "p8e-" + secrets.token_hex(16))

    assert leaked not in str(caught.value)
    assert "upstream said" not in str(caught.value)


# --- issue 26: times and uuids as Adobe might spell them ------------------------------------


def _listed(*entries: dict[str, object]) -> AdobeClient:
    body = {"client_id": CRED.client_id, "client_secrets": list(entries)}
    return _client(lambda r: httpx.Response(200, json=body))


@pytest.mark.parametrize(
    "raw",
    [
        "1683162010101",  # what Adobe documents: a string of milliseconds
        1683162010101,
        "1683162010",  # seconds: read as milliseconds on fae5c9a, i.e. 20 Jan 1970
        1683162010,
        1683162010.101,
        "2023-05-04T01:00:10Z",  # ISO 8601: failed the whole list on fae5c9a
        "2023-05-04T01:00:10.101+00:00",
        "2023-05-04T03:00:10+02:00",
        "2023-05-04T01:00:10",  # no offset: UTC
    ],
)
def test_a_last_use_in_seconds_or_iso_is_read_as_that_moment(raw: object) -> None:
    entry = {"uuid": "a" * 32, "created_at": "1682448485000"}
    client = _listed({**entry, "secret_usages": [{"last_used_at": raw}]})

    [secret] = client.list_secrets(CRED, "p8e-" + secrets.token_hex(16))

    assert secret.last_used_at is not None
    assert abs(secret.last_used_at.timestamp() - 1683162010.101) < 1
    assert secret.last_used_at.tzinfo is not None


@pytest.mark.parametrize("raw", ["yesterday", "", "NaN", True, {"ms": 1}])
def test_a_time_that_is_no_time_refuses_the_answer_rather_than_guess(raw: object) -> None:
    """A secret whose last use cannot be read is never taken as unused: the list fails
    (malformed) and the engine retries; no value from the body is quoted."""
    entry = {"uuid": "a" * 32, "created_at": "1682448485000"}
    client = _listed({**entry, "secret_usages": [{"last_used_at": raw}]})

    with pytest.raises(StepError, match=r"malformed answer from Adobe: .*last_used_at"):
        client.list_secrets(CRED, "p8e-" + secrets.token_hex(16))


def test_uuids_in_any_spelling_are_adobes_own() -> None:
    """On fae5c9a an upper-case or hyphenated uuid was another secret than the same uuid
    recorded in AWS or named by an operator."""
    client = _listed(
        {"uuid": "11EDE399-B68B-57A5-ACA6-A96B8B6487C9", "created_at": "1682448485000"},
        {"uuid": " 11ede8ab42f138f3abe335d886a407fb ", "created_at": "1682448485000"},
    )

    listed = client.list_secrets(CRED, "p8e-" + secrets.token_hex(16))

    assert [s.uuid for s in listed] == [
        "11ede399b68b57a5aca6a96b8b6487c9",
        "11ede8ab42f138f3abe335d886a407fb",
    ]
