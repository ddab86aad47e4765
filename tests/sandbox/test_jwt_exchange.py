"""POST /ims/exchange/jwt: the legacy Service Account flow, verified against the binding."""

from __future__ import annotations

import datetime
import time
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from rotator.devkit.sandbox import CreatedCredential, SandboxAdmin, SandboxAdminError, SandboxServer
from rotator.devkit.sandbox.rs256 import b64url_encode
from rotator.devkit.sandbox.testing import generate_rsa_key_pair, jwt_for

from .conftest import Adobe


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_rsa_key_pair()


@pytest.fixture
def jwt_cred(admin: SandboxAdmin, keys: tuple[str, str]) -> CreatedCredential:
    return admin.create_credential(public_keys=[keys[1]])


def exchange(
    http: httpx.Client, cred: CreatedCredential, jwt_token: str, secret: str | None = None
) -> httpx.Response:
    assert cred.secret is not None
    form = {
        "client_id": cred.client_id,
        "client_secret": secret or cred.secret.client_secret,
        "jwt_token": jwt_token,
    }
    return http.post("/ims/exchange/jwt", data=form)


def make_jwt(cred: CreatedCredential, private_pem: str, **kw: Any) -> str:
    return jwt_for(
        private_key_pem=private_pem,
        client_id=cred.client_id,
        ims_org_id=cred.ims_org_id,
        technical_account_id=cred.technical_account_id,
        **kw,
    )


def test_a_well_formed_jwt_is_exchanged_for_a_working_token(
    http: httpx.Client, jwt_cred: CreatedCredential, keys: tuple[str, str], admin: SandboxAdmin
) -> None:
    response = exchange(http, jwt_cred, make_jwt(jwt_cred, keys[0]))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 86399
    assert jwt_cred.secret is not None
    adobe = Adobe(http, jwt_cred)
    [entry] = adobe.entries(body["access_token"])
    assert entry["secret_usages"][0]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"


def test_the_audience_may_name_the_sandbox_itself(
    http: httpx.Client, jwt_cred: CreatedCredential, keys: tuple[str, str], sandbox: SandboxServer
) -> None:
    token = make_jwt(jwt_cred, keys[0], ims_url=sandbox.url)
    assert exchange(http, jwt_cred, token).status_code == 200


def test_a_certificate_binding_verifies_too(
    http: httpx.Client, admin: SandboxAdmin, keys: tuple[str, str]
) -> None:
    private = serialization.load_pem_private_key(keys[0].encode(), password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandbox")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())  # type: ignore[arg-type]
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())  # type: ignore[arg-type]
    )
    cred = admin.create_credential()
    admin.add_public_key(cred.credential_id, cert.public_bytes(serialization.Encoding.PEM).decode())
    assert exchange(http, cred, make_jwt(cred, keys[0])).status_code == 200


def test_a_jwt_signed_by_another_key_is_invalid_signature(
    http: httpx.Client, jwt_cred: CreatedCredential
) -> None:
    other_private, _ = generate_rsa_key_pair(1024)
    response = exchange(http, jwt_cred, make_jwt(jwt_cred, other_private))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_signature"


def test_a_credential_without_a_binding_cannot_exchange(
    http: httpx.Client, cred: CreatedCredential, keys: tuple[str, str]
) -> None:
    response = exchange(http, cred, make_jwt(cred, keys[0]))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_signature")


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"exp": int(time.time()) - 5}, "invalid_token"),
        ({"exp": int(time.time()) + 25 * 3600}, "invalid_token"),
        ({"exp": "soon"}, "invalid_token"),
        ({"iss": "SOMEONE@AdobeOrg"}, "invalid_token"),
        ({"sub": "SOMEONE@techacct.adobe.com"}, "invalid_token"),
        ({"aud": "https://ims-na1.adobelogin.com/c/other"}, "invalid_token"),
        ({"https://ims-na1.adobelogin.com/s/ent_adobeio_sdk": False}, "invalid_scope"),
    ],
)
def test_claims_that_do_not_fit_the_credential_are_refused(
    http: httpx.Client,
    jwt_cred: CreatedCredential,
    keys: tuple[str, str],
    claims: dict[str, Any],
    error: str,
) -> None:
    response = exchange(http, jwt_cred, make_jwt(jwt_cred, keys[0], extra=claims))
    assert (response.status_code, response.json()["error"]) == (400, error)


def test_a_metascope_the_credential_lacks_is_invalid_scope(
    http: httpx.Client, jwt_cred: CreatedCredential, keys: tuple[str, str]
) -> None:
    token = make_jwt(jwt_cred, keys[0], meta_scopes=("ent_analytics_bulk_ingest_sdk",))
    response = exchange(http, jwt_cred, token)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")


@pytest.mark.parametrize("jwt_token", ["not-a-jwt", "a.b.c"])
def test_garbage_is_invalid_token(
    http: httpx.Client, jwt_cred: CreatedCredential, jwt_token: str
) -> None:
    response = exchange(http, jwt_cred, jwt_token)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_token")


def test_only_rs256_is_accepted(
    http: httpx.Client, jwt_cred: CreatedCredential, keys: tuple[str, str]
) -> None:
    _, payload, signature = make_jwt(jwt_cred, keys[0]).split(".")
    header = b64url_encode(b'{"alg":"none","typ":"JWT"}')
    response = exchange(http, jwt_cred, f"{header}.{payload}.{signature}")
    assert (response.status_code, response.json()["error"]) == (400, "invalid_token")


def test_a_missing_jwt_is_bad_request_and_a_wrong_secret_invalid_client(
    http: httpx.Client, jwt_cred: CreatedCredential, keys: tuple[str, str]
) -> None:
    assert exchange(http, jwt_cred, "").json()["error"] == "bad_request"
    response = exchange(http, jwt_cred, make_jwt(jwt_cred, keys[0]), secret="p8e-wrong")
    assert (response.status_code, response.json()) == (
        400,
        {"error": "invalid_client", "error_description": "invalid client_secret parameter"},
    )


def test_a_bad_binding_is_refused_at_registration(
    admin: SandboxAdmin, cred: CreatedCredential
) -> None:
    with pytest.raises(SandboxAdminError) as caught:
        admin.add_public_key(cred.credential_id, "-----BEGIN PUBLIC KEY-----\nnope\n")
    assert caught.value.status == 422
