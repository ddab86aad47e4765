"""TOML -> validated, frozen settings. Every error names the file, the key and what is wrong.

The sections and the text forms of their values are in rotator/config_schema.py; this module
reads the file, applies what the environment overrides, and gives the whole as `Settings`,
which answers the questions the rest of rotator asks (a credential's policy, schedule,
window). The schema's names are importable from here, as before.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from rotator.config_schema import (
    AdobeConfig,
    AuditConfig,
    AwsConfig,
    CredentialConfig,
    DaemonConfig,
    DatabaseConfig,
    Duration,
    KeySourceConfig,
    NotificationsConfig,
    PolicyConfig,
    Section,
    WebhookConfig,
    parse_duration,
    parse_window,
    require_tls,
)
from rotator.domain.errors import ConfigError
from rotator.domain.model import Policy
from rotator.domain.policy import Window

__all__ = [
    "AWS_ENDPOINT_VARIABLES",
    "AdobeConfig",
    "AuditConfig",
    "AwsConfig",
    "CredentialConfig",
    "DaemonConfig",
    "DatabaseConfig",
    "Duration",
    "KeySourceConfig",
    "NotificationsConfig",
    "PolicyConfig",
    "Settings",
    "WebhookConfig",
    "check_aws_endpoint_variables",
    "default_path",
    "from_mapping",
    "load",
    "parse_duration",
    "parse_window",
    "require_tls",
    "resolve_sqlite",
]


# botocore reads these (the general one and the per-service ones rotator's clients use)
# and sends the secret values to whatever they name: they pass the same TLS rule.
AWS_ENDPOINT_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_S3",
)


def check_aws_endpoint_variables(environ: Mapping[str, str] | None = None) -> None:
    """ConfigError (exit 2, one line) for an AWS endpoint variable that is not https and
    not loopback: `[aws] endpoint_url` is checked, and the environment must not bypass it."""
    environ = os.environ if environ is None else environ
    for name in AWS_ENDPOINT_VARIABLES:
        if value := environ.get(name, "").strip():
            try:
                if not re.match(r"^https?://[^\s/]+", value):
                    raise ValueError(f"{value!r} is not an http(s) URL")
                require_tls(value)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None


class Settings(Section):
    """The whole config, validated; and the answers the rest of rotator reads from it
    (a credential's policy, keys, schedule and window: its own value, or [defaults])."""

    database: DatabaseConfig = DatabaseConfig()
    adobe: AdobeConfig = AdobeConfig()
    aws: AwsConfig = AwsConfig()
    defaults: PolicyConfig = PolicyConfig()
    daemon: DaemonConfig = DaemonConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    audit: AuditConfig = AuditConfig()
    credentials: tuple[CredentialConfig, ...] = ()
    source: str = Field(default="<memory>", exclude=True)

    @model_validator(mode="after")
    def _unique(self) -> Settings:
        """Two entries naming one Adobe credential or one AWS secret would fight: each
        rotation would delete or overwrite the secret the other just published."""
        seen: dict[tuple[str, str], int] = {}
        for index, cred in enumerate(self.credentials):
            for what, key in (
                ("name", cred.name),
                ("org_id+credential_id", f"{cred.org_id}/{cred.credential_id}"),
                ("client_id", cred.client_id),
                ("secret_id", _secret_name(cred.secret_id)),
            ):
                if (what, key) in seen:
                    raise ValueError(
                        f"credentials[{index}].{what} {key!r} repeats "
                        f"credentials[{seen[what, key]}] ({what} must be unique)"
                    )
                seen[what, key] = index
        return self

    def database_key(self) -> str:
        """Where `database.url` came from, for an error about it: the environment variable
        that replaced it, or the config file's key."""
        if os.environ.get("ROTATOR_DATABASE_URL", "").strip():
            return "ROTATOR_DATABASE_URL"
        return f"{self.source}: database.url"

    def credential(self, name: str) -> CredentialConfig:
        for cred in self.credentials:
            if cred.name == name:
                return cred
        known = ", ".join(c.name for c in self.credentials) or "none configured"
        raise ConfigError(f"{self.source}: unknown credential {name!r} (known: {known})")

    def policy(self, cred: CredentialConfig) -> Policy:
        merged = {k: v for k, v in self.defaults.model_dump().items() if v is not None}
        merged.update({k: v for k, v in cred.model_dump().items() if v is not None})
        fields = Policy.__dataclass_fields__
        return Policy(**{k: v for k, v in merged.items() if k in fields})

    def _pick(self, cred: CredentialConfig, key: str, default: str) -> str:
        value = getattr(cred, key) or getattr(self.defaults, key)
        return str(value) if value else default

    def secret_key(self, cred: CredentialConfig) -> str:
        return self._pick(cred, "secret_key", "client_secret")

    def uuid_key(self, cred: CredentialConfig) -> str:
        return self._pick(cred, "uuid_key", "secret_uuid")

    def schedule(self, cred: CredentialConfig) -> str | None:
        return cred.schedule or self.defaults.schedule

    def window(self, cred: CredentialConfig) -> Window | None:
        text = cred.window or self.defaults.window
        return parse_window(text) if text else None


def _secret_name(secret_id: str) -> str:
    """An AWS secret named by its ARN or its name: the name (the ARN adds a 6-character
    suffix after a dash)."""
    match = re.match(
        r"^arn:aws[\w-]*:secretsmanager:[^:]*:\d*:secret:(.+)-[A-Za-z0-9]{6}$", secret_id
    )
    return match[1] if match else secret_id


def resolve_sqlite(url: str, base: Path) -> str:
    """A relative SQLite path in `url`, made absolute against `base` (the config's folder)."""
    match = re.match(r"^(sqlite(?:\+\w+)?:///)([^?]*)(.*)$", url.strip())
    if not match:
        return url
    prefix, path, query = match.groups()
    if not path or path == ":memory:" or path.startswith(("/", "file:")):
        return url
    return f"{prefix}{(base / path).resolve()}{query}"


def default_path() -> Path:
    return Path(os.environ.get("ROTATOR_CONFIG") or "rotator.toml")


def load(path: str | Path | None = None) -> Settings:
    """Read and validate a config file; raise ConfigError with one line per problem."""
    path = Path(path) if path else default_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file (pass --config or set ROTATOR_CONFIG)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    database = raw.get("database")
    if isinstance(database, dict) and isinstance(database.get("url"), str):
        raw["database"] = {**database, "url": resolve_sqlite(database["url"], path.parent)}
    audit = raw.get("audit")
    checkpoints = audit.get("checkpoint_file") if isinstance(audit, dict) else None
    if isinstance(audit, dict) and isinstance(checkpoints, str) and checkpoints.strip():
        # Like a SQLite path: against the config's folder, so `audit verify` run from any
        # directory reads the same checkpoints the daemon writes.
        resolved = (path.parent / checkpoints.strip()).resolve()
        raw["audit"] = {**audit, "checkpoint_file": str(resolved)}
    return from_mapping(raw, source=str(path))


def from_mapping(raw: dict[str, Any], *, source: str = "<memory>") -> Settings:
    """Validate a parsed config. `ROTATOR_DATABASE_URL`, when set, replaces
    `[database] url` (a password kept in a Kubernetes Secret, say), used as given."""
    if override := os.environ.get("ROTATOR_DATABASE_URL", "").strip():
        database = raw.get("database")
        raw = {
            **raw,
            "database": {**(database if isinstance(database, dict) else {}), "url": override},
        }
    check_aws_endpoint_variables()
    try:
        return Settings.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, database_from_env=bool(override))) from None


def _describe(exc: ValidationError, source: str, *, database_from_env: bool = False) -> str:
    lines = []
    for error in exc.errors():
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        if database_from_env and key == "database.url":
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"ROTATOR_DATABASE_URL (environment, replaces database.url): {message}")
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and section)"
        elif error["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{source}: {key or '(top level)'}: {message}")
    return "; ".join(lines)  # one line, every problem
