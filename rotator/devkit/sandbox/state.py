"""The sandbox's fake Adobe, as a plain in-memory model with no HTTP in it.

Every Adobe operation is a method that takes what the request carried and returns a
:class:`Reply` (status, JSON body, headers) exactly as Adobe would answer it, so the whole
behaviour is testable without a server and the Starlette layer stays a thin adapter.

Facts follow ``/work/shared/reference/adobe-api.md``. Where Adobe documents nothing, the
sandbox picks an answer and says so here, so clients are written against status codes
rather than these texts:

* third secret on a credential: ``400`` (setting ``secret_limit_status``)
  ``{"error_code": "400003", "message": "Maximum number of client secrets reached ..."}``;
* token without the needed scope: ``403 {"error_code": "403027", ...}``;
* unknown credential / secret: ``404 {"error_code": "404001"|"404002", ...}``;
* missing ``x-api-key``: ``403 {"error_code": "403000", "message": "Api Key is required"}``;
* deleting the last secret: allowed (setting ``allow_delete_last_secret``);
* the grant type recorded for a JWT exchange use:
  ``urn:ietf:params:oauth:grant-type:jwt-bearer``;
* a missing ``scope`` on the token endpoint mints a token with no scopes (so a client that
  forgets scopes fails loudly at the API instead of passing by luck);
* a token whose client is not the ``x-api-key`` (or not the credential's): ``403003``;
* revoke / invalidate / JWT client authentication failures: ``400 invalid_client``, the
  same bodies as the token endpoint.

One lock guards the model: handlers are short, and the same object is read by tests from
other threads (``SandboxServer.state``). Faults, holds and counters live in ``faults.py``.
"""

from __future__ import annotations

import copy
import hmac
import itertools
import json
import secrets
import threading
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from hashlib import sha256
from http import HTTPStatus
from typing import Any, Final, cast

from rotator.devkit.sandbox.consistency import ADD_STATUSES
from rotator.devkit.sandbox.faults import IMS_ENDPOINTS, FaultPlan
from rotator.devkit.sandbox.oracle import Oracle, UseSource
from rotator.devkit.sandbox.rs256 import JWTError, b64url_encode, load_public_key, verify_rs256

__all__ = [
    "CLIENT_CREDENTIALS",
    "DEFAULT_META_SCOPES",
    "JWT_BEARER",
    "MANAGEMENT_SCOPES",
    "PRODUCTION_IMS",
    "Reply",
    "SandboxState",
    "Settings",
    "format_ms",
]

JSON = dict[str, Any]

PRODUCTION_IMS: Final = "https://ims-na1.adobelogin.com"
CLIENT_CREDENTIALS: Final = "client_credentials"
JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MANAGEMENT_SCOPES: Final = (
    "AdobeID",
    "openid",
    "read_organizations",
    "additional_info.projectedProductContext",
    "additional_info.roles",
    "adobeio_api",
    "read_client_secret",
    "manage_client_secrets",
)
DEFAULT_META_SCOPES: Final = ("ent_adobeio_sdk",)
READ_SCOPE: Final = "read_client_secret"
MANAGE_SCOPE: Final = "manage_client_secrets"

JWT_MAX_LIFETIME_MS: Final = 24 * 3600 * 1000
HISTORY: Final = 10_000  # uses kept per secret for stale answers (benchmarks mint many)
PERSIST_FORMAT: Final = 1


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class Reply:
    """An HTTP answer without the HTTP: ``body`` None means an empty body."""

    status: int
    body: JSON | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def ims_error(error: str, description: str, status: int = 400) -> Reply:
    """IMS's OAuth-style error body."""
    return Reply(status, {"error": error, "error_description": description})


def gateway_error(status: int, code: str, message: str) -> Reply:
    """The api.adobe.io gateway's error body (``error_code`` is a string)."""
    return Reply(status, {"error_code": code, "message": message})


INVALID_CLIENT_ID = ims_error("invalid_client", "invalid client_id parameter")
INVALID_CLIENT_SECRET = ims_error("invalid_client", "invalid client_secret parameter")
API_KEY_REQUIRED = gateway_error(403, "403000", "Api Key is required")
API_KEY_INVALID = gateway_error(403, "403003", "Api Key is invalid")
TOKEN_INVALID = gateway_error(401, "401013", "Oauth token is not valid")
SCOPE_MISSING = gateway_error(403, "403027", "Oauth token does not have the required scope")
CREDENTIAL_NOT_FOUND = gateway_error(404, "404001", "Credential Not Found")
SECRET_NOT_FOUND = gateway_error(404, "404002", "Client Secret Not Found")


def fault_reply(endpoint: str, status: int, retry_after_s: float | None) -> Reply:
    """What an injected error looks like: IMS-shaped for IMS, gateway-shaped for the API."""
    phrase = HTTPStatus(status).phrase
    headers = {} if retry_after_s is None else {"Retry-After": _retry_after(retry_after_s)}
    if endpoint in IMS_ENDPOINTS:
        error = "too_many_requests" if status == 429 else "server_error"
        return Reply(status, {"error": error, "error_description": phrase}, headers)
    return Reply(status, {"error_code": f"{status}050", "message": phrase}, headers)


