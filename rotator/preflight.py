"""`rotator check`: a read-only pre-flight of every configured credential.

It reads AWSCURRENT, mints a management token and lists Adobe's secrets, and writes
nothing anywhere (the token's use does move the current secret's last_used_at at Adobe).
"""

from __future__ import annotations

from dataclasses import dataclass

from rotator.adapters.adobe import AdobeClient
from rotator.adapters.aws_secrets import AwsSecrets
from rotator.adapters.db.store import CredentialRow, Store, make_engine
from rotator.config import CredentialConfig, Settings
from rotator.domain.errors import RotatorError
from rotator.ports import CredentialRef


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def run_checks(settings: Settings) -> list[CheckResult]:
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
    rows, db_note = _rows(settings)
    try:
        return [
            _check(settings, cfg, adobe, aws, rows.get(cfg.name), db_note)
            for cfg in settings.credentials
        ]
    finally:
        adobe.close()


def _rows(settings: Settings) -> tuple[dict[str, CredentialRow], str]:
    try:
        engine = make_engine(settings.database.url)
        try:
            return Store(engine).credential_rows(), ""
        finally:
            engine.dispose()
    except Exception as exc:  # no database yet is fine for a pre-flight; say so
        return {}, f" (state database not readable: {type(exc).__name__})"


def _check(
    settings: Settings,
    cfg: CredentialConfig,
    adobe: AdobeClient,
    aws: AwsSecrets,
    row: CredentialRow | None,
    db_note: str,
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
    uuids = [s.uuid for s in listed]
    recorded = current.value.get(uuid_key)
    known = (
        recorded or (row.current_uuid if row else None) or (uuids[0] if len(uuids) == 1 else None)
    )
    if known is None:
        return CheckResult(
            cfg.name,
            False,
            f"cannot tell which of {uuids} AWSCURRENT holds; run "
            f"`rotator adopt {cfg.name} --uuid <uuid>`{db_note}",
        )
    if known not in uuids:
        return CheckResult(cfg.name, False, f"current uuid {known} is not listed at Adobe")
    source = "AWS" if recorded else ("adopted" if row and row.current_uuid else "only secret")
    return CheckResult(
        cfg.name, True, f"current {known} ({source}); {len(uuids)} secret(s) at Adobe{db_note}"
    )
