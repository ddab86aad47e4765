"""IMS: minting tokens (paced), the cache of tokens per (client id, secret), and their
invalidation when a secret is retired.

The cache is keyed by a digest of the secret, never the secret itself. A verification
token is cached as that secret's management token, so a rotation costs one management
token plus one verification token. Every token is registered with `rotator.redaction`
before anything could log it.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rotator import redaction
from rotator.adapters.adobe.answers import json_body, number, scope
from rotator.adapters.adobe.errors import describe, error_code, refusal
from rotator.adapters.adobe.transport import RetryingHttp
from rotator.domain.errors import InvalidClient, PermanentError, StepError
from rotator.ports import CredentialRef

_DEFAULT_TOKEN_LIFETIME = 3600.0  # when a token answer lacks expires_in: assume short, not 24 h


class Pacer:
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
class Token:
    value: str
    use_until: float  # clock time after which a new token is minted (expiry - margin)
    expires_at: float = float("inf")  # clock time after which IMS refuses it anyway


@dataclass
class KeyState:
    """Tokens of one (client id, secret): the one in use and every unexpired one this
    process minted (an expired token needs no invalidation, so it is not kept: a daemon's
    memory and an emergency's invalidation calls do not grow with uptime)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    current: Token | None = None
    minted: list[Token] = field(default_factory=list)
    retired: bool = False  # swept from the map (nothing unexpired left): look it up again

    def remember(self, token: Token, now: float) -> None:
        self.minted = [t for t in self.minted if t.expires_at > now]
        self.minted.append(token)


class TokenCache:
    """Every (client id, secret)'s `KeyState`, swept of spent ones when the map doubles."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._keys_lock = threading.Lock()
        self.keys: dict[tuple[str, str], KeyState] = {}
        self._sweep_at = 64  # `keys` is swept of spent states when it reaches this size

    def find(self, cred: CredentialRef, secret: str) -> KeyState | None:
        with self._keys_lock:
            return self.keys.get(_cache_key(cred, secret))

    def _state(self, cred: CredentialRef, secret: str) -> KeyState:
        key = _cache_key(cred, secret)
        with self._keys_lock:
            state = self.keys.get(key)
            if state is None:
                if len(self.keys) >= self._sweep_at:
                    self._sweep()
                state = self.keys[key] = KeyState()
            return state

    @contextmanager
    def locked(self, cred: CredentialRef, secret: str) -> Iterator[KeyState]:
        """The key's state, locked; never one that `_sweep` has just taken out of the map."""
        while True:
            state = self._state(cred, secret)
            with state.lock:
                if not state.retired:
                    yield state
                    return

    def _sweep(self) -> None:
        """Drop the states of secrets with no unexpired token (deleted ones, mostly); called
        with `_keys_lock` held when the map has doubled, so the cost is amortised."""
        now = self._clock()
        for key, state in list(self.keys.items()):
            if not state.lock.acquire(blocking=False):
                continue  # in use
            try:
                state.minted = [t for t in state.minted if t.expires_at > now]
                if not state.minted:
                    state.retired = True
                    del self.keys[key]
            finally:
                state.lock.release()
        self._sweep_at = max(64, 2 * len(self.keys))


def _cache_key(cred: CredentialRef, secret: str) -> tuple[str, str]:
    """Key tokens by a digest so the cache never holds the secret itself."""
    return cred.client_id, hashlib.sha256(secret.encode()).hexdigest()


class Ims:
    """Tokens for the management API, minted at IMS and cached; shared across threads."""

    def __init__(
        self,
        http: RetryingHttp,
        ims_url: str,
        *,
        scopes: tuple[str, ...],
        token_margin: float,
        token_rate: float | None,
        token_burst: int,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self._http = http
        self.url = ims_url.rstrip("/")
        self._scope = ",".join(scopes)
        self._token_margin = token_margin
        self._clock = clock
        self._sleep = sleep
        self._pacer = Pacer(token_rate, token_burst, clock) if token_rate is not None else None
        self.cache = TokenCache(clock)

    def verify(self, cred: CredentialRef, secret: str) -> None:
        """Mint a fresh token with `secret` (InvalidClient if refused) and keep it cached."""
        redaction.register(secret, scope=scope(cred))
        with self.cache.locked(cred, secret) as state:
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
        redaction.register(secret, scope=scope(cred))
        state = self.cache.find(cred, secret)
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

    def management_token(self, cred: CredentialRef, secret: str, step: str) -> str:
        """The cached token for (client id, secret), minting one if there is none fresh.

        The per-key lock makes concurrent callers for one credential wait for a single mint.
        """
        with self.cache.locked(cred, secret) as state:
            current = state.current
            if current is not None and self._clock() < current.use_until:
                self._http.count("token_cache_hits")
                return current.value
            token = self._mint(cred, secret, step=f"{step} (mint token)")
            state.current = token
            state.remember(token, self._clock())
            return token.value

    def drop_token(self, cred: CredentialRef, secret: str, value: str) -> None:
        """Forget `value` as the current token, unless another thread already replaced it."""
        with self.cache.locked(cred, secret) as state:
            if state.current is not None and state.current.value == value:
                state.current = None

    def _mint(self, cred: CredentialRef, secret: str, *, step: str) -> Token:
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
        resp = self._http.send(
            "POST", f"{self.url}/ims/token/v3", cred=cred, step=step, kind="token", data=form
        )
        if not resp.is_success:
            if resp.status_code in (400, 401) and error_code(resp) == "invalid_client":
                raise InvalidClient(
                    f"{describe(resp)}: Adobe refused this client id / secret",
                    credential=cred.name,
                    step=step,
                )
            raise refusal(resp, cred, step, not_found=False)
        body = json_body(resp, cred, step)
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise PermanentError(
                "token answer has no access_token", credential=cred.name, step=step
            )
        lifetime = number(body.get("expires_in"))
        if lifetime is None or lifetime <= 0:
            lifetime = _DEFAULT_TOKEN_LIFETIME
        redaction.register(value, until=redaction.clock() + lifetime)
        now = self._clock()
        return Token(value, now + max(0.0, lifetime - self._token_margin), now + lifetime)

    def _invalidate_one(self, cred: CredentialRef, secret: str, token: str) -> None:
        step = "invalidate token"
        form = {
            "token_type": "access_token",
            "token": token,
            "cascading": "all",
            "client_id": cred.client_id,
            "client_secret": secret,
        }
        resp = self._http.send(
            "POST",
            f"{self.url}/ims/invalidate_token/v2",
            cred=cred,
            step=step,
            kind="invalidate",
            data=form,
        )
        if resp.is_success:
            return
        code = error_code(resp)
        if resp.status_code == 400 and code == "invalid_token":
            return  # already expired or invalidated: the goal is met
        if resp.status_code in (400, 401) and code == "invalid_client":
            raise InvalidClient(
                f"{describe(resp)}: IMS refused the secret, so its tokens cannot be "
                "invalidated (was it deleted first?)",
                credential=cred.name,
                step=step,
            )
        raise refusal(resp, cred, step, not_found=False)
