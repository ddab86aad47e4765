"""The schema of rotator's TOML config: one pydantic model per section, each key typed and
checked, and the text forms its values take (durations, maintenance windows, URLs that must
use TLS). rotator/config.py loads a file into `Settings`, the whole config."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from datetime import time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rotator.audit.keys import KeySource
from rotator.domain.errors import ConfigError
from rotator.domain.events import NOTICES
from rotator.domain.policy import WEEKDAYS, Window

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CRED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def parse_duration(value: Any) -> timedelta:
    """'2s', '15m', '25h', '90d', '2w' (also '500ms'); a timedelta passes through."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    raise ValueError(f"invalid duration {value!r}: use a number and a unit, like 2s, 15m, 25h, 90d")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Section(BaseModel):
    """A table of the config: unknown keys are errors, and the values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(Section):
    """`url`: SQLite (one daemon) or PostgreSQL (replicas). `postgres://` and
    `postgresql://` mean the installed driver, psycopg. A relative SQLite path is resolved
    against the config file's directory (by `load`), never the working directory."""

    url: str = "sqlite:///rotator.db"
    # Bounded waits (issue 29; docs/operations.md "Bounded waits"): every wait on the
    # database ends, so a stuck session costs at most its timeout and the work is retried.
    # PostgreSQL, applied by rotator itself to each of its sessions:
    connect_timeout: Duration = timedelta(seconds=5)
    lock_timeout: Duration = timedelta(seconds=5)
    statement_timeout: Duration = timedelta(seconds=30)
    idle_in_transaction_timeout: Duration = timedelta(seconds=30)
    keepalives_idle: Duration = timedelta(seconds=10)
    keepalives_interval: Duration = timedelta(seconds=5)
    keepalives_count: int = Field(default=3, ge=1, le=100)
    tcp_user_timeout: Duration = timedelta(seconds=30)
    # SQLite: how long a writer waits for the file's lock, and a bounded WAL.
    busy_timeout: Duration = timedelta(seconds=15)
    journal_size_limit: int = Field(default=4 * 1024 * 1024, ge=0)
    wal_autocheckpoint: int = Field(default=1000, ge=1)
    # `rotator run` started while the database is away waits this long for it, logging.
    start_wait: Duration = timedelta(minutes=5)

    @field_validator(
        "connect_timeout",
        "lock_timeout",
        "statement_timeout",
        "idle_in_transaction_timeout",
        "keepalives_idle",
        "keepalives_interval",
        "tcp_user_timeout",
        "busy_timeout",
    )
    @classmethod
    def _bounded(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0s (a wait without a bound is the fault)")
        if value > timedelta(hours=1):
            raise ValueError("must be at most 1h")
        return value

    @field_validator("url")
    @classmethod
    def _driver(cls, value: str) -> str:
        scheme, sep, rest = value.strip().partition("://")
        if not sep:
            raise ValueError(
                "not a database URL (like sqlite:///rotator.db or postgresql://user@host/db)"
            )
        if scheme.partition("+")[0] not in ("sqlite", "postgres", "postgresql"):
            raise ValueError(
                f"unsupported database {scheme.partition('+')[0]!r}: rotator supports SQLite "
                f"(sqlite:///path/rotator.db) and PostgreSQL (postgresql://user@host/db)"
            )
        if scheme in ("postgres", "postgresql"):
            return f"postgresql+psycopg://{rest}"
        return value.strip()


class AdobeConfig(Section):
    ims_url: str = "https://ims-na1.adobelogin.com"
    api_url: str = "https://api.adobe.io"
    timeout: Duration = timedelta(seconds=15)
    # Tokens minted per second across all credentials (Adobe throttles integrations that mint
    # too many). 0 means unlimited.
    token_rate: float = Field(default=0, ge=0)

    @field_validator("ims_url", "api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return require_tls(value).rstrip("/")


class AwsConfig(Section):
    region: str = "us-east-1"
    endpoint_url: str = ""
    # PutSecretValue + UpdateSecretVersionStage share 50 requests/s per region at AWS.
    write_rate: float = Field(default=50, ge=0)

    @field_validator("endpoint_url")
    @classmethod
    def _tls(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return require_tls(value) if value else value


class PolicyConfig(Section):
    """Keys of [defaults]; each may be overridden per credential."""

    max_age: Duration | None = None
    quiet_period: Duration | None = None
    max_drain: Duration | None = None
    verify_timeout: Duration | None = None
    poll_interval: Duration | None = None
    failure_cooldown: Duration | None = None
    usage_lag: Duration | None = None
    prune_strays: bool | None = None
    schedule: str | None = None  # cron, five fields, UTC
    window: str | None = None  # "Mon-Fri 09:00-17:00" (UTC)
    secret_key: str | None = None
    uuid_key: str | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(value, timezone="UTC")
            except ValueError as exc:
                raise ValueError(f"invalid cron schedule {value!r}: {exc}") from None
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_window(value)
        return value


class CredentialConfig(PolicyConfig):
    name: str
    org_id: str
    credential_id: str
    client_id: str
    secret_id: str  # AWS Secrets Manager name or ARN

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _CRED_NAME.match(value):
            raise ValueError(f"{value!r} is not a valid name (letters, digits, . _ -)")
        return value

    @field_validator("org_id", "credential_id", "client_id", "secret_id", mode="before")
    @classmethod
    def _quoted(cls, value: Any, info: ValidationInfo) -> Any:
        """TOML reads `org_id = 100001` as a number: say what to write instead."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            what = "a quoted string of digits" if info.field_name == "org_id" else "a quoted string"
            raise ValueError(f'must be {what}, like {info.field_name} = "{value}" (not a number)')
        return value

    @field_validator("org_id", "credential_id", "client_id", "secret_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()


class DaemonConfig(Section):
    tick: Duration = timedelta(seconds=30)
    jitter: Duration = timedelta(seconds=3)
    workers: int = Field(default=16, ge=1, le=256)
    # How long a silent worker keeps a rotation: a crashed worker's rotation is taken over
    # about this long after its last renewal. The heartbeat renews it every third of it
    # while a step runs, and every irreversible write proves it first (rotator/engine/lease.py).
    lease: Duration = timedelta(seconds=10)
    # Leases follow progress (rotator/engine/lease.py): a step still running after this
    # long loses its lease (let go at once, taken over within `lease / 5`) and its worker
    # abandons without writing; /healthz fails while a worker stays blocked past it.
    # Unset: 2 minutes, or 3 leases when that is longer (`step_limit`).
    step_timeout: Duration | None = None
    # A graceful stop waits this long for the steps in flight, then exits anyway (their
    # saved state is correct: every step is safe to repeat).
    stop_timeout: Duration = timedelta(seconds=25)
    listen: str = "127.0.0.1:9477"

    @property
    def step_limit(self) -> timedelta:
        """The step timeout in force: `step_timeout`, or its default."""
        return self.step_timeout or max(timedelta(minutes=2), 3 * self.lease)

    @model_validator(mode="after")
    def _step_outlasts_lease(self) -> DaemonConfig:
        if self.step_timeout is not None and self.step_timeout <= self.lease:
            raise ValueError(
                f"daemon.step_timeout ({self.step_timeout}) must be longer than "
                f"daemon.lease ({self.lease})"
            )
        if self.stop_timeout <= timedelta(0):
            raise ValueError("daemon.stop_timeout must be longer than 0s")
        return self

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT")
        return value


class WebhookConfig(Section):
    url: str
    # The receiver's stable id: the outbox owes each notice to a name, so changing the URL
    # (a rotated token in it) keeps what is owed. Default: derived from the URL.
    name: str = ""
    events: tuple[str, ...] = ("completed", "failed", "needs_attention")
    timeout: Duration = timedelta(seconds=10)
    format: Literal["standard", "slack"] = "standard"
    secret: KeySourceConfig | None = None  # Standard Webhooks signing secret

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(NOTICES))
        if unknown:
            raise ValueError(f"unknown event(s) {unknown}; choose from {sorted(NOTICES)}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        import httpx  # here, not at the top: only a config with webhooks pays its import

        try:  # what the deliverer will build: a URL httpx refuses would fail every pass
            httpx.Request("POST", value)
        except (httpx.InvalidURL, UnicodeError) as exc:
            raise ValueError(f"not a URL httpx can send to ({type(exc).__name__})") from None
        return require_tls(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", value):
            raise ValueError(f"{value!r} is not a valid name (letters, digits, . _ : -)")
        return value

    @property
    def receiver(self) -> str:
        return self.name or "webhook-" + hashlib.sha256(self.url.encode()).hexdigest()[:12]


class NotificationsConfig(Section):
    webhooks: tuple[WebhookConfig, ...] = ()
    # A notice not acknowledged this long after its event is given up (and counted).
    delivery_expiry: Duration = timedelta(hours=24)
    # Retries back off exponentially from 1 s up to this, so a receiver that comes back
    # gets what it is owed within about this long.
    max_backoff: Duration = timedelta(minutes=1)

    @field_validator("webhooks")
    @classmethod
    def _unique(cls, value: tuple[WebhookConfig, ...]) -> tuple[WebhookConfig, ...]:
        names = [w.receiver for w in value]
        if len(set(names)) != len(names):
            raise ValueError(f"webhook names (or URLs) repeat: {names}")
        return value


class KeySourceConfig(Section):
    """Where one secret key lives (rotator.audit.keys.KeySource): exactly one of aws_secret
    (with an optional json_key), file, env. The id is recorded; the key never is."""

    id: str
    aws_secret: str = ""
    json_key: str = ""
    file: str = ""
    env: str = ""

    @model_validator(mode="after")
    def _one_place(self) -> KeySourceConfig:
        self.source()  # so pydantic names the key of a bad source
        return self

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", value):
            raise ValueError(f"{value!r} is not a valid key id (letters, digits, . _ : -)")
        return value

    def source(self) -> KeySource:
        try:
            return KeySource(self.id, self.aws_secret, self.json_key, self.file, self.env)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None


WebhookConfig.model_rebuild()  # its `secret` names KeySourceConfig, defined just above


class AuditConfig(Section):
    """[audit]: this writer's Ed25519 private key (`signing_key`) and the public keyring
    that verifies every writer's events (`keyring`; all `audit verify` and `report` need);
    the HMAC keys of events written before signing (`keys`: the first keeps linking new
    events only while no signing_key is set); where checkpoints of the chain head go."""

    signing_key: str = ""  # path of this writer's Ed25519 private key (PEM, mode 0600)
    keyring: str = ""  # path of the public keyring (TOML: [keys.<id>] public_key, roles)
    keys: tuple[KeySourceConfig, ...] = ()
    checkpoint_file: str = ""
    checkpoint_s3: str = ""  # s3://bucket/prefix: one object per checkpoint
    checkpoint_interval: Duration = timedelta(minutes=15)

    @field_validator("checkpoint_s3")
    @classmethod
    def _s3_uri(cls, value: str) -> str:
        if value and not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$", value):
            raise ValueError(f"{value!r} is not an s3://bucket[/prefix] URI")
        return value

    @model_validator(mode="after")
    def _signer_needs_keyring(self) -> AuditConfig:
        if self.signing_key and not self.keyring:
            raise ValueError("signing_key needs keyring (the public keyring that lists it)")
        return self

    @field_validator("keys")
    @classmethod
    def _unique_ids(cls, value: tuple[KeySourceConfig, ...]) -> tuple[KeySourceConfig, ...]:
        ids = [k.id for k in value]
        if len(set(ids)) != len(ids):
            raise ValueError(f"key ids repeat: {ids}")
        return value


def parse_window(text: str) -> Window:
    """'09:00-17:00' or 'Mon-Fri 09:00-17:00' or 'sat,sun 00:00-06:00', all UTC."""
    parts = text.split()
    if len(parts) not in (1, 2):
        raise ValueError(f"invalid window {text!r}: use like 'Mon-Fri 09:00-17:00' (UTC)")
    days = frozenset(range(7)) if len(parts) == 1 else _days(parts[0], text)
    match = _HOURS.match(parts[-1])
    if not match:
        raise ValueError(f"invalid window {text!r}: hours must be HH:MM-HH:MM (UTC)")
    start, end = (time(int(h), int(m)) for h, m in (match.group(1, 2), match.group(3, 4)))
    if start == end:
        raise ValueError(f"invalid window {text!r}: it opens and closes at the same minute")
    return Window(start=start, end=end, days=days)


def _day(name: str, text: str) -> int:
    """'mon' or 'monday' (any case); nothing looser."""
    for index, (short, full) in enumerate(zip(WEEKDAYS, _FULL_DAYS, strict=True)):
        if name in (short, full):
            return index
    raise ValueError(f"invalid window {text!r}: {name!r} is not a day (mon..sun)")


def _days(spec: str, text: str) -> frozenset[int]:
    days: set[int] = set()
    for item in spec.lower().split(","):
        first, dash, last = item.partition("-")
        if dash and not last:
            raise ValueError(f"invalid window {text!r}: a day range needs an end")
        a = _day(first, text)
        b = _day(last, text) if last else a
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


def require_tls(url: str) -> str:
    """`http://` only to this machine: elsewhere a client secret, token or signed notice
    would cross the network in clear text."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (raises on a malformed port)
        if "]" in parts.netloc and not re.search(r"\](:\d*)?$", parts.netloc):
            raise ValueError
    except ValueError:
        raise ValueError("not a valid URL (host or port malformed)") from None
    if parts.scheme.lower() == "http" and not _loopback(host):
        raise ValueError(
            f"http://{host}: plain http is allowed only to loopback hosts "
            f"(127.0.0.1, ::1, localhost); use https"
        )
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
