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

import email.utils
import hashlib
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import httpx
import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from rotator import redaction
from rotator.domain.errors import (
    AccessDenied,
    InvalidClient,
    InvariantError,
    NotFound,
    PermanentError,
    SecretLimit,
    StepError,
    TransientError,
)
from rotator.domain.model import AdobeSecret, canonical_uuid
from rotator.ports import CredentialRef, NewSecret

__all__ = ["MANAGEMENT_SCOPES", "AdobeClient", "AdobeUnavailable"]

log = logging.getLogger(__name__)

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

Kind = Literal["token", "list", "add", "delete", "invalidate"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BACKOFF_INITIAL = 0.5  # seconds before the first retry, doubling after that
_DEFAULT_TOKEN_LIFETIME = 3600.0  # when a token answer lacks expires_in: assume short, not 24 h
_DETAIL_MAX = 200  # Adobe's error text is quoted up to this many characters
# Adobe's answer to a third secret is undocumented; these words in its error say "limit".
_LIMIT_WORDS = re.compile(r"limit|maximum|\bmax\b|exceed|too many", re.IGNORECASE)
_LIMIT_STATUSES = frozenset({400, 409, 412, 422})


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


class _Retryable(Exception):
    """Internal: one attempt failed in a way that another attempt may fix.

    Carries only text we wrote and numbers, never an httpx object.
    """

    def __init__(self, reason: str, *, retry_after: float | None = None, ambiguous: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        # True when Adobe may have acted on the request (5xx, timeout after sending).
        self.ambiguous = ambiguous


class _WaitRetryAfterOrBackoff(wait_base):
    """Wait what Adobe's Retry-After asks for; without one, back off exponentially with jitter."""

    def __init__(self, max_wait: float) -> None:
        self._max_wait = max_wait
        # Spelled as a sum (not wait_exponential_jitter) to mean the same on tenacity 8 and 9.
        self._backoff = tenacity.wait_exponential(
            multiplier=_BACKOFF_INITIAL, max=max_wait
        ) + tenacity.wait_random(0, _BACKOFF_INITIAL)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = _failure(retry_state)
        if exc is not None and exc.retry_after is not None:
            return min(exc.retry_after, self._max_wait)
        return min(self._max_wait, float(self._backoff(retry_state)))


class _StopIfRetryAfterTooLong(stop_base):
    """Give up when Adobe asks us to wait longer than a worker should sit in a call."""

    def __init__(self, max_wait: float) -> None:
        self._max_wait = max_wait

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        exc = _failure(retry_state)
        return exc is not None and exc.retry_after is not None and exc.retry_after > self._max_wait


def _failure(retry_state: tenacity.RetryCallState) -> _Retryable | None:
    outcome = retry_state.outcome
    if outcome is None or not outcome.failed:
        return None
    exc = outcome.exception()
    return exc if isinstance(exc, _Retryable) else None


class _Pacer:
    """Thread-safe token bucket (GCRA form): at most `rate` mints a second, bursts of `burst`.

    Adobe throttles integrations that mint too many tokens; a fleet-wide first pass over
    hundreds of credentials is exactly that, so the operator may cap it.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        if rate <= 0:
            raise ValueError("token_rate must be positive")
        self._interval = 1.0 / rate
        self._tolerance = (max(burst, 1) - 1) * self._interval
        self._clock = clock
        self._lock = threading.Lock()
        self._tat: float | None = None  # theoretical arrival time of the next mint

    def reserve(self) -> float:
        """Claim the next slot; returns how long the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            tat = now if self._tat is None else max(self._tat, now)
            self._tat = tat + self._interval
            return max(0.0, tat - self._tolerance - now)


@dataclass
class _Token:
    value: str
    use_until: float  # clock time after which a new token is minted (expiry - margin)
    expires_at: float = float("inf")  # clock time after which IMS refuses it anyway


@dataclass
class _KeyState:
    """Tokens of one (client id, secret): the one in use and every unexpired one this
    process minted (an expired token needs no invalidation, so it is not kept: a daemon's
    memory and an emergency's invalidation calls do not grow with uptime)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    current: _Token | None = None
    minted: list[_Token] = field(default_factory=list)
    retired: bool = False  # swept from the map (nothing unexpired left): look it up again

    def remember(self, token: _Token, now: float) -> None:
        self.minted = [t for t in self.minted if t.expires_at > now]
        self.minted.append(token)


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
        if retry_attempts < 1:
            raise ValueError("retry_attempts must be at least 1")
        self._ims = ims_url.rstrip("/")
        self._api = api_url.rstrip("/")
        self._retry_attempts = retry_attempts
        self._retry_max_wait = retry_max_wait
        self._token_margin = token_margin
        self._scope = ",".join(scopes)
        self._clock = clock
        self._sleep = sleep
        self._pacer = _Pacer(token_rate, token_burst, clock) if token_rate is not None else None
        self._http = httpx.Client(
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "rotator"},
            follow_redirects=False,
        )
        self._keys_lock = threading.Lock()
        self._keys: dict[tuple[str, str], _KeyState] = {}
        self._sweep_at = 64  # `_keys` is swept of spent states when it reaches this size
        self._stats_lock = threading.Lock()
        #: Requests sent per endpoint kind (token, list, add, delete, invalidate), plus
        #: "retries", "throttled" (429s) and "token_cache_hits". Read it; do not write it.
        self.stats: Counter[str] = Counter()
        #: Requests by (kind, "ok" | "error"): an answer below 400 is ok; /metrics reads it.
        self.outcomes: Counter[tuple[str, str]] = Counter()

    # ------------------------------------------------------------------ the AdobeApi port

    def list_secrets(self, cred: CredentialRef, secret: str) -> list[AdobeSecret]:
        """Adobe's client secrets of `cred` (never their values)."""
        step = "list secrets"
        resp = self._api_call(cred, secret, "GET", self._secrets_url(cred), kind="list", step=step)
        if not resp.is_success:
            raise self._error(resp, cred, step, not_found=True)
        return _parse_list(_json(resp, cred, step), cred, step)

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
            return _parse_new(_json(resp, cred, step), cred, step)
        if resp.status_code in _LIMIT_STATUSES and self._is_secret_limit(resp, cred, secret):
            raise SecretLimit(
                f"{_detail(resp)}; the credential already has two client secrets "
                "(Adobe allows at most two)",
                credential=cred.name,
                step=step,
            )
        raise self._error(resp, cred, step, not_found=True)

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
        raise self._error(resp, cred, step, not_found=False)

    def verify(self, cred: CredentialRef, secret: str) -> None:
        """Mint a fresh token with `secret` (InvalidClient if refused) and keep it cached.

        The verification token then serves as that secret's management token, so a
        rotation costs one management token plus one verification token.
        """
        redaction.register(secret, scope=_scope(cred))
        with self._locked_state(cred, secret) as state:
            token = self._mint(cred, secret, step="verify secret")
            state.current = token
            state.remember(token, self._clock())

    def invalidate_tokens(self, cred: CredentialRef, secret: str) -> int:
        """Invalidate at IMS every token this process minted with `secret`; returns how many.

        IMS authenticates the call with `secret` itself, so call this before the secret is
        deleted at Adobe. Tokens IMS reports as already invalid count as invalidated. If
        some fail, the rest are still tried, the failed ones stay recorded (a repeat only
        retries those) and the first error is raised.
        """
        redaction.register(secret, scope=_scope(cred))
        key = _cache_key(cred, secret)
        with self._keys_lock:
            state = self._keys.get(key)
        if state is None:
            return 0
        done = 0
        first_error: StepError | None = None
        with state.lock:
            state.current = None  # whatever happens next, stop handing these tokens out
            now = self._clock()
            for token in list(state.minted):
                if token.expires_at <= now:  # IMS refuses it already: nothing to call
                    state.minted.remove(token)
                    continue
                try:
                    self._invalidate_one(cred, secret, token.value)
                except StepError as exc:
                    first_error = first_error or exc
                    continue
                state.minted.remove(token)
                done += 1
            # The (now empty) state stays in the map: a thread that already holds it may
            # mint into it, and that token must stay visible to the next invalidation.
        if first_error is not None:
            raise first_error
        return done

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> AdobeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AdobeClient(ims_url={self._ims!r}, api_url={self._api!r})"

    # ------------------------------------------------------------------ tokens

    def _key_state(self, cred: CredentialRef, secret: str) -> _KeyState:
        key = _cache_key(cred, secret)
        with self._keys_lock:
            state = self._keys.get(key)
            if state is None:
                if len(self._keys) >= self._sweep_at:
                    self._sweep()
                state = self._keys[key] = _KeyState()
            return state

    @contextmanager
    def _locked_state(self, cred: CredentialRef, secret: str) -> Iterator[_KeyState]:
        """The key's state, locked; never one that `_sweep` has just taken out of the map."""
        while True:
            state = self._key_state(cred, secret)
            with state.lock:
                if not state.retired:
                    yield state
                    return

    def _sweep(self) -> None:
        """Drop the states of secrets with no unexpired token (deleted ones, mostly); called
        with `_keys_lock` held when the map has doubled, so the cost is amortised."""
        now = self._clock()
        for key, state in list(self._keys.items()):
            if not state.lock.acquire(blocking=False):
                continue  # in use
            try:
                state.minted = [t for t in state.minted if t.expires_at > now]
                if not state.minted:
                    state.retired = True
                    del self._keys[key]
            finally:
                state.lock.release()
        self._sweep_at = max(64, 2 * len(self._keys))

    def _management_token(self, cred: CredentialRef, secret: str, step: str) -> str:
        """The cached token for (client id, secret), minting one if there is none fresh.

        The per-key lock makes concurrent callers for one credential wait for a single mint.
        """
        with self._locked_state(cred, secret) as state:
            current = state.current
            if current is not None and self._clock() < current.use_until:
                self._count("token_cache_hits")
                return current.value
            token = self._mint(cred, secret, step=f"{step} (mint token)")
            state.current = token
            state.remember(token, self._clock())
            return token.value

    def _drop_token(self, cred: CredentialRef, secret: str, value: str) -> None:
        """Forget `value` as the current token, unless another thread already replaced it."""
        with self._locked_state(cred, secret) as state:
            if state.current is not None and state.current.value == value:
                state.current = None

    def _mint(self, cred: CredentialRef, secret: str, *, step: str) -> _Token:
        """POST /ims/token/v3 with client credentials in the form body (never the query)."""
        if self._pacer is not None:
            wait = self._pacer.reserve()
            if wait > 0:
                self._sleep(wait)
        form = {
            "grant_type": "client_credentials",
            "client_id": cred.client_id,
            "client_secret": secret,
            "scope": self._scope,
        }
        resp = self._send(
            "POST", f"{self._ims}/ims/token/v3", cred=cred, step=step, kind="token", data=form
        )
        if not resp.is_success:
            if resp.status_code in (400, 401) and _error_code(resp) == "invalid_client":
                raise InvalidClient(
                    f"{_detail(resp)}: Adobe refused this client id / secret",
                    credential=cred.name,
                    step=step,
                )
            raise self._error(resp, cred, step, not_found=False)
        body = _json(resp, cred, step)
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise PermanentError(
                "token answer has no access_token", credential=cred.name, step=step
            )
        lifetime = _number(body.get("expires_in"))
        if lifetime is None or lifetime <= 0:
            lifetime = _DEFAULT_TOKEN_LIFETIME
        redaction.register(value, until=redaction.clock() + lifetime)
        now = self._clock()
        return _Token(value, now + max(0.0, lifetime - self._token_margin), now + lifetime)

    def _invalidate_one(self, cred: CredentialRef, secret: str, token: str) -> None:
        step = "invalidate token"
        form = {
            "token_type": "access_token",
            "token": token,
            "cascading": "all",
            "client_id": cred.client_id,
            "client_secret": secret,
        }
        resp = self._send(
            "POST",
            f"{self._ims}/ims/invalidate_token/v2",
            cred=cred,
            step=step,
            kind="invalidate",
            data=form,
        )
        if resp.is_success:
            return
        code = _error_code(resp)
        if resp.status_code == 400 and code == "invalid_token":
            return  # already expired or invalidated: the goal is met
        if resp.status_code in (400, 401) and code == "invalid_client":
            raise InvalidClient(
                f"{_detail(resp)}: IMS refused the secret, so its tokens cannot be "
                "invalidated (was it deleted first?)",
                credential=cred.name,
                step=step,
            )
        raise self._error(resp, cred, step, not_found=False)

    # ------------------------------------------------------------------ HTTP

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
        redaction.register(secret, scope=_scope(cred))
        resp: httpx.Response | None = None
        for _ in range(2):
            token = self._management_token(cred, secret, step)
            headers = {"Authorization": f"Bearer {token}", "x-api-key": cred.client_id}
            resp = self._send(
                method, url, cred=cred, step=step, kind=kind, headers=headers, idempotent=idempotent
            )
            if resp.status_code != 401:
                return resp
            log.info("credential %r: %s: token refused (401), minting a new one", cred.name, step)
            self._drop_token(cred, secret, token)
        if resp is None:
            raise InvariantError("the token loop always makes one request")
        return resp  # still 401: the caller maps it to AccessDenied

    def _send(
        self,
        method: str,
        url: str,
        *,
        cred: CredentialRef,
        step: str,
        kind: Kind,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send with tenacity retries; returns any response that is not 429/5xx."""

        def attempt() -> httpx.Response:
            self._count(kind)
            try:
                resp = self._attempt(method, url, cred=cred, step=step, headers=headers, data=data)
            except BaseException:
                self._outcome(kind, "error")
                raise
            self._outcome(kind, "ok" if resp.status_code < 400 else "error")
            return resp

        def should_retry(exc: BaseException) -> bool:
            return isinstance(exc, _Retryable) and (idempotent or not exc.ambiguous)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self._count("retries")
            exc = _failure(state)
            wait = state.next_action.sleep if state.next_action else 0.0
            reason = exc.reason if exc else "failed"
            attempt_no = state.attempt_number
            log.warning(
                "credential %r: %s: %s; retry %d in %.1fs",
                cred.name,
                step,
                reason,
                attempt_no,
                wait,
            )

        retrying = tenacity.Retrying(
            stop=(
                tenacity.stop_after_attempt(self._retry_attempts)
                | _StopIfRetryAfterTooLong(self._retry_max_wait)
            ),
            wait=_WaitRetryAfterOrBackoff(self._retry_max_wait),
            retry=tenacity.retry_if_exception(should_retry),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retryable as exc:
            failure = exc
        # Raised outside the except block: no __context__ pointing at httpx internals.
        raise self._transient(failure, cred, step, idempotent=idempotent)

    def _attempt(
        self,
        method: str,
        url: str,
        *,
        cred: CredentialRef,
        step: str,
        headers: Mapping[str, str] | None,
        data: Mapping[str, str] | None,
    ) -> httpx.Response:
        """One request. Failures worth retrying become `_Retryable`, stripped of httpx objects.

        Everything is raised outside the `except` blocks so that no exception carries an
        httpx error (and through it the request, its form body or its bearer token).
        """
        resp: httpx.Response | None = None
        failure: _Retryable | None = None
        broken: str | None = None
        try:
            resp = self._http.request(method, url, headers=headers, data=data)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            failure = _Retryable(f"could not connect ({type(exc).__name__})", ambiguous=False)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            failure = _Retryable(f"connection failed ({type(exc).__name__})", ambiguous=True)
        except httpx.HTTPError as exc:  # bad URL, unsupported protocol: configuration
            broken = f"request failed ({type(exc).__name__}); check ims_url/api_url"
        if failure is not None:
            raise failure
        if broken is not None or resp is None:
            raise PermanentError(broken or "no response", credential=cred.name, step=step)
        _register_answer(resp, cred)  # before any message could be built from it
        status = resp.status_code
        if status == 429:
            self._count("throttled")
            raise _Retryable(
                f"throttled ({_detail(resp)})",
                retry_after=_retry_after(resp, self._clock),
                ambiguous=False,
            )
        if status >= 500:
            raise _Retryable(
                _detail(resp), retry_after=_retry_after(resp, self._clock), ambiguous=True
            )
        return resp

    def _transient(
        self, failure: _Retryable, cred: CredentialRef, step: str, *, idempotent: bool
    ) -> AdobeUnavailable:
        message = failure.reason
        if failure.retry_after is not None and failure.retry_after > self._retry_max_wait:
            message += f"; Adobe asked to retry after {failure.retry_after:.0f}s"
        elif idempotent or not failure.ambiguous:
            message += f"; gave up after {self._retry_attempts} attempts"
        if not idempotent and failure.ambiguous:
            message += "; Adobe may have acted on it anyway (not retried: not idempotent)"
        unavailable = AdobeUnavailable(
            message, credential=cred.name, step=step, retry_after=failure.retry_after
        )
        unavailable.maybe_applied = failure.ambiguous
        return unavailable

    def _is_secret_limit(self, resp: httpx.Response, cred: CredentialRef, secret: str) -> bool:
        """True if this refused add was the two-secret limit (by Adobe's words or by the fact)."""
        if _LIMIT_WORDS.search(_detail(resp)):
            return True
        try:
            return len(self.list_secrets(cred, secret)) >= 2
        except StepError:
            return False  # cannot tell: report Adobe's refusal as it stands

    def _error(
        self, resp: httpx.Response, cred: CredentialRef, step: str, *, not_found: bool
    ) -> StepError:
        """Map a non-success answer that retrying will not fix to the engine's error kinds."""
        detail = _detail(resp)
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

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _outcome(self, kind: str, outcome: str) -> None:
        with self._stats_lock:
            self.outcomes[kind, outcome] += 1


# ---------------------------------------------------------------------- parsing helpers


def _scope(cred: CredentialRef) -> str:
    """The redactor keeps a credential's last few secrets (rotator.redaction)."""
    return f"adobe:{cred.client_id}"


def _cache_key(cred: CredentialRef, secret: str) -> tuple[str, str]:
    """Key tokens by a digest so the cache never holds the secret itself."""
    return cred.client_id, hashlib.sha256(secret.encode()).hexdigest()


def _json(resp: httpx.Response, cred: CredentialRef, step: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        pass
    raise PermanentError(
        f"HTTP {resp.status_code} with a body that is not JSON", credential=cred.name, step=step
    )


def _body_fields(resp: httpx.Response) -> tuple[str | None, str | None]:
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


def _error_code(resp: httpx.Response) -> str | None:
    return _body_fields(resp)[0]


def _detail(resp: httpx.Response) -> str:
    """'HTTP 403 (403003: Api Key is invalid)': status plus Adobe's words, redacted, clipped.

    Only the error code and message fields are quoted, never the raw body: an answer of an
    unexpected shape may carry a secret (a new client secret, a token) in any field.
    """
    code, message = _body_fields(resp)
    words = ": ".join(p for p in (code, message) if p)
    if not words and code is None and message is None:
        kind = resp.headers.get("content-type", "").split(";")[0].strip() or "unknown"
        words = f"a {kind} body of {len(resp.content)} bytes, not quoted"
    words = redaction.redact(words)  # before the cut: a cut secret is no longer recognised
    if len(words) > _DETAIL_MAX:
        words = words[:_DETAIL_MAX] + "..."
    return f"HTTP {resp.status_code}" + (f" ({words})" if words else "")


# A field named like one of these holds a secret or a token, whatever answer it comes in.
_SECRET_FIELD = re.compile(r"secret|token|password|passwd|private|api_?key", re.IGNORECASE)
# ...unless its name says it is an id, a time or a kind (secret_uuid, token_type, expires_in).
_NOT_SECRET_FIELD = re.compile(r"uuid|(^|_)id$|_at$|type$|expires|_in$", re.IGNORECASE)
_UNKNOWN_TOKEN_LIFETIME = 48 * 3600.0  # mask a token of unknown lifetime for two days


def _register_answer(resp: httpx.Response, cred: CredentialRef) -> None:
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
        redaction.register(*secrets, scope=_scope(cred))
    if tokens:
        redaction.register(*tokens, until=redaction.clock() + _UNKNOWN_TOKEN_LIFETIME)


def _retry_after(resp: httpx.Response, clock: Callable[[], float]) -> float | None:
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


def _number(value: object) -> float | None:
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


class _Malformed(Exception):
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
        raise _Malformed(f"{what} {_NOT_A_TIME}")
    ms = number * 1000 if abs(number) < _SECONDS_BELOW else number
    try:
        return _EPOCH + timedelta(milliseconds=int(ms))
    except (OverflowError, ValueError):
        raise _Malformed(f"{what} is out of range") from None


def _iso(text: str, what: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _Malformed(f"{what} {_NOT_A_TIME}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _secret_entry(item: object, index: int) -> AdobeSecret:
    if not isinstance(item, dict):
        raise _Malformed(f"client_secrets[{index}] is not an object")
    uuid = item.get("uuid")
    if not isinstance(uuid, str) or not uuid.strip():
        raise _Malformed(f"client_secrets[{index}].uuid is missing")
    uuid = canonical_uuid(uuid)
    created = _millis(item.get("created_at"), f"client_secrets[{index}].created_at")
    usages = item.get("secret_usages")
    last_used: datetime | None = None
    if usages is not None:
        if not isinstance(usages, list):
            raise _Malformed(f"client_secrets[{index}].secret_usages is not a list")
        for usage in usages:
            raw = usage.get("last_used_at") if isinstance(usage, dict) else None
            if raw is None:
                continue
            when = _millis(raw, f"client_secrets[{index}].secret_usages[].last_used_at")
            last_used = when if last_used is None else max(last_used, when)
    return AdobeSecret(uuid=uuid, created_at=created, last_used_at=last_used)


def _parse_list(body: object, cred: CredentialRef, step: str) -> list[AdobeSecret]:
    problem: str
    try:
        if not isinstance(body, dict) or not isinstance(body.get("client_secrets"), list):
            raise _Malformed("no client_secrets list")
        return [_secret_entry(item, i) for i, item in enumerate(body["client_secrets"])]
    except _Malformed as exc:
        problem = str(exc)
    raise PermanentError(f"malformed answer from Adobe: {problem}", credential=cred.name, step=step)


def _parse_new(body: object, cred: CredentialRef, step: str) -> NewSecret:
    """Register the plaintext before anything else can touch it, then read the rest."""
    value = body.get("client_secret") if isinstance(body, dict) else None
    if isinstance(value, str) and value:
        redaction.register(value, scope=_scope(cred))
    problem: str
    try:
        if not isinstance(value, str) or not value:
            raise _Malformed("no client_secret in the answer")
        entry = _secret_entry(body, 0)
        return NewSecret(uuid=entry.uuid, created_at=entry.created_at, value=value)
    except _Malformed as exc:
        problem = str(exc).replace("client_secrets[0].", "")
    raise PermanentError(
        f"malformed answer from Adobe: {problem}; a secret may have been created anyway",
        credential=cred.name,
        step=step,
    )
