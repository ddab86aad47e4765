"""The sandbox's Adobe as data: settings, records (orgs, credentials, secrets, tokens) and the
replies Adobe gives, with no behaviour and no lock in them.

Every Adobe operation answers with a :class:`Reply` (status, JSON body, headers) exactly as
Adobe would, so the whole behaviour is testable without a server and the Starlette layer
stays a thin adapter.

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
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Final

from rotator.devkit.sandbox.consistency import ADD_STATUSES
from rotator.devkit.sandbox.faults import IMS_ENDPOINTS

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
