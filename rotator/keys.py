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