def _retry_after(seconds: float) -> str:
    # Retry-After is whole seconds on the wire; never round a short wait down to "retry now".
    whole = int(seconds)
    return str(whole if whole == seconds else whole + 1)


# --------------------------------------------------------------------------- time


def format_ms(ms: int) -> str:
    """Adobe's ``*_str`` rendering, e.g. ``Tue, Apr 25 2023 18:48:05.000 UTC``."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return f"{moment:%a, %b %d %Y %H:%M:%S}.{ms % 1000:03d} UTC"


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """Behaviour Adobe documents ambiguously, chosen per run so clients are tested on both."""

    add_status: int = 201
    delete_status: int = 204
    token_lifetime_s: int = 86399
    secret_limit: int = 2
    secret_limit_status: int = 400
    allow_delete_last_secret: bool = True

    def validate(self) -> None:
        """Refuse settings Adobe could not produce."""
        if self.add_status not in ADD_STATUSES:
            raise ValueError("add_status must be 200, 201 or 202")
        if self.delete_status not in (200, 204):
            raise ValueError("delete_status must be 200 or 204")
        if self.token_lifetime_s < 1:
            raise ValueError("token_lifetime_s must be at least 1")
        if self.secret_limit < 1:
            raise ValueError("secret_limit must be at least 1")
        if not 400 <= self.secret_limit_status <= 499:
            raise ValueError("secret_limit_status must be a 4xx")

    def replace(self, changes: Mapping[str, Any]) -> Settings:
        """A validated copy with ``changes`` applied; unknown keys are an error."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        for key, value in changes.items():
            expected = type(getattr(self, key))
            if type(value) is not expected:  # bool is an int subclass: compare exactly
                raise ValueError(f"{key} must be {expected.__name__}, not {value!r}")
        updated = Settings(**{**asdict(self), **changes})
        updated.validate()
        return updated


# --------------------------------------------------------------------------- records


@dataclass
class Org:
    org_id: str
    ims_org_id: str


@dataclass
class Secret:
    """One client secret; ``usages`` is what Adobe shows, ``pending`` what it has not yet.

    ``history`` (not saved) keeps each use with the instant it became visible, so a
    ``stale`` answer can show what a replica that far behind would (``consistency.py``).
    """

    uuid: str
    value: str
    created_at: int
    accepted_at: int
    usages: dict[str, int] = field(default_factory=dict)
    pending: list[tuple[int, int, str]] = field(default_factory=list)  # (visible_at, at, grant)
    history: deque[tuple[int, int, str]] = field(
        default_factory=lambda: deque(maxlen=HISTORY), repr=False
    )

    def settle(self, now: int) -> None:
        """Make uses older than the configured lag visible."""
        if not self.pending:
            return
        still: list[tuple[int, int, str]] = []
        for visible_at, used_at, grant in self.pending:
            if visible_at <= now:
                self.usages[grant] = max(self.usages.get(grant, used_at), used_at)
            else:
                still.append((visible_at, used_at, grant))
        self.pending = still

    def last_used_at(self) -> int | None:
        return max(self.usages.values()) if self.usages else None

    def usages_as_of(self, moment: int) -> dict[str, int]:
        """What Adobe showed at ``moment``: the uses that had become visible by then."""
        shown: dict[str, int] = {}
        for visible_at, used_at, grant in self.history:
            if visible_at <= moment:
                shown[grant] = max(shown.get(grant, used_at), used_at)
        return shown


@dataclass
class Credential:
    """An OAuth Server-to-Server credential; ``public_keys`` are legacy JWT bindings."""

    credential_id: str
    org_id: str
    client_id: str
    name: str
    technical_account_id: str
    scopes: tuple[str, ...]
    meta_scopes: tuple[str, ...]
    public_keys: list[str] = field(default_factory=list)
    secrets: dict[str, Secret] = field(default_factory=dict)


@dataclass
class Token:
    """What IMS remembers about an access token; the value itself is the dict key."""

    client_id: str
    credential_id: str
    secret_uuid: str | None
    grant_type: str
    scopes: frozenset[str]
    issued_at: int
    expires_at: int
    revoked_at: int | None = None

    def status(self, now: int) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "active" if now < self.expires_at else "expired"


@dataclass
class RetiredSecret:
    """A deleted secret's value, kept only so tests can scan for leaks of old values."""

    credential_id: str
    uuid: str
    value: str


# --------------------------------------------------------------------------- the model


