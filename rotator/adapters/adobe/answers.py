"""Reading Adobe's answers: JSON bodies, secret lists and new secrets (uuids made canonical,
`created_at` / `last_used_at` in milliseconds, seconds or ISO 8601), Retry-After, and the
masking of every secret- or token-named field before anything could quote it.

An answer of a shape rotator does not rely on is refused whole (`Malformed` inside,
`PermanentError` outside): a secret whose time cannot be read is never taken as unused.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from rotator import redaction
from rotator.domain.errors import PermanentError
from rotator.domain.model import AdobeSecret, canonical_uuid
from rotator.ports import CredentialRef, NewSecret

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def scope(cred: CredentialRef) -> str:
    """The redactor keeps a credential's last few secrets (rotator.redaction)."""
    return f"adobe:{cred.client_id}"


def json_body(resp: httpx.Response, cred: CredentialRef, step: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        pass
    raise PermanentError(
        f"HTTP {resp.status_code} with a body that is not JSON", credential=cred.name, step=step
    )


# A field named like one of these holds a secret or a token, whatever answer it comes in.
_SECRET_FIELD = re.compile(r"secret|token|password|passwd|private|api_?key", re.IGNORECASE)
# ...unless its name says it is an id, a time or a kind (secret_uuid, token_type, expires_in).
_NOT_SECRET_FIELD = re.compile(r"uuid|(^|_)id$|_at$|type$|expires|_in$", re.IGNORECASE)
_UNKNOWN_TOKEN_LIFETIME = 48 * 3600.0  # mask a token of unknown lifetime for two days


def register_answer(resp: httpx.Response, cred: CredentialRef) -> None:
    """Register every secret- or token-named string of a JSON answer with the redactor.

    Done for every answer before it is parsed or quoted, so that an answer of a shape
    rotator did not expect (an add answered 202, an error that echoes the request) cannot
    carry a secret into an error message, a log line or the audit record.
    """
    try:
        body = resp.json()
    except ValueError:
        return
    secrets: list[str] = []
    tokens: list[str] = []
    stack: list[Any] = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, dict | list):
                    stack.append(value)
                elif (
                    isinstance(value, str)
                    and _SECRET_FIELD.search(str(key))
                    and not _NOT_SECRET_FIELD.search(str(key))
                ):
                    (tokens if "token" in str(key).lower() else secrets).append(value)
    if secrets:
        redaction.register(*secrets, scope=scope(cred))
    if tokens:
        redaction.register(*tokens, until=redaction.clock() + _UNKNOWN_TOKEN_LIFETIME)


def retry_after(resp: httpx.Response, clock: Callable[[], float]) -> float | None:
    """Retry-After as seconds from now: either delta-seconds or an HTTP date."""
    raw = resp.headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - clock())


def number(value: object) -> float | None:
    """A JSON number or a numeric string; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


class Malformed(Exception):
    """Internal: the body does not have the shape we rely on; the text says which part."""


#: Below this many units since the epoch, a time is in seconds, not milliseconds: 1e11 ms
#: is March 1973 (no secret is that old), 1e11 s is the year 5138.
_SECONDS_BELOW = 10**11
_NOT_A_TIME = "is not milliseconds since the epoch (nor seconds, nor an ISO 8601 time)"


def _millis(value: object, what: str) -> datetime:
    """A time Adobe reports, as UTC. Adobe documents strings of milliseconds since the
    epoch (numbers are accepted too). A value below `_SECONDS_BELOW` can only be seconds
    (read as milliseconds it would be 1970, and a use in 1970 would make a busy secret look
    quiet for half a century), so it is read as seconds; an ISO 8601 time (an offset or Z,
    or none: UTC) is read as such. Anything else refuses the whole answer (malformed):
    a secret whose time cannot be read is never taken as unused."""
    number: float | None = None
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return _iso(text, what)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    if number is None or number != number:  # None, or NaN
        raise Malformed(f"{what} {_NOT_A_TIME}")
    ms = number * 1000 if abs(number) < _SECONDS_BELOW else number
    try:
        return _EPOCH + timedelta(milliseconds=int(ms))
    except (OverflowError, ValueError):
        raise Malformed(f"{what} is out of range") from None


def _iso(text: str, what: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise Malformed(f"{what} {_NOT_A_TIME}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _secret_entry(item: object, index: int) -> AdobeSecret:
    if not isinstance(item, dict):
        raise Malformed(f"client_secrets[{index}] is not an object")
    uuid = item.get("uuid")
    if not isinstance(uuid, str) or not uuid.strip():
        raise Malformed(f"client_secrets[{index}].uuid is missing")
    uuid = canonical_uuid(uuid)
    created = _millis(item.get("created_at"), f"client_secrets[{index}].created_at")
    usages = item.get("secret_usages")
    last_used: datetime | None = None
    if usages is not None:
        if not isinstance(usages, list):
            raise Malformed(f"client_secrets[{index}].secret_usages is not a list")
        for usage in usages:
            raw = usage.get("last_used_at") if isinstance(usage, dict) else None
            if raw is None:
                continue
            when = _millis(raw, f"client_secrets[{index}].secret_usages[].last_used_at")
            last_used = when if last_used is None else max(last_used, when)
    return AdobeSecret(uuid=uuid, created_at=created, last_used_at=last_used)


def parse_list(body: object, cred: CredentialRef, step: str) -> list[AdobeSecret]:
    problem: str
    try:
        if not isinstance(body, dict) or not isinstance(body.get("client_secrets"), list):
            raise Malformed("no client_secrets list")
        return [_secret_entry(item, i) for i, item in enumerate(body["client_secrets"])]
    except Malformed as exc:
        problem = str(exc)
    raise PermanentError(f"malformed answer from Adobe: {problem}", credential=cred.name, step=step)


def parse_new(body: object, cred: CredentialRef, step: str) -> NewSecret:
    """Register the plaintext before anything else can touch it, then read the rest."""
    value = body.get("client_secret") if isinstance(body, dict) else None
    if isinstance(value, str) and value:
        redaction.register(value, scope=scope(cred))
    problem: str
    try:
        if not isinstance(value, str) or not value:
            raise Malformed("no client_secret in the answer")
        entry = _secret_entry(body, 0)
        return NewSecret(uuid=entry.uuid, created_at=entry.created_at, value=value)
    except Malformed as exc:
        problem = str(exc).replace("client_secrets[0].", "")
    raise PermanentError(
        f"malformed answer from Adobe: {problem}; a secret may have been created anyway",
        credential=cred.name,
        step=step,
    )
