"""HTTP to Adobe with the retry policy (tenacity), and counters of what was sent.

- 429, 5xx, timeouts and dropped connections are retried with exponential backoff and
  jitter; a `Retry-After` header (seconds or HTTP date) replaces the backoff. When Adobe
  asks for longer than `retry_max_wait`, the call gives up at once with `AdobeUnavailable`
  carrying `retry_after`, so a worker thread is not parked for minutes and the engine can
  schedule the next attempt instead.
- A call that is not idempotent (adding a secret) is retried only when Adobe cannot have
  acted on it (429, or the connection was never made).

No exception raised here chains to an httpx object (whose request would hold a form body
with a secret, or a bearer token): everything is raised outside the `except` blocks.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Literal

import httpx
import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from rotator.adapters.adobe.answers import register_answer, retry_after
from rotator.adapters.adobe.errors import AdobeUnavailable, describe
from rotator.domain.errors import PermanentError
from rotator.ports import CredentialRef

log = logging.getLogger("rotator.adapters.adobe")

Kind = Literal["token", "list", "add", "delete", "invalidate"]

_BACKOFF_INITIAL = 0.5  # seconds before the first retry, doubling after that


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


class RetryingHttp:
    """One pooled `httpx.Client` shared by every worker thread, and the retry policy."""

    def __init__(
        self,
        *,
        timeout: float | httpx.Timeout,
        max_connections: int,
        retry_attempts: int,
        retry_max_wait: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        transport: httpx.BaseTransport | None,
    ) -> None:
        if retry_attempts < 1:
            raise ValueError("retry_attempts must be at least 1")
        self._retry_attempts = retry_attempts
        self._retry_max_wait = retry_max_wait
        self._clock = clock
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "rotator"},
            follow_redirects=False,
        )
        self._stats_lock = threading.Lock()
        #: Requests sent per endpoint kind (token, list, add, delete, invalidate), plus
        #: "retries", "throttled" (429s) and "token_cache_hits".
        self.stats: Counter[str] = Counter()
        #: Requests by (kind, "ok" | "error"): an answer below 400 is ok; /metrics reads it.
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def close(self) -> None:
        self._http.close()

    def send(
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
            self.count(kind)
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
            self.count("retries")
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
        register_answer(resp, cred)  # before any message could be built from it
        status = resp.status_code
        if status == 429:
            self.count("throttled")
            raise _Retryable(
                f"throttled ({describe(resp)})",
                retry_after=retry_after(resp, self._clock),
                ambiguous=False,
            )
        if status >= 500:
            raise _Retryable(
                describe(resp), retry_after=retry_after(resp, self._clock), ambiguous=True
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

    def count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    def _outcome(self, kind: str, outcome: str) -> None:
        with self._stats_lock:
            self.outcomes[kind, outcome] += 1
