"""Adobe IMS + I/O Management API over httpx: the `AdobeApi` port.

One `AdobeClient` serves every worker thread of the process. It owns one pooled
`httpx.Client`, a token cache keyed by (client id, sha256 of the secret), and the retry
policy (tenacity). Everything it raises is a `rotator.domain.errors.StepError` whose text
names the credential, the step, the HTTP status and Adobe's own error code/message, and
never a secret or a token: every secret and token it sees is registered with
`rotator.redaction` before anything could log it, and no exception it raises chains to an
httpx object (whose request would hold the form body or the bearer token).

Retry policy, and why:
- 429, 5xx, timeouts and dropped connections are retried with exponential backoff and
  jitter; a `Retry-After` header (seconds or HTTP date) replaces the backoff. When Adobe
  asks for longer than `retry_max_wait`, the client gives up at once with a
  `TransientError` carrying `retry_after`, so a worker thread is not parked for minutes and
  the engine can schedule the next attempt instead.
- Adding a secret is the one call that is not idempotent. It is retried only when Adobe
  cannot have acted on it (429, or the connection was never made). After a 5xx or a
  timeout the secret may exist anyway, so it raises `TransientError` at once; the
  rotation's resume path finds and deletes such an orphan, whereas a blind retry could
  create a second secret and hit the two-secret limit.
- A 401 on an API call drops the cached token and retries once with a fresh one (tokens
  can be revoked); a second 401 is `AccessDenied`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import quote

import httpx

from rotator import redaction
from rotator.adapters.adobe.answers import json_body, parse_list, parse_new, scope
from rotator.adapters.adobe.errors import LIMIT_STATUSES, LIMIT_WORDS, describe, refusal
from rotator.adapters.adobe.ims import Ims
from rotator.adapters.adobe.transport import Kind, RetryingHttp
from rotator.domain.errors import InvariantError, SecretLimit, StepError
from rotator.domain.model import AdobeSecret
from rotator.ports import CredentialRef, NewSecret

log = logging.getLogger("rotator.adapters.adobe")

#: Scopes a credential needs to manage its own client secrets (reference §2).
MANAGEMENT_SCOPES: tuple[str, ...] = (
    "AdobeID",
    "openid",
    "read_organizations",
    "additional_info.projectedProductContext",
    "additional_info.roles",
    "adobeio_api",
    "read_client_secret",
    "manage_client_secrets",
)


class AdobeClient:
    """The `AdobeApi` port for Adobe's IMS and I/O Management API; safe to share across threads.

    Args:
        ims_url: IMS base URL, e.g. ``https://ims-na1.adobelogin.com``.
        api_url: API gateway base URL, e.g. ``https://api.adobe.io``.
        timeout: seconds for connect/read/write/pool-wait of one request, or an
            ``httpx.Timeout`` for finer control.
        max_connections: connection pool size; sized for the worker count (default 32).
        retry_attempts: attempts per request (first try included) for throttling and
            transient failures before `TransientError`.
        retry_max_wait: cap on one backoff wait, in seconds; a Retry-After above it ends
            the call with `TransientError(retry_after=...)` instead of waiting.
        token_margin: a cached token is replaced this many seconds before it expires.
        token_rate: tokens minted per second across the process (None: unlimited);
            `token_burst` mints may go back to back.
        scopes: scopes asked for on every mint (default: `MANAGEMENT_SCOPES`).
        clock: wall-clock seconds; injected so tests can move time.
        sleep: how to wait between retries and for pacing; injected so tests do not sleep.
        transport: an httpx transport (tests pass ``httpx.MockTransport``).
    """

    def __init__(
        self,
        ims_url: str,
        api_url: str,
        *,
        timeout: float | httpx.Timeout = 30.0,
        max_connections: int = 32,
        retry_attempts: int = 5,
        retry_max_wait: float = 30.0,
        token_margin: float = 300.0,
        token_rate: float | None = None,
        token_burst: int = 1,
        scopes: tuple[str, ...] = MANAGEMENT_SCOPES,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._api = api_url.rstrip("/")
        self._http = RetryingHttp(
            timeout=timeout,
            max_connections=max_connections,
            retry_attempts=retry_attempts,
            retry_max_wait=retry_max_wait,
            clock=clock,
            sleep=sleep,
            transport=transport,
        )
        self._ims = Ims(
            self._http,
            ims_url,
            scopes=scopes,
            token_margin=token_margin,
            token_rate=token_rate,
            token_burst=token_burst,
            clock=clock,
            sleep=sleep,
        )
        #: Requests sent per endpoint kind (token, list, add, delete, invalidate), plus
        #: "retries", "throttled" (429s) and "token_cache_hits". Read it; do not write it.
        self.stats: Counter[str] = self._http.stats
        #: Requests by (kind, "ok" | "error"): an answer below 400 is ok; /metrics reads it.
        self.outcomes: Counter[tuple[str, str]] = self._http.outcomes

    # ------------------------------------------------------------------ the AdobeApi port

    def list_secrets(self, cred: CredentialRef, secret: str) -> list[AdobeSecret]:
        """Adobe's client secrets of `cred` (never their values)."""
        step = "list secrets"
        resp = self._api_call(cred, secret, "GET", self._secrets_url(cred), kind="list", step=step)
        if not resp.is_success:
            raise refusal(resp, cred, step, not_found=True)
        return parse_list(json_body(resp, cred, step), cred, step)

    def add_secret(self, cred: CredentialRef, secret: str) -> NewSecret:
        """Create a client secret; its plaintext exists only in the returned `NewSecret`.

        A refusal because the credential already has two secrets raises `SecretLimit`:
        recognised by a 400/409/412/422 whose error mentions a limit, or, when Adobe's
        wording says nothing, by listing the secrets and finding two (the 2-secret limit
        is documented, the error for it is not).
        """
        step = "add secret"
        resp = self._api_call(
            cred, secret, "POST", self._secrets_url(cred), kind="add", step=step, idempotent=False
        )
        if resp.is_success:  # 200, 201, 202...: success is judged by the body's content
            return parse_new(json_body(resp, cred, step), cred, step)
        if resp.status_code in LIMIT_STATUSES and self._is_secret_limit(resp, cred, secret):
            raise SecretLimit(
                f"{describe(resp)}; the credential already has two client secrets "
                "(Adobe allows at most two)",
                credential=cred.name,
                step=step,
            )
        raise refusal(resp, cred, step, not_found=True)

    def delete_secret(self, cred: CredentialRef, secret: str, uuid: str) -> None:
        """Delete the secret `uuid`; one that is already gone (404) counts as deleted."""
        step = f"delete secret {uuid}"
        url = f"{self._secrets_url(cred)}/{quote(uuid, safe='')}"
        resp = self._api_call(cred, secret, "DELETE", url, kind="delete", step=step)
        if resp.is_success:
            return
        if resp.status_code == 404:
            log.info("credential %r: %s: already gone at Adobe", cred.name, step)
            return
        raise refusal(resp, cred, step, not_found=False)

    def verify(self, cred: CredentialRef, secret: str) -> None:
        """Mint a fresh token with `secret` (InvalidClient if refused) and keep it cached.

        The verification token then serves as that secret's management token, so a
        rotation costs one management token plus one verification token.
        """
        self._ims.verify(cred, secret)

    def invalidate_tokens(self, cred: CredentialRef, secret: str) -> int:
        """Invalidate at IMS every token this process minted with `secret`; returns how many
        (IMS authenticates the call with `secret` itself: call it before the delete)."""
        return self._ims.invalidate_tokens(cred, secret)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> AdobeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AdobeClient(ims_url={self._ims.url!r}, api_url={self._api!r})"

    # ------------------------------------------------------------------ the management API

    def _management_token(self, cred: CredentialRef, secret: str, step: str) -> str:
        """The cached token for (client id, secret), minting one if there is none fresh."""
        return self._ims.management_token(cred, secret, step)

    def _secrets_url(self, cred: CredentialRef) -> str:
        org = quote(cred.org_id, safe="")
        cid = quote(cred.credential_id, safe="")
        return f"{self._api}/console/organizations/{org}/credentials/{cid}/secrets"

    def _api_call(
        self,
        cred: CredentialRef,
        secret: str,
        method: str,
        url: str,
        *,
        kind: Kind,
        step: str,
        idempotent: bool = True,
    ) -> httpx.Response:
        """One management API call with a cached token; a 401 gets one fresh-token retry."""
        redaction.register(secret, scope=scope(cred))
        resp: httpx.Response | None = None
        for _ in range(2):
            token = self._management_token(cred, secret, step)
            headers = {"Authorization": f"Bearer {token}", "x-api-key": cred.client_id}
            resp = self._http.send(
                method, url, cred=cred, step=step, kind=kind, headers=headers, idempotent=idempotent
            )
            if resp.status_code != 401:
                return resp
            log.info("credential %r: %s: token refused (401), minting a new one", cred.name, step)
            self._ims.drop_token(cred, secret, token)
        if resp is None:
            raise InvariantError("the token loop always makes one request")
        return resp  # still 401: the caller maps it to AccessDenied

    def _is_secret_limit(self, resp: httpx.Response, cred: CredentialRef, secret: str) -> bool:
        """True if this refused add was the two-secret limit (by Adobe's words or by the fact)."""
        if LIMIT_WORDS.search(describe(resp)):
            return True
        try:
            return len(self.list_secrets(cred, secret)) >= 2
        except StepError:
            return False  # cannot tell: report Adobe's refusal as it stands
