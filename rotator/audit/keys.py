"""Secret key material kept outside the database: the audit chain's HMAC keys, webhook
signing secrets.

A key is read from exactly one place: an AWS Secrets Manager secret (named in the config),
a file, or an environment variable, and is known by an id that is safe to record (the id
goes into the database next to what it signed, so the key itself can be rotated). The
material is registered with the redactor the moment it is read, and it never appears in a
repr, a log line or an error message: errors name the key id and where it was looked for.

boto3 is imported only when a key actually lives in AWS, so commands that need no key pay
nothing for this module.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rotator import redaction
from rotator.domain.errors import ConfigError
from rotator.hardening import require_private

MIN_KEY_BYTES = 16  # an HMAC key shorter than this is a password, not a key


@dataclass(frozen=True)
class Key:
    """Key material and the id it is recorded under. `repr` never shows the material."""

    id: str
    material: bytes = field(repr=False)

    def __str__(self) -> str:
        return f"key {self.id!r}"


@dataclass(frozen=True)
class KeySource:
    """Where one key lives: set exactly one of `aws_secret`, `file`, `env`.

    - `aws_secret`: a Secrets Manager name or ARN; its SecretString (or SecretBinary) is
      the key, or with `json_key` the string at that key of its JSON object.
    - `file`: the file's bytes, one trailing newline removed.
    - `env`: the environment variable's value.
    """

    id: str
    aws_secret: str = ""
    json_key: str = ""
    file: str = ""
    env: str = ""

    def __post_init__(self) -> None:
        places = [p for p in (self.aws_secret, self.file, self.env) if p]
        if not self.id.strip():
            raise ConfigError("key id must not be empty")
        if len(places) != 1:
            raise ConfigError(
                f"key {self.id!r}: set exactly one of aws_secret, file, env (got {len(places)})"
            )

    @property
    def where(self) -> str:
        """Where the key is read from, safe to print."""
        if self.aws_secret:
            suffix = f" (JSON key {self.json_key!r})" if self.json_key else ""
            return f"AWS secret {self.aws_secret!r}{suffix}"
        if self.file:
            return f"file {self.file}"
        return f"environment variable {self.env}"

    def load(
        self,
        *,
        region: str = "us-east-1",
        endpoint_url: str = "",
        client: Any = None,
        min_bytes: int = MIN_KEY_BYTES,
    ) -> Key:
        """Read the key now. Raises ConfigError naming the id and the place, never the value."""
        if self.aws_secret:
            material = self._from_aws(client or _secrets_client(region, endpoint_url))
        elif self.file:
            material = self._from_file()
        else:
            material = self._from_env()
        if len(material) < min_bytes:
            raise ConfigError(
                f"key {self.id!r} from {self.where}: too short "
                f"({len(material)} bytes; at least {min_bytes})"
            )
        _register(material)
        return Key(self.id, material)

    def _from_file(self) -> bytes:
        require_private(self.file, f"key {self.id!r}")
        try:
            data = Path(self.file).read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"key {self.id!r}: cannot read {self.where}: {exc.strerror or type(exc).__name__}"
            ) from None
        return data.removesuffix(b"\n").removesuffix(b"\r")

    def _from_env(self) -> bytes:
        value = os.environ.get(self.env)
        if not value:
            raise ConfigError(f"key {self.id!r}: {self.where} is not set or empty")
        return value.encode()

    def _from_aws(self, client: Any) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = client.get_secret_value(SecretId=self.aws_secret)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise ConfigError(f"key {self.id!r}: cannot read {self.where}: AWS {code}") from None
        except BotoCoreError as exc:
            raise ConfigError(
                f"key {self.id!r}: cannot read {self.where}: AWS unreachable ({type(exc).__name__})"
            ) from None
        text = answer.get("SecretString")
        if text is None:
            return bytes(answer.get("SecretBinary") or b"")
        if not self.json_key:
            return str(text).encode()
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if not isinstance(value, dict) or not isinstance(value.get(self.json_key), str):
            raise ConfigError(
                f"key {self.id!r}: {self.where} is not a JSON object with that string key"
            )
        # Register the whole value's strings: they are all secret material.
        redaction.register(*(v for v in value.values() if isinstance(v, str)))
        return str(value[self.json_key]).encode()


def _secrets_client(region: str, endpoint_url: str) -> Any:
    import boto3

    return boto3.session.Session().client(
        "secretsmanager", region_name=region, endpoint_url=endpoint_url or None
    )


def _register(material: bytes) -> None:
    """Every printable form of the key is masked in any later output."""
    with contextlib.suppress(UnicodeDecodeError):  # binary keys have no text form
        redaction.register(material.decode())
    redaction.register(material.hex(), base64.b64encode(material).decode())


def load_all(
    sources: tuple[KeySource, ...] | list[KeySource],
    *,
    region: str = "us-east-1",
    endpoint_url: str = "",
    client: Any = None,
) -> dict[str, Key]:
    """Every key by id (one AWS client shared among them); ids must be unique."""
    keys: dict[str, Key] = {}
    aws = client
    for source in sources:
        if source.id in keys:
            raise ConfigError(f"key id {source.id!r} is listed twice")
        if source.aws_secret and aws is None:
            aws = _secrets_client(region, endpoint_url)
        keys[source.id] = source.load(client=aws)
    return keys


# --- Ed25519: the audit chain's writer keys (issue 27) -----------------------------------


def check_private_file(path: Path, what: str) -> None:
    """Refuse a private key file that group or others may read or write (as ssh does)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise ConfigError(
            f"{what}: {path} is accessible by group or others (mode {mode & 0o777:04o}); "
            f"run: chmod 600 {path}"
        )


