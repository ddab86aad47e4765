"""`rotator check`: a read-only pre-flight of the state database and every credential.

It reads AWSCURRENT, mints a management token and lists Adobe's secrets, and writes
nothing anywhere (the token's use does move the current secret's last_used_at at Adobe).
A SQLite file that does not exist yet is reported, not created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from rotator import redaction
from rotator.adapters.adobe import AdobeClient
from rotator.adapters.aws_secrets import AwsSecrets
from rotator.adapters.db import migrate
from rotator.adapters.db.connect import make_engine
from rotator.adapters.db.store import CredentialRow, Store
from rotator.config import CredentialConfig, Settings
from rotator.domain.errors import RotatorError
from rotator.ports import CredentialRef

DATABASE = "(database)"


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    # False where a rotation can still find out for itself (which secret AWSCURRENT holds).
    blocks_rotation: bool = True


def run_checks(settings: Settings) -> list[CheckResult]:
    """The database's result first, then one per configured credential."""
    database, rows = _database(settings)
    adobe = AdobeClient(
        settings.adobe.ims_url,
        settings.adobe.api_url,
        timeout=settings.adobe.timeout.total_seconds(),
        retry_attempts=2,
    )
    aws = AwsSecrets(
        region=settings.aws.region,
        endpoint_url=settings.aws.endpoint_url,
        max_attempts=2,
        public_keys=frozenset(settings.uuid_key(c) for c in settings.credentials),
    )
    try:
        return [database] + [
            _check(settings, cfg, adobe, aws, rows.get(cfg.name)) for cfg in settings.credentials
        ]
    finally:
        adobe.close()


def _database(settings: Settings) -> tuple[CheckResult, dict[str, CredentialRow]]:
    url = settings.database.url
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:" and not Path(path).exists():
            return CheckResult(
                DATABASE, True, f"{path} does not exist yet; `rotator run` creates it"
            ), {}
    try:
        engine = make_engine(url)
        try:
            current, head = migrate.current(engine), migrate.HEAD
            if current != head:
                return CheckResult(
                    DATABASE,
                    True,
                    f"schema at {current or 'empty'}, current is {head}; "
                    f"`rotator run` (or `rotator db upgrade`) migrates it",
                ), {}
            return CheckResult(DATABASE, True, f"schema current ({head})"), Store(
                engine
            ).credential_rows()
        finally:
            engine.dispose()
    except RotatorError as exc:
        return CheckResult(DATABASE, False, str(exc)), {}
    except Exception as exc:
        first = redaction.clip(str(exc), 200, first_line=True)
        return CheckResult(DATABASE, False, f"cannot read: {type(exc).__name__}: {first}"), {}


def check_one(
    settings: Settings, name: str, adobe: AdobeClient, aws: AwsSecrets, row: CredentialRow | None
) -> CheckResult:
    """The pre-flight of one credential, with the caller's adapters (used before `rotate`)."""
    return _check(settings, settings.credential(name), adobe, aws, row)


def _check(
    settings: Settings,
    cfg: CredentialConfig,
    adobe: AdobeClient,
    aws: AwsSecrets,
    row: CredentialRow | None,
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