class SandboxState:
    """Orgs, credentials, secrets and tokens behind one lock, with the run's :class:`FaultPlan`."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._defaults = copy.deepcopy(settings or Settings())
        self._defaults.validate()
        self.revision = 0
        #: Faults, holds and counters: about the test run, not about Adobe (``faults.py``).
        self.faults = FaultPlan()
        #: The truth behind the answers: every use and deletion (``oracle.py``).
        self.oracle = Oracle()
        self._clear()

    def _clear(self) -> None:
        self.settings = copy.deepcopy(self._defaults)
        self.clock_offset_s = 0.0
        self._orgs: dict[str, Org] = {}
        self._credentials: dict[str, Credential] = {}
        self._by_client_id: dict[str, Credential] = {}
        self._tokens: dict[str, Token] = {}
        self._retired: list[RetiredSecret] = []
        # Deleted secrets still listed (the ``lingering`` switch): credential -> [secret, n]
        self._lingering: dict[str, list[tuple[Secret, list[int]]]] = {}
        self._org_ids = itertools.count(100001)
        self._credential_ids = itertools.count(300001)
        self._mints = 0

    def _touch(self) -> None:
        self.revision += 1

    def now_ms(self) -> int:
        """Sandbox time: wall clock plus the admin-set offset; all expiry uses it."""
        return int((self._clock() + self.clock_offset_s) * 1000)

    # ------------------------------------------------------------------ admin: lifecycle

    def reset(self) -> None:
        """Forget everything (settings back to the server's defaults); free held requests."""
        with self._lock:
            self.faults.reset()
            self.oracle.clear()
            self._clear()
            self._touch()

    def configure(self, **changes: Any) -> Settings:
        """Change settings for this run; :meth:`reset` returns to the server's defaults."""
        with self._lock:
            self.settings = self.settings.replace(changes)
            return copy.deepcopy(self.settings)

    def set_clock_offset(self, offset_s: float) -> None:
        """Shift sandbox time, so a test can expire tokens or age secrets without sleeping."""
        with self._lock:
            self.clock_offset_s = float(offset_s)
            self._touch()

    def advance_clock(self, seconds: float) -> None:
        with self._lock:
            self.clock_offset_s += float(seconds)
            self._touch()

    # ------------------------------------------------------------------ admin: world

    def create_org(self, org_id: str | None = None) -> Org:
        """The numeric Console org id (given, or the next free one) with an IMS org id."""
        with self._lock:
            if org_id is None:
                org_id = str(next(self._org_ids))
            elif org_id in self._orgs:
                return self._orgs[org_id]
            org = Org(org_id, f"{secrets.token_hex(12).upper()}@AdobeOrg")
            self._orgs[org_id] = org
            self._touch()
            return org

    def create_credential(
        self,
        *,
        org_id: str | None = None,
        name: str | None = None,
        scopes: Iterable[str] | None = None,
        meta_scopes: Iterable[str] | None = None,
        public_keys: Iterable[str] = (),
        with_secret: bool = True,
    ) -> tuple[Credential, Secret | None]:
        """A new OAuth Server-to-Server credential, with its first secret as the Console makes.

        The first secret is accepted at once (it was not created through the API, so the
        ``accept_delay`` fault does not apply to it).
        """
        keys = list(public_keys)
        for pem in keys:
            load_public_key(pem)  # refuse a bad binding now, not at exchange time
        with self._lock:
            org = self.create_org(org_id)
            credential_id = str(next(self._credential_ids))
            while credential_id in self._credentials:
                credential_id = str(next(self._credential_ids))
            credential = Credential(
                credential_id=credential_id,
                org_id=org.org_id,
                client_id=secrets.token_hex(16),
                name=name or f"sandbox-credential-{credential_id}",
                technical_account_id=f"{secrets.token_hex(12).upper()}@techacct.adobe.com",
                scopes=tuple(MANAGEMENT_SCOPES if scopes is None else scopes),
                meta_scopes=tuple(DEFAULT_META_SCOPES if meta_scopes is None else meta_scopes),
                public_keys=keys,
            )
            self._credentials[credential_id] = credential
            self._by_client_id[credential.client_id] = credential
            first = (
                self._new_secret(credential, accept_delay_ms=0, by="console")
                if with_secret
                else None
            )
            self._touch()
            return credential, first

    def _new_secret(self, credential: Credential, *, accept_delay_ms: int, by: str) -> Secret:
        now = self.now_ms()
        secret = Secret(
            uuid=uuidlib.uuid4().hex,
            value="p8e-" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y"),
            created_at=now,
            accepted_at=now + accept_delay_ms,
        )
        credential.secrets[secret.uuid] = secret
        self.oracle.created(credential.credential_id, secret.uuid, secret.value, now, by=by)
        return secret

    def admin_add_secret(self, credential_id: str) -> Secret:
        """Add a secret as a person in the Console would: no auth, limit still enforced."""
        with self._lock:
            credential = self._credential(credential_id)
            if len(credential.secrets) >= self.settings.secret_limit:
                raise OverflowError("the credential already has the maximum number of secrets")
            secret = self._new_secret(credential, accept_delay_ms=0, by="console")
            self._touch()
            return secret

    def admin_delete_secret(self, credential_id: str, uuid: str) -> None:
        with self._lock:
            credential = self._credential(credential_id)
            self._retire(credential, self._secret(credential, uuid), by="admin")
            self._touch()

    def add_public_key(self, credential_id: str, pem: str) -> None:
        load_public_key(pem)
        with self._lock:
            self._credential(credential_id).public_keys.append(pem)
            self._touch()

    def set_secret_times(
        self,
        credential_id: str,
        uuid: str,
        *,
        created_at: int | None = None,
        last_used_at: int | None = None,
        never_used: bool = False,
        grant_type: str = CLIENT_CREDENTIALS,
    ) -> None:
        """Rewrite history ("last used 30 hours ago"); pending lagged uses are discarded."""
        with self._lock:
            secret = self._secret(self._credential(credential_id), uuid)
            if created_at is not None:
                secret.created_at = created_at
                secret.accepted_at = min(secret.accepted_at, created_at)
            if never_used:
                secret.usages.clear()
                secret.pending.clear()
                secret.history.clear()
            if last_used_at is not None:
                secret.pending.clear()
                secret.usages = {grant_type: last_used_at}
                secret.history = deque([(last_used_at, last_used_at, grant_type)], maxlen=HISTORY)
            self._touch()

    def consume(self, credential_id: str, uuid: str, scope: str | None = None) -> Reply:
        """Mint a token with one secret, as a consumer would, without knowing its value.

        The oracle records the use (or the refusal) as a consumer's.
        """
        with self._lock:
            credential = self._credential(credential_id)
            secret = self._secret(credential, uuid)
            form = {
                "grant_type": CLIENT_CREDENTIALS,
                "client_id": credential.client_id,
                "client_secret": secret.value,
            }
            if scope is not None:
                form["scope"] = scope
            return self.mint_client_credentials(form, source="consumer")

    def _credential(self, credential_id: str) -> Credential:
        try:
            return self._credentials[credential_id]
        except KeyError:
            raise LookupError(f"no credential {credential_id}") from None

    @staticmethod
    def _secret(credential: Credential, uuid: str) -> Secret:
        try:
            return credential.secrets[uuid]
        except KeyError:
            raise LookupError(
                f"no secret {uuid} on credential {credential.credential_id}"
            ) from None

    def _retire(self, credential: Credential, secret: Secret, *, by: str) -> None:
        del credential.secrets[secret.uuid]
        answers = self.faults.consistency.lingering_answers(credential.client_id)
        if answers and by == "api":
            ghosts = self._lingering.setdefault(credential.credential_id, [])
            ghosts.append((secret, [answers]))
        self._retired.append(RetiredSecret(credential.credential_id, secret.uuid, secret.value))
        self.oracle.deleted(
            credential.credential_id, secret.uuid, secret.value, self.now_ms(), by=by
        )

    # ------------------------------------------------------------------ admin: reading

    def credential_view(self, credential_id: str) -> JSON:
        """Everything about a credential except secret values and token values."""
        with self._lock:
            return self._credential_view(self._credential(credential_id), self.now_ms())

    def _credential_view(self, credential: Credential, now: int) -> JSON:
        secrets_view = []
        for secret in self._ordered(credential):
            secret.settle(now)
            secrets_view.append(
                {
                    "uuid": secret.uuid,
                    "created_at": secret.created_at,
                    "accepted_at": secret.accepted_at,
                    "last_used_at": secret.last_used_at(),
                    "usages": dict(secret.usages),
                    "pending_uses": len(secret.pending),
                }
            )
        return {
            "credential_id": credential.credential_id,
            "org_id": credential.org_id,
            "ims_org_id": self._orgs[credential.org_id].ims_org_id,
            "client_id": credential.client_id,
            "name": credential.name,
            "technical_account_id": credential.technical_account_id,
            "scopes": list(credential.scopes),
            "meta_scopes": list(credential.meta_scopes),
            "public_keys": len(credential.public_keys),
            "secrets": secrets_view,
        }

    def snapshot(self) -> JSON:
        """The admin's picture of the world: no secret or token values in it."""
        with self._lock:
            now = self.now_ms()
            statuses: dict[str, int] = {"active": 0, "revoked": 0, "expired": 0}
            for token in self._tokens.values():
                statuses[token.status(now)] += 1
            return {
                "now": now,
                "clock_offset_s": self.clock_offset_s,
                "settings": asdict(self.settings),
                "orgs": [
                    {
                        "org_id": org.org_id,
                        "ims_org_id": org.ims_org_id,
                        "credentials": [
                            c.credential_id
                            for c in self._credentials.values()
                            if c.org_id == org.org_id
                        ],
                    }
                    for org in self._orgs.values()
                ],
                "credentials": [self._credential_view(c, now) for c in self._credentials.values()],
                "tokens": statuses,
            }

    def reveal_secrets(self, credential_id: str) -> dict[str, str]:
        """Plaintext of a credential's live secrets: only ever through this explicit call."""
        with self._lock:
            credential = self._credential(credential_id)
            return {s.uuid: s.value for s in self._ordered(credential)}

    def all_secret_values(self) -> list[JSON]:
        """Every secret value ever issued, deleted ones included, for leak scans."""
        with self._lock:
            live = [
                {
                    "credential_id": c.credential_id,
                    "uuid": s.uuid,
                    "client_secret": s.value,
                    "deleted": False,
                }
                for c in self._credentials.values()
                for s in c.secrets.values()
            ]
            gone = [
                {
                    "credential_id": r.credential_id,
                    "uuid": r.uuid,
                    "client_secret": r.value,
                    "deleted": True,
                }
                for r in self._retired
            ]
            return live + gone

    def all_token_values(self) -> list[str]:
        """Every access token minted since the last reset, for leak scans."""
        with self._lock:
            return list(self._tokens)

    def tokens(self, client_id: str | None = None) -> list[JSON]:
        """Token metadata (a fingerprint, never the value), e.g. to see which were revoked."""
        with self._lock:
            now = self.now_ms()
            return [
                self._token_view(value, token, now)
                for value, token in self._tokens.items()
                if client_id is None or token.client_id == client_id
            ]

    def introspect(self, value: str) -> JSON:
        """Status of one token: active, revoked, expired or unknown."""
        with self._lock:
            token = self._tokens.get(value)
            if token is None:
                return {"status": "unknown"}
            return self._token_view(value, token, self.now_ms())

    @staticmethod
    def _token_view(value: str, token: Token, now: int) -> JSON:
        return {
            "fingerprint": sha256(value.encode()).hexdigest()[:16],
            "status": token.status(now),
            "client_id": token.client_id,
            "credential_id": token.credential_id,
            "secret_uuid": token.secret_uuid,
            "grant_type": token.grant_type,
            "scopes": sorted(token.scopes),
            "issued_at": token.issued_at,
            "expires_at": token.expires_at,
            "revoked_at": token.revoked_at,
        }

    @staticmethod
    def _ordered(credential: Credential) -> list[Secret]:
        return sorted(credential.secrets.values(), key=lambda s: (s.created_at, s.uuid))

    # ------------------------------------------------------------------ IMS

    def _authenticate(
        self,
        client_id: str | None,
        client_secret: str | None,
        now: int,
        source: UseSource = "http",
    ) -> tuple[Credential, Secret] | Reply:
        credential = self._by_client_id.get(client_id or "")
        if credential is None:
            return INVALID_CLIENT_ID
        offered = (client_secret or "").encode()
        for secret in credential.secrets.values():
            if hmac.compare_digest(secret.value.encode(), offered):
                if secret.accepted_at <= now:
                    return credential, secret
                self.oracle.refused(secret.value, now, "not accepted yet", source)
                return INVALID_CLIENT_SECRET
        if client_secret:
            self.oracle.refused(client_secret, now, "no such secret", source)
        return INVALID_CLIENT_SECRET

    def _mint(
        self,
        credential: Credential,
        secret: Secret,
        grant_type: str,
        scopes: frozenset[str],
        now: int,
        source: UseSource = "http",
    ) -> Reply:
        lifetime_ms = self.settings.token_lifetime_s * 1000
        value = self._token_value(credential.client_id, scopes, now, lifetime_ms)
        self._tokens[value] = Token(
            client_id=credential.client_id,
            credential_id=credential.credential_id,
            secret_uuid=secret.uuid,
            grant_type=grant_type,
            scopes=scopes,
            issued_at=now,
            expires_at=now + lifetime_ms,
        )
        visible_at = now + self.faults.consistency.usage_lag_ms(credential.client_id)
        secret.pending.append((visible_at, now, grant_type))
        secret.history.append((visible_at, now, grant_type))
        secret.settle(now)
        self.oracle.used(credential.credential_id, secret.uuid, now, source)
        self._mints += 1
        if self._mints % 4096 == 0:
            self._prune_tokens(now)
        self._touch()
        return Reply(
            200,
            {
                "access_token": value,
                "token_type": "bearer",
                "expires_in": self.settings.token_lifetime_s,
            },
        )

    @staticmethod
    def _token_value(client_id: str, scopes: frozenset[str], now: int, lifetime_ms: int) -> str:
        # Shaped like Adobe's (a JWT whose payload carries these fields) so log redactors see
        # realistic input; the signature part is random, which also makes every value unique.
        header = b64url_encode(b'{"alg":"RS256","x5u":"ims_na1-key-at-1.cer","typ":"JWT"}')
        payload = json.dumps(
            {
                "id": uuidlib.uuid4().hex,
                "type": "access_token",
                "client_id": client_id,
                "as": "ims-na1",
                "created_at": str(now),
                "expires_in": str(lifetime_ms),
                "scope": ",".join(sorted(scopes)),
            },
            separators=(",", ":"),
        )
        return (
            f"{header}.{b64url_encode(payload.encode())}.{b64url_encode(secrets.token_bytes(32))}"
        )

    def _prune_tokens(self, now: int) -> None:
        # Long benchmarks mint many tokens; those expired a day ago can never matter again.
        cutoff = now - 86_400_000
        for value in [v for v, t in self._tokens.items() if t.expires_at < cutoff]:
            del self._tokens[value]

    @staticmethod
    def _parse_scopes(raw: str | None) -> frozenset[str]:
        if not raw:
            return frozenset()
        return frozenset(s for s in raw.replace(",", " ").split() if s)

    def mint_client_credentials(
        self,
        form: Mapping[str, str],
        basic: tuple[str, str] | None = None,
        *,
        source: UseSource = "http",
    ) -> Reply:
        """``POST /ims/token/v3``: client_secret_post (form) or client_secret_basic.

        ``source`` tells the oracle who asked (a test's consumer passes ``"consumer"``).
        """
        with self._lock:
            if form.get("grant_type") != CLIENT_CREDENTIALS:
                return ims_error("unsupported_grant_type", "unsupported grant_type parameter")
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            if basic is not None:
                if client_id is not None and client_id != basic[0]:
                    return ims_error("invalid_request", "client_id does not match authorization")
                client_id, client_secret = basic
            now = self.now_ms()
            found = self._authenticate(client_id, client_secret, now, source)
            if isinstance(found, Reply):
                return found
            credential, secret = found
            scopes = self._parse_scopes(form.get("scope"))
            unknown = sorted(scopes - set(credential.scopes))
            if unknown:
                return ims_error("invalid_scope", f"invalid scope parameter: {','.join(unknown)}")
            return self._mint(credential, secret, CLIENT_CREDENTIALS, scopes, now, source)

    def exchange_jwt(self, form: Mapping[str, str], ims_bases: Iterable[str]) -> Reply:
        """``POST /ims/exchange/jwt``: the legacy Service Account flow.

        ``ims_bases`` are the IMS URLs an ``aud`` may name: the one the client called (the
        sandbox's own URL) and production's, since integrations hard-code the latter.
        """
        with self._lock:
            now = self.now_ms()
            found = self._authenticate(form.get("client_id"), form.get("client_secret"), now)
            if isinstance(found, Reply):
                return found
            credential, secret = found
            jwt_token = form.get("jwt_token")
            if not jwt_token:
                return ims_error("bad_request", "missing jwt_token parameter")
            keys = [load_public_key(pem) for pem in credential.public_keys]
            try:
                _header, claims = verify_rs256(jwt_token, keys)
            except JWTError as exc:
                return ims_error(exc.error, exc.description)
            bases = [b.rstrip("/") for b in ims_bases]
            refused = self._check_jwt_claims(credential, claims, bases, now)
            if refused is not None:
                return refused
            return self._mint(credential, secret, JWT_BEARER, frozenset(credential.scopes), now)

    def _check_jwt_claims(
        self, credential: Credential, claims: Mapping[str, Any], bases: list[str], now: int
    ) -> Reply | None:
        exp = claims.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool):
            return ims_error("invalid_token", "JWT exp claim is missing or not a number")
        if exp * 1000 <= now:
            return ims_error("invalid_token", "JWT token is expired")
        if exp * 1000 > now + JWT_MAX_LIFETIME_MS:
            return ims_error("invalid_token", "JWT exp claim is more than 24 hours away")
        if claims.get("iss") != self._orgs[credential.org_id].ims_org_id:
            return ims_error("invalid_token", "JWT iss claim does not name the organization")
        if claims.get("sub") != credential.technical_account_id:
            return ims_error("invalid_token", "JWT sub claim does not name the technical account")
        if claims.get("aud") not in {f"{b}/c/{credential.client_id}" for b in bases}:
            return ims_error("invalid_token", "JWT aud claim does not name this client")
        granted = set()
        for claim, value in claims.items():
            for base in bases:
                prefix = f"{base}/s/"
                if claim.startswith(prefix) and value is True:
                    granted.add(claim.removeprefix(prefix))
        if not granted:
            return ims_error("invalid_scope", "JWT carries no metascope claim")
        refused = sorted(granted - set(credential.meta_scopes))
        if refused:
            return ims_error("invalid_scope", f"invalid metascope: {','.join(refused)}")
        return None

    def _client_auth(
        self, form: Mapping[str, str], basic: tuple[str, str] | None, now: int
    ) -> Credential | Reply:
        client_id, client_secret = basic or (form.get("client_id"), form.get("client_secret"))
        found = self._authenticate(client_id, client_secret, now)
        return found if isinstance(found, Reply) else found[0]

    def _invalidate(self, credential: Credential, value: str, now: int) -> Reply | None:
        token = self._tokens.get(value)
        if token is None:
            return None  # RFC 7009: an unknown token is not an error
        if token.client_id != credential.client_id:
            return ims_error("invalid_request", "token was not issued to this client")
        if token.revoked_at is None:
            token.revoked_at = now
            self._touch()
        return None

    def revoke(self, form: Mapping[str, str], basic: tuple[str, str] | None = None) -> Reply:
        """``POST /ims/revoke``: RFC 7009, the client authenticating itself (Basic)."""
        with self._lock:
            now = self.now_ms()
            credential = self._client_auth(form, basic, now)
            if isinstance(credential, Reply):
                return credential
            value = form.get("token")
            if not value:
                return ims_error("invalid_request", "missing token parameter")
            return self._invalidate(credential, value, now) or Reply(200)

    def invalidate_token(
        self, form: Mapping[str, str], basic: tuple[str, str] | None = None
    ) -> Reply:
        """``POST /ims/invalidate_token/v2`` as Adobe's aio-lib-ims calls it."""
        with self._lock:
            now = self.now_ms()
            credential = self._client_auth(form, basic, now)
            if isinstance(credential, Reply):
                return credential
            value = form.get("token")
            if not value:
                return ims_error("invalid_request", "missing token parameter")
            token_type = form.get("token_type", "access_token")
            if token_type not in ("access_token", "refresh_token"):
                return ims_error("invalid_request", "invalid token_type parameter")
            return self._invalidate(credential, value, now) or Reply(200)

    def logout(self, params: Mapping[str, str]) -> Reply:
        """``GET|POST /ims/logout/v1/token``: the token itself is the credential."""
        with self._lock:
            value, client_id = params.get("access_token"), params.get("client_id")
            if not value or not client_id:
                return ims_error("invalid_request", "access_token and client_id are required")
            credential = self._by_client_id.get(client_id)
            if credential is None:
                return INVALID_CLIENT_ID
            return self._invalidate(credential, value, self.now_ms()) or Reply(200, {})

    # ------------------------------------------------------------------ I/O Management API

    def _gate(
        self,
        org_id: str,
        credential_id: str,
        api_key: str | None,
        authorization: str | None,
        scope: str,
    ) -> Credential | Reply:
        """The gateway's checks, then the service's, in the order Adobe's stack makes them."""
        if not api_key:
            return API_KEY_REQUIRED
        if api_key not in self._by_client_id:
            return API_KEY_INVALID
        scheme, _, value = (authorization or "").partition(" ")
        token = self._tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None or token.status(self.now_ms()) != "active":
            return TOKEN_INVALID
        if token.client_id != api_key:
            return API_KEY_INVALID
        credential = self._credentials.get(credential_id)
        if credential is None or credential.org_id != org_id:
            return CREDENTIAL_NOT_FOUND
        if credential.client_id != api_key:
            return API_KEY_INVALID
        if scope not in token.scopes:
            return SCOPE_MISSING
        return credential

    @staticmethod
    def _entry(secret: Secret, shown: Mapping[str, int] | None = None) -> JSON:
        """A list entry; ``shown`` replaces the usages Adobe would show (a distorted answer)."""
        usages_by_grant = secret.usages if shown is None else shown
        usages = (
            [
                {"last_used_at": str(at), "grant_type": g}
                for g, at in sorted(usages_by_grant.items())
            ]
            if usages_by_grant
            else None
        )
        return {
            "uuid": secret.uuid,
            "created_at": str(secret.created_at),
            "created_at_str": format_ms(secret.created_at),
            "expires_at": "PERMANENT",
            "expires_at_str": "PERMANENT",
            "secret_usages": usages,
        }

    def list_secrets(
        self, org_id: str, credential_id: str, api_key: str | None, authorization: str | None
    ) -> Reply:
        """``GET .../secrets``: oldest first, no values, usages only once visible.

        The consistency switches may leave a secret out or show its usages as null or
        stale; the oracle notes what each answer showed and what it hid.
        """
        with self._lock:
            credential = self._gate(org_id, credential_id, api_key, authorization, READ_SCOPE)
            if isinstance(credential, Reply):
                return credential
            now = self.now_ms()
            switches = self.faults.consistency
            ordered = sorted(
                self._ordered(credential) + self._ghosts(credential),
                key=lambda s: (s.created_at, s.uuid),
            )
            left_out = switches.omissions(credential.client_id, [s.uuid for s in ordered])
            entries = []
            for secret in ordered:
                secret.settle(now)
                if secret.uuid in left_out:
                    self.oracle.hidden(credential.credential_id, secret.uuid, "omitted")
                    continue
                shown = self._shown_usages(credential, secret, now)
                entries.append(self._entry(secret, shown))
                last = max(shown.values()) if shown else None
                self.oracle.reported(credential.credential_id, secret.uuid, last)
            return Reply(200, {"client_id": credential.client_id, "client_secrets": entries})

    def _ghosts(self, credential: Credential) -> list[Secret]:
        """Deleted secrets this answer still lists (each answer counts one down)."""
        ghosts = self._lingering.get(credential.credential_id, [])
        listed = []
        for secret, left in ghosts:
            left[0] -= 1
            listed.append(secret)
            self.oracle.hidden(credential.credential_id, secret.uuid, "lingering")
        self._lingering[credential.credential_id] = [(s, n) for s, n in ghosts if n[0] > 0]
        return listed

    def _shown_usages(self, credential: Credential, secret: Secret, now: int) -> dict[str, int]:
        """The usages this answer shows: the visible ones, unless a regression fires."""
        rule = self.faults.consistency.distortion(credential.client_id, secret.uuid)
        if rule is None:
            return dict(secret.usages)
        shown = {} if rule.mode == "null" else secret.usages_as_of(now - rule.stale_ms)
        if shown != secret.usages:
            how = "null" if not shown and secret.usages else "stale"
            self.oracle.hidden(credential.credential_id, secret.uuid, how)
        return shown

    def add_secret(
        self, org_id: str, credential_id: str, api_key: str | None, authorization: str | None
    ) -> Reply:
        """``POST .../secrets``: the only answer that ever carries the plaintext."""
        with self._lock:
            credential = self._gate(org_id, credential_id, api_key, authorization, MANAGE_SCOPE)
            if isinstance(credential, Reply):
                return credential
            limit = self.settings.secret_limit
            if len(credential.secrets) >= limit:
                return gateway_error(
                    self.settings.secret_limit_status,
                    "400003",
                    f"Maximum number of client secrets ({limit}) reached for this credential",
                )
            switches = self.faults.consistency
            delay = switches.accept_delay_ms(credential.client_id) or 0
            secret = self._new_secret(credential, accept_delay_ms=delay, by="api")
            self._touch()
            status = switches.add_status(credential.client_id) or self.settings.add_status
            return Reply(status, {**self._entry(secret), "client_secret": secret.value})

    def delete_secret(
        self,
        org_id: str,
        credential_id: str,
        uuid: str,
        api_key: str | None,
        authorization: str | None,
    ) -> Reply:
        """``DELETE .../secrets/{uuid}``: tokens minted with the secret stay valid."""
        with self._lock:
            credential = self._gate(org_id, credential_id, api_key, authorization, MANAGE_SCOPE)
            if isinstance(credential, Reply):
                return credential
            secret = credential.secrets.get(uuid)
            if secret is None:
                return SECRET_NOT_FOUND
            if len(credential.secrets) == 1 and not self.settings.allow_delete_last_secret:
                return gateway_error(400, "400004", "The last client secret cannot be deleted")
            self._retire(credential, secret, by="api")
            self._touch()
            return Reply(self.settings.delete_status)

    # ------------------------------------------------------------------ persistence

    def to_document(self) -> JSON:
        """The durable part of the world (secret values included) as JSON-ready data.

        Faults, holds and counters are about one test run and are not kept.
        """
        with self._lock:
            now = self.now_ms()
            return {
                "format": PERSIST_FORMAT,
                "clock_offset_s": self.clock_offset_s,
                "orgs": [asdict(org) for org in self._orgs.values()],
                "credentials": [
                    {
                        **{k: v for k, v in asdict(c).items() if k != "secrets"},
                        "secrets": [
                            {
                                "uuid": s.uuid,
                                "value": s.value,
                                "created_at": s.created_at,
                                "accepted_at": s.accepted_at,
                                "usages": dict(s.usages),
                                "pending": [list(p) for p in s.pending],
                            }
                            for s in c.secrets.values()
                        ],
                    }
                    for c in self._credentials.values()
                ],
                "tokens": [
                    {"value": value, **asdict(t), "scopes": sorted(t.scopes)}
                    for value, t in self._tokens.items()
                    if t.status(now) == "active"
                ],
                "retired": [asdict(r) for r in self._retired],
            }

    def load_document(self, document: Mapping[str, Any]) -> None:
        """Replace the world with a saved one (see :meth:`to_document`)."""
        if document.get("format") != PERSIST_FORMAT:
            raise ValueError(f"unsupported sandbox state format {document.get('format')!r}")
        with self._lock:
            self._clear()
            self.clock_offset_s = float(document.get("clock_offset_s", 0.0))
            for raw in document.get("orgs", []):
                org = Org(**raw)
                self._orgs[org.org_id] = org
            for raw in document.get("credentials", []):
                fields_ = {k: v for k, v in raw.items() if k != "secrets"}
                credential = Credential(
                    **{
                        **fields_,
                        "scopes": tuple(fields_["scopes"]),
                        "meta_scopes": tuple(fields_["meta_scopes"]),
                    }
                )
                for s in raw.get("secrets", []):
                    secret = Secret(
                        uuid=s["uuid"],
                        value=s["value"],
                        created_at=s["created_at"],
                        accepted_at=s["accepted_at"],
                        usages={str(k): int(v) for k, v in s.get("usages", {}).items()},
                        pending=[
                            cast(tuple[int, int, str], tuple(p)) for p in s.get("pending", [])
                        ],
                    )
                    credential.secrets[secret.uuid] = secret
                self._credentials[credential.credential_id] = credential
                self._by_client_id[credential.client_id] = credential
            for raw in document.get("tokens", []):
                value = raw["value"]
                token_fields = {k: v for k, v in raw.items() if k != "value"}
                self._tokens[value] = Token(
                    **{**token_fields, "scopes": frozenset(token_fields["scopes"])}
                )
            self._retired = [RetiredSecret(**r) for r in document.get("retired", [])]
            self._org_ids = itertools.count(_next_id(self._orgs, 100001))
            self._credential_ids = itertools.count(_next_id(self._credentials, 300001))
            self._touch()


def _next_id(existing: Iterable[str], floor: int) -> int:
    numeric = [int(i) for i in existing if i.isdigit()]
    return max([floor - 1, *numeric]) + 1