def generate_signing_key(path: Path) -> Any:
    """Write a new Ed25519 private key (PKCS#8 PEM, mode 0600, never over an existing file)
    and return its public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} exists: refusing to overwrite a key") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    return key.public_key()


def keyring_entry(
    key_id: str, public_key: Any, roles: tuple[str, ...], valid_from: str | None = None
) -> str:
    """The TOML lines that list a public key in the keyring file."""
    from rotator.audit.signing import public_key_text

    lines = [
        f'[keys."{key_id}"]',
        f'public_key = "{public_key_text(public_key)}"',
        "roles = [" + ", ".join(f'"{r}"' for r in roles) + "]",
    ]
    if valid_from:
        lines.append(f"valid_from = {valid_from}")
    return "\n".join(lines) + "\n"


def load_keyring(path: Path) -> dict[str, Any]:
    """The public keyring file: `[keys.<id>]` tables with `public_key` (base64 of 32
    bytes), optional `roles` (operator, daemon; default both) and `valid_from` /
    `valid_until` (TOML datetimes with a zone). Every error names the file and the key."""
    import tomllib
    from datetime import datetime

    from rotator.audit.signing import ROLES, PublicKey, parse_public_key

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"[audit] keyring: cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"[audit] keyring: {path}: {exc}") from None
    entries = data.get("keys")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"[audit] keyring: {path} lists no [keys.<id>] table")
    found: dict[str, PublicKey] = {}
    for key_id, entry in entries.items():
        where = f"[audit] keyring: {path}: keys.{key_id}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: not a table")
        unknown = set(entry) - {"public_key", "roles", "valid_from", "valid_until"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            public = parse_public_key(str(entry.get("public_key", "")))
        except ValueError as exc:
            raise ConfigError(f"{where}: public_key: {exc}") from None
        roles = entry.get("roles", sorted(ROLES))
        if not isinstance(roles, list) or not roles or not set(roles) <= ROLES:
            raise ConfigError(f"{where}: roles must be a non-empty list of {sorted(ROLES)}")
        bounds: list[datetime | None] = []
        for name in ("valid_from", "valid_until"):
            value = entry.get(name)
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise ConfigError(f"{where}: {name} must be a TOML datetime with a zone")
            bounds.append(value)
        found[key_id] = PublicKey(key_id, public, frozenset(roles), bounds[0], bounds[1])
    return found


def load_signer(path: Path, public: dict[str, Any]) -> Any:
    """This writer's private key, known by the id the keyring lists its public key under."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from rotator.audit.signing import Signer, public_key_text

    what = "[audit] signing_key"
    check_private_file(path, what)
    try:
        pem = path.read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError):
        raise ConfigError(f"{what}: {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{what}: {path} is not an Ed25519 key")
    body = b"".join(line for line in pem.splitlines() if line and not line.startswith(b"-----"))
    _register(body)  # the PEM's base64 body is the key material as it would leak
    mine = public_key_text(key.public_key())
    for key_id, listed in public.items():
        if public_key_text(listed.key) == mine:
            return Signer(key_id, key)
    raise ConfigError(
        f"{what}: the public key of {path} ({mine}) is not in the [audit] keyring: add it"
    )
