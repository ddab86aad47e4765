"""How Adobe's refusals become the engine's error kinds, quoting only Adobe's own words.

Only the error code and message fields of an answer are quoted, never its raw body (an
answer of an unexpected shape may carry a secret in any field), and the words are redacted
before they are clipped.
"""

from __future__ import annotations

import re

import httpx

from rotator import redaction
from rotator.domain.errors import (
    AccessDenied,
    NotFound,
    PermanentError,
    StepError,
    TransientError,
)
from rotator.ports import CredentialRef

_DETAIL_MAX = 200  # Adobe's error text is quoted up to this many characters
# Adobe's answer to a third secret is undocumented; these words in its error say "limit".
LIMIT_WORDS = re.compile(r"limit|maximum|\bmax\b|exceed|too many", re.IGNORECASE)
LIMIT_STATUSES = frozenset({400, 409, 412, 422})


class AdobeUnavailable(TransientError):
    """Adobe stayed throttled or unreachable through the retries.

    `retry_after` is Adobe's last Retry-After in seconds (None if it sent none), so the
    engine can schedule the next attempt no earlier than Adobe asked.
    """

    def __init__(
        self, message: str, *, credential: str = "", step: str = "", retry_after: float | None
    ) -> None:
        super().__init__(message, credential=credential, step=step)
        self.retry_after = retry_after


def refusal(resp: httpx.Response, cred: CredentialRef, step: str, *, not_found: bool) -> StepError:
    """Map a non-success answer that retrying will not fix to the engine's error kinds."""
    detail = describe(resp)
    status = resp.status_code
    if status == 401:
        return AccessDenied(
            f"{detail}: token refused even when freshly minted",
            credential=cred.name,
            step=step,
        )
    if status == 403:
        return AccessDenied(
            f"{detail}: check that the I/O Management API is added to the project and "
            "the credential has the secret-management scopes",
            credential=cred.name,
            step=step,
        )
    if status == 404 and not_found:
        return NotFound(
            f"{detail}: credential not found at Adobe: check org_id/credential_id",
            credential=cred.name,
            step=step,
        )
    return PermanentError(f"unexpected answer {detail}", credential=cred.name, step=step)


def body_fields(resp: httpx.Response) -> tuple[str | None, str | None]:
    """(code, message) from the gateway shape or the IMS shape; (None, None) if neither."""
    try:
        body = resp.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    code = body.get("error_code", body.get("error"))
    message = body.get("message", body.get("error_description"))
    return (
        None if code is None else str(code),
        None if message is None else str(message),
    )


def error_code(resp: httpx.Response) -> str | None:
    return body_fields(resp)[0]


def describe(resp: httpx.Response) -> str:
    """'HTTP 403 (403003: Api Key is invalid)': status plus Adobe's words, redacted, clipped.

    Only the error code and message fields are quoted, never the raw body: an answer of an
    unexpected shape may carry a secret (a new client secret, a token) in any field.
    """
    code, message = body_fields(resp)
    words = ": ".join(p for p in (code, message) if p)
    if not words and code is None and message is None:
        kind = resp.headers.get("content-type", "").split(";")[0].strip() or "unknown"
        words = f"a {kind} body of {len(resp.content)} bytes, not quoted"
    words = redaction.redact(words)  # before the cut: a cut secret is no longer recognised
    if len(words) > _DETAIL_MAX:
        words = words[:_DETAIL_MAX] + "..."
    return f"HTTP {resp.status_code}" + (f" ({words})" if words else "")
