"""`rotator check`: a read-only pre-flight of the state database and every credential.

It reads AWSCURRENT, mints a management token and lists Adobe's secrets, and writes
nothing anywhere (the token's use does move the current secret's last_used_at at Adobe).
A SQLite file that does not exist yet is reported, not created.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import make_url

from rotator import redaction
from rotator.config import CredentialConfig, Settings
from rotator.domain.errors import RotatorError
from rotator.ports import AdobeApi, CredentialRef, SecretsStore

DATABASE = "(database)"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    # False where a rotation can still find out for itself (which secret AWSCURRENT holds).
    blocks_rotation: bool = True


class KnownRow(Protocol):
    """What the pre-flight reads of a credential's row (an adopted uuid and its version)."""

    @property
    def current_uuid(self) -> str | None: ...
    @property
    def current_version(self) -> str | None: ...


@dataclass(frozen=True)
class DatabaseState:
    """The schema's revision, the current one, and the credential rows (read when current)."""

    current: str | None
    head: str
    rows: Mapping[str, KnownRow] = field(default_factory=dict)


def run_checks(
    settings: Settings,
    inspect: Callable[[Settings], DatabaseState],
    adobe: AdobeApi,
    aws: SecretsStore,
) -> list[CheckResult]:
    """The database's result first (read by `inspect`), then one per configured credential,
    with the clients the composition root made for it (`rotator.app.check`)."""
    database, rows = _database(settings, inspect)
    return [database] + [
        _check(settings, cfg, adobe, aws, rows.get(cfg.name)) for cfg in settings.credentials
    ]


def _database(
    settings: Settings, inspect: Callable[[Settings], DatabaseState]
) -> tuple[CheckResult, Mapping[str, KnownRow]]:
    url = settings.database.url
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:" and not Path(path).exists():
            return CheckResult(
                DATABASE, True, f"{path} does not exist yet; `rotator run` creates it"
            ), {}
    try:
        state = inspect(settings)
    except RotatorError as exc:
        return CheckResult(DATABASE, False, str(exc)), {}
    except Exception as exc:
        first = redaction.clip(str(exc), 200, first_line=True)
        return CheckResult(DATABASE, False, f"cannot read: {type(exc).__name__}: {first}"), {}
    if state.current != state.head:
        return CheckResult(
            DATABASE,
            True,
            f"schema at {state.current or 'empty'}, current is {state.head}; "
            f"`rotator run` (or `rotator db upgrade`) migrates it",
        ), {}
    return CheckResult(DATABASE, True, f"schema current ({state.head})"), state.rows


def check_one(
    settings: Settings, name: str, adobe: AdobeApi, aws: SecretsStore, row: KnownRow | None
) -> CheckResult:
    """The pre-flight of one credential, with the caller's adapters (used before `rotate`)."""
    return _check(settings, settings.credential(name), adobe, aws, row)


def _check(
    settings: Settings,
    cfg: CredentialConfig,
    adobe: AdobeApi,
    aws: SecretsStore,
    row: KnownRow | None,
) -> CheckResult:
    secret_key, uuid_key = settings.secret_key(cfg), settings.uuid_key(cfg)
    try:
        current = aws.read(cfg.secret_id)
        if current is None:
            return CheckResult(cfg.name, False, f"{cfg.secret_id}: no AWSCURRENT version")
        secret = current.value.get(secret_key)
        if not isinstance(secret, str) or not secret:
            return CheckResult(
                cfg.name, False, f"{cfg.secret_id}: AWSCURRENT has no string key {secret_key!r}"
            )
        ref = CredentialRef(cfg.name, cfg.org_id, cfg.credential_id, cfg.client_id)
        listed = adobe.list_secrets(ref, secret)
    except RotatorError as exc:
        return CheckResult(cfg.name, False, str(exc))
    by_uuid = {s.uuid: s for s in listed}
    recorded = current.value.get(uuid_key)
    # An adopted uuid holds only while AWSCURRENT is the version it was adopted for.
    adopted = row.current_uuid if row and row.current_version == current.version_id else None
    known = recorded or adopted or (listed[0].uuid if len(listed) == 1 else None)
    if known is None:
        return CheckResult(
            cfg.name,
            False,
            f"cannot tell which of {sorted(by_uuid)} AWSCURRENT holds; run "
            f"`rotator adopt {cfg.name} --uuid <uuid>`",
            blocks_rotation=False,
        )
    if known not in by_uuid:
        return CheckResult(cfg.name, False, f"current uuid {known} is not listed at Adobe")
    source = "AWS" if recorded else ("adopted" if adopted else "only secret")
    age = (datetime.now(UTC) - by_uuid[known].created_at).total_seconds() / 86400
    return CheckResult(
        cfg.name,
        True,
        f"current {known} ({source}), {age:.1f} days old; {len(listed)} secret(s) at Adobe",
    )
