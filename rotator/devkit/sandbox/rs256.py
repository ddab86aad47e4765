"""RS256 JSON Web Tokens for the legacy Service Account (JWT) exchange.

Kept by hand, on ``cryptography``'s RSA primitives, rather than PyJWT or joserfc (weighed
for issue 28): the sandbox is a test stand-in, not the product, and a JWT library would
not shorten it. It must answer IMS's two error codes (``invalid_token`` for anything
malformed or not RS256, ``invalid_signature`` when none of the credential's several bound
keys signed it), which either library reports as a spread of its own exception types to
map back; it must accept an X.509 certificate as a binding, as Adobe's Console does; and
it fabricates tokens with hand-made headers and parts (ims.py) with the same base64url
helpers, which would stay anyway. Claims (exp, iss, aud...) are the caller's. The
signing half exists for tests and demos that play the part of a JWT integration.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "JWTError",
    "b64url_decode",
    "b64url_encode",
    "generate_rsa_key_pair",
    "load_public_key",
    "sign_rs256",
    "verify_rs256",
]


class JWTError(Exception):
    """A JWT was refused; ``error`` is the IMS error code to answer with."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def b64url_encode(data: bytes) -> str:
    """Base64url without padding, as JWS requires."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; raises ``ValueError`` on garbage."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("not base64url") from exc


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """Accept what Adobe's Console accepts (an X.509 certificate) or a bare public key."""
    data = pem.encode("ascii", errors="replace")
    key: object
    try:
        if b"BEGIN CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError("not a PEM public key or certificate") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("only RSA keys can verify RS256")
    return key


def _json_part(text: str) -> dict[str, Any]:
    value = json.loads(b64url_decode(text))
    if not isinstance(value, dict):
        raise ValueError("JWT part is not a JSON object")
    return value


def verify_rs256(
    token: str, keys: Sequence[rsa.RSAPublicKey]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (header, claims) if any of ``keys`` signed ``token``; else raise JWTError.

    Claims are not checked here: their meaning (exp, iss, aud...) belongs to the caller.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise JWTError("invalid_token", "JWT is not in compact serialization")
    try:
        header = _json_part(parts[0])
        claims = _json_part(parts[1])
        signature = b64url_decode(parts[2])
    except ValueError as exc:
        raise JWTError("invalid_token", "JWT could not be decoded") from exc
    if header.get("alg") != "RS256":
        raise JWTError("invalid_token", "JWT must be signed with RS256")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    for key in keys:
        try:
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        return header, claims
    raise JWTError("invalid_signature", "Could not match JWT signature to any of the bindings")


def sign_rs256(claims: Mapping[str, Any], private_key_pem: str) -> str:
    """Sign ``claims`` the way an Adobe JWT integration does (RS256, typ JWT)."""
    key = serialization.load_pem_private_key(private_key_pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("RS256 needs an RSA private key")
    header = b64url_encode(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = b64url_encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{b64url_encode(signature)}"


def generate_rsa_key_pair(bits: int = 2048) -> tuple[str, str]:
    """A fresh (private PEM, public PEM) pair, for tests that register a JWT binding."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return private_pem, public_pem
