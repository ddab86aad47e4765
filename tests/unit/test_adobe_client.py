"""AdobeClient against httpx.MockTransport: parsing, error mapping, token caching, retries.

The mock only answers what a test scripts; the behaviour of a real Adobe lives in the
sandbox contract tests. No test sleeps: the client gets a recording `sleep` and a fake clock.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from rotator import redaction
from rotator.adapters.adobe import MANAGEMENT_SCOPES, AdobeClient, AdobeUnavailable
from rotator.domain.errors import (
    AccessDenied,
    InvalidClient,
    NotFound,
    PermanentError,
    SecretLimit,
    StepError,
    TransientError,
)
from rotator.ports import CredentialRef

IMS = "https://ims.test"
API = "https://api.test"
SECRET = "p8e-OLD-secret-value-0123456789abcdef"
OTHER_SECRET = "p8e-OTHER-secret-value-fedcba9876543210"
NEW_SECRET = "p8e-NEW-secret-value-aaaaaaaaaaaaaaaa"
CRED = CredentialRef(name="analytics", org_id="1234", credential_id="5678", client_id="cid-abc")
SECRETS_PATH = "/console/organizations/1234/credentials/5678/secrets"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A clock that only moves when told to, and a sleep that records and advances it."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


class FakeAdobe:
    """Scripted Adobe: mints numbered tokens, records every request, lets tests override routes."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.tokens_minted: list[str] = []
        self.counts: Counter[str] = Counter()
        self.routes: dict[tuple[str, str], Handler] = {}
        self.expires_in: Any = 86399
        self.token_delay = 0.0
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            self.counts[(request.method, request.url.path).__str__()] += 1
        route = self.routes.get((request.method, request.url.path))
        if route is not None:
            return route(request)
        if request.url.path == "/ims/token/v3":
            return self.mint(request)
        return httpx.Response(599, json={"message": f"unscripted {request.url.path}"})

    def mint(self, request: httpx.Request) -> httpx.Response:
        if self.token_delay:
            time.sleep(self.token_delay)  # widens the race window in the threading test
        with self._lock:
            token = f"tok-{len(self.tokens_minted) + 1:04d}-ZZZZZZZZZZZZ"
            self.tokens_minted.append(token)
        return httpx.Response(
            200, json={"access_token": token, "token_type": "bearer", "expires_in": self.expires_in}
        )

    def on(self, method: str, path: str, *responses: httpx.Response | Handler) -> None:
        """Answer `method path` with these responses in order; the last one repeats."""
        queue = list(responses)

        def handler(request: httpx.Request) -> httpx.Response:
            item = queue.pop(0) if len(queue) > 1 else queue[0]
            return item(request) if callable(item) else item

        self.routes[(method, path)] = handler

    def paths(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]


@pytest.fixture
def adobe() -> FakeAdobe:
    return FakeAdobe()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_client(adobe: FakeAdobe, fake_time: FakeTime) -> Iterator[Callable[..., AdobeClient]]:
    made: list[AdobeClient] = []

    def make(**kwargs: Any) -> AdobeClient:
        kwargs.setdefault("clock", fake_time.clock)
        kwargs.setdefault("sleep", fake_time.sleep)
        client = AdobeClient(IMS, API, transport=httpx.MockTransport(adobe), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., AdobeClient]) -> AdobeClient:
    return make_client()


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def listing(*entries: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"client_id": CRED.client_id, "client_secrets": list(entries)})


def entry(uuid: str, created: Any = "1682448485000", usages: Any = None) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "created_at": created,
        "created_at_str": "Tue, Apr 25 2023 18:48:05.000 UTC",
        "expires_at": "PERMANENT",
        "expires_at_str": "PERMANENT",
        "secret_usages": usages,
    }


def gateway_error(status: int, code: str, message: str) -> httpx.Response:
    """The api.adobe.io gateway's error shape."""
    return httpx.Response(status, json={"error_code": code, "message": message})


def ims_error(status: int, error: str, description: str) -> httpx.Response:
    """IMS's error shape."""
    return httpx.Response(status, json={"error": error, "error_description": description})


BAD_SECRET = ims_error(400, "invalid_client", "invalid client_secret parameter")


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


# ---------------------------------------------------------------------------- list


def test_list_parses_string_millis_null_usages_and_latest_usage(
    client: AdobeClient, adobe: FakeAdobe
) -> None:
    adobe.on(
        "GET",
        SECRETS_PATH,
        listing(
            entry("u-old", "1682448485000", None),
            entry(
                "u-new",
                "1683000000123",
                [
                    {"last_used_at": "1683162010101", "grant_type": "client_credentials"},
                    {"last_used_at": "1683162999999", "grant_type": "other"},
                    {"last_used_at": None, "grant_type": "third"},
                ],
            ),
        ),
    )
    old, new = client.list_secrets(CRED, SECRET)

    assert (old.uuid, old.created_at, old.last_used_at) == ("u-old", ms(1682448485000), None)
    assert new.created_at == ms(1683000000123)
    assert new.created_at.tzinfo is UTC
    assert new.created_at.microsecond == 123_000  # milliseconds kept exactly
    assert new.last_used_at == ms(1683162999999)  # the latest over all usages


def test_list_accepts_numbers_and_empty_usages(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on(
        "GET",
        SECRETS_PATH,
        listing(
            entry("u1", 1682448485000, []),
            entry("u2", 1682448485000, [{"last_used_at": 1683162010101}]),
        ),
    )
    first, second = client.list_secrets(CRED, SECRET)
    assert first.created_at == ms(1682448485000) and first.last_used_at is None
    assert second.last_used_at == ms(1683162010101)


def test_list_sends_bearer_token_and_api_key(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("GET", SECRETS_PATH, listing())
    assert client.list_secrets(CRED, SECRET) == []
    (call,) = adobe.paths(SECRETS_PATH)
    assert call.headers["Authorization"] == f"Bearer {adobe.tokens_minted[0]}"
    assert call.headers["x-api-key"] == CRED.client_id


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"secrets": []}, "no client_secrets list"),
        ({"client_secrets": [{"created_at": "1"}]}, "uuid is missing"),
        ({"client_secrets": [entry("u1", "yesterday")]}, "created_at is not milliseconds"),
        ({"client_secrets": [entry("u1", "1", "nope")]}, "secret_usages is not a list"),
        ([1, 2], "no client_secrets list"),
    ],
)
def test_list_malformed_body_is_a_clear_permanent_error(
    client: AdobeClient, adobe: FakeAdobe, body: Any, says: str
) -> None:
    adobe.on("GET", SECRETS_PATH, httpx.Response(200, json=body))
    with pytest.raises(PermanentError) as caught:
        client.list_secrets(CRED, SECRET)
    assert type(caught.value) is PermanentError
    assert caught.value.credential == "analytics" and caught.value.step == "list secrets"
    assert says in str(caught.value) and "analytics" in str(caught.value)


def test_list_non_json_body(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("GET", SECRETS_PATH, httpx.Response(200, text="<html>hello</html>"))
    with pytest.raises(PermanentError, match="not JSON"):
        client.list_secrets(CRED, SECRET)


def test_list_404_is_not_found(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("GET", SECRETS_PATH, gateway_error(404, "404", "Credential Not Found"))
    with pytest.raises(NotFound) as caught:
        client.list_secrets(CRED, SECRET)
    text = str(caught.value)
    assert "check org_id/credential_id" in text
    assert "HTTP 404" in text and "Credential Not Found" in text and "list secrets" in text


# ---------------------------------------------------------------------------- add


@pytest.mark.parametrize("status", [200, 201])
def test_add_accepts_200_and_201_and_registers_the_value(
    client: AdobeClient, adobe: FakeAdobe, status: int
) -> None:
    value = f"p8e-fresh-{status}-never-seen-before-xyz"
    adobe.on(
        "POST",
        SECRETS_PATH,
        httpx.Response(status, json={**entry("u-new", "1700000000000"), "client_secret": value}),
    )

    new = client.add_secret(CRED, SECRET)

    assert (new.uuid, new.created_at, new.value) == ("u-new", ms(1700000000000), value)
    assert redaction.redact(f"x {value} y") == f"x {redaction.MASK} y"
    (call,) = adobe.paths(SECRETS_PATH)
    assert call.content == b""


def test_add_malformed_answer_still_registers_the_value(
    client: AdobeClient, adobe: FakeAdobe
) -> None:
    value = "p8e-malformed-answer-secret-0000"
    adobe.on("POST", SECRETS_PATH, httpx.Response(201, json={"client_secret": value}))
    with pytest.raises(PermanentError) as caught:
        client.add_secret(CRED, SECRET)
    assert "may have been created" in str(caught.value)
    assert value not in str(caught.value)
    assert redaction.redact(value) == redaction.MASK


def test_add_limit_recognised_by_wording(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on(
        "POST", SECRETS_PATH, gateway_error(400, "400050", "Maximum number of secrets reached")
    )
    with pytest.raises(SecretLimit) as caught:
        client.add_secret(CRED, SECRET)
    assert "400050" in str(caught.value) and caught.value.step == "add secret"
    assert [r.method for r in adobe.paths(SECRETS_PATH)] == ["POST"]  # no listing needed


def test_add_limit_recognised_by_fact(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("POST", SECRETS_PATH, gateway_error(409, "409001", "Conflict"))
    adobe.on("GET", SECRETS_PATH, listing(entry("a"), entry("b")))
    with pytest.raises(SecretLimit):
        client.add_secret(CRED, SECRET)


def test_add_refusal_with_one_secret_is_permanent_not_limit(
    client: AdobeClient, adobe: FakeAdobe
) -> None:
    adobe.on("POST", SECRETS_PATH, gateway_error(400, "400001", "Bad request"))
    adobe.on("GET", SECRETS_PATH, listing(entry("a")))
    with pytest.raises(PermanentError) as caught:
        client.add_secret(CRED, SECRET)
    assert type(caught.value) is PermanentError
    assert "HTTP 400 (400001: Bad request)" in str(caught.value)


def test_add_5xx_is_not_retried_because_it_may_have_created_a_secret(
    client: AdobeClient, adobe: FakeAdobe
) -> None:
    adobe.on("POST", SECRETS_PATH, httpx.Response(502, json={"message": "bad gateway"}))
    with pytest.raises(TransientError, match="may have acted"):
        client.add_secret(CRED, SECRET)
    assert len(adobe.paths(SECRETS_PATH)) == 1


def test_add_429_is_retried(client: AdobeClient, adobe: FakeAdobe, fake_time: FakeTime) -> None:
    ok = httpx.Response(201, json={**entry("u-new"), "client_secret": NEW_SECRET})
    adobe.on("POST", SECRETS_PATH, httpx.Response(429, headers={"Retry-After": "2"}), ok)
    assert client.add_secret(CRED, SECRET).uuid == "u-new"
    assert fake_time.sleeps == [2.0]


def test_add_404_is_not_found(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("POST", SECRETS_PATH, httpx.Response(404))
    with pytest.raises(NotFound, match="check org_id/credential_id"):
        client.add_secret(CRED, SECRET)


# ---------------------------------------------------------------------------- delete


@pytest.mark.parametrize("status", [200, 204, 404])
def test_delete_accepts_200_204_and_gone(
    client: AdobeClient, adobe: FakeAdobe, status: int
) -> None:
    adobe.on("DELETE", f"{SECRETS_PATH}/u-old", httpx.Response(status))
    client.delete_secret(CRED, SECRET, "u-old")
    assert [r.method for r in adobe.paths(f"{SECRETS_PATH}/u-old")] == ["DELETE"]


def test_delete_other_4xx_is_permanent_and_names_the_uuid(
    client: AdobeClient, adobe: FakeAdobe
) -> None:
    adobe.on(
        "DELETE", f"{SECRETS_PATH}/u-old", gateway_error(400, "400009", "Cannot delete last secret")
    )
    with pytest.raises(PermanentError) as caught:
        client.delete_secret(CRED, SECRET, "u-old")
    assert caught.value.step == "delete secret u-old"
    assert "Cannot delete last secret" in str(caught.value)


# ---------------------------------------------------------------------------- retries


def test_429_honours_retry_after_seconds(
    client: AdobeClient, adobe: FakeAdobe, fake_time: FakeTime
) -> None:
    adobe.on("GET", SECRETS_PATH, httpx.Response(429, headers={"Retry-After": "7"}), listing())
    assert client.list_secrets(CRED, SECRET) == []
    assert fake_time.sleeps == [7.0]
    assert client.stats["retries"] == 1 and client.stats["throttled"] == 1
    assert client.stats["list"] == 2


def test_429_honours_retry_after_http_date(
    client: AdobeClient, adobe: FakeAdobe, fake_time: FakeTime
) -> None:
    when = datetime.fromtimestamp(fake_time.now + 12, tz=UTC)
    adobe.on(
        "GET",
        SECRETS_PATH,
        httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)}),
        listing(),
    )
    client.list_secrets(CRED, SECRET)
    assert fake_time.sleeps == [pytest.approx(12.0, abs=1.0)]


def test_retry_after_beyond_max_wait_gives_up_at_once(
    make_client: Callable[..., AdobeClient], adobe: FakeAdobe, fake_time: FakeTime
) -> None:
    client = make_client(retry_max_wait=30.0)
    adobe.on("GET", SECRETS_PATH, httpx.Response(429, headers={"Retry-After": "600"}))
    with pytest.raises(AdobeUnavailable) as caught:
        client.list_secrets(CRED, SECRET)
    assert caught.value.retry_after == 600.0
    assert "retry after 600s" in str(caught.value)
    assert fake_time.sleeps == [] and len(adobe.paths(SECRETS_PATH)) == 1


def test_5xx_is_retried_with_backoff_then_transient(
    make_client: Callable[..., AdobeClient], adobe: FakeAdobe, fake_time: FakeTime
) -> None:
    client = make_client(retry_attempts=4, retry_max_wait=5.0)
    adobe.on("GET", SECRETS_PATH, gateway_error(503, "503", "Service Unavailable"))
    with pytest.raises(TransientError) as caught:
        client.list_secrets(CRED, SECRET)
    assert isinstance(caught.value, AdobeUnavailable) and caught.value.retry_after is None
    text = str(caught.value)
    assert "HTTP 503" in text and "gave up after 4 attempts" in text and "analytics" in text
    assert len(adobe.paths(SECRETS_PATH)) == 4
    assert len(fake_time.sleeps) == 3
    assert all(0 < s <= 5.0 for s in fake_time.sleeps)
    assert client.stats["retries"] == 3


def test_5xx_then_success(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("GET", SECRETS_PATH, httpx.Response(500), httpx.Response(502), listing(entry("a")))
    assert [s.uuid for s in client.list_secrets(CRED, SECRET)] == ["a"]


def test_connection_errors_are_retried_and_not_chained(
    client: AdobeClient, adobe: FakeAdobe, fake_time: FakeTime
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused {request.content!r}", request=request)

    adobe.routes[("POST", "/ims/token/v3")] = refuse
    with pytest.raises(TransientError) as caught:
        client.list_secrets(CRED, SECRET)
    err = caught.value
    assert "could not connect (ConnectError)" in str(err)
    assert err.__cause__ is None and err.__context__ is None
    assert len(fake_time.sleeps) == 4  # 5 attempts
    assert SECRET not in "".join(traceback.format_exception(err))


def test_timeouts_are_retried(client: AdobeClient, adobe: FakeAdobe) -> None:
    calls = iter([True, False])

    def flaky(request: httpx.Request) -> httpx.Response:
        if next(calls):
            raise httpx.ReadTimeout("slow", request=request)
        return listing()

    adobe.routes[("GET", SECRETS_PATH)] = flaky
    assert client.list_secrets(CRED, SECRET) == []


# ---------------------------------------------------------------------------- auth errors


def test_invalid_client_on_token(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("POST", "/ims/token/v3", BAD_SECRET)
    with pytest.raises(InvalidClient) as caught:
        client.list_secrets(CRED, SECRET)
    text = str(caught.value)
    assert "invalid_client: invalid client_secret parameter" in text
    assert "mint token" in text and "analytics" in text
    assert len(adobe.paths("/ims/token/v3")) == 1  # a refusal is not retried


def test_401_refreshes_the_token_once(client: AdobeClient, adobe: FakeAdobe) -> None:
    expired = gateway_error(401, "401013", "Oauth token is not valid")
    adobe.on("GET", SECRETS_PATH, expired, listing())
    assert client.list_secrets(CRED, SECRET) == []
    calls = adobe.paths(SECRETS_PATH)
    assert [c.headers["Authorization"] for c in calls] == [
        f"Bearer {t}" for t in adobe.tokens_minted
    ]
    assert len(adobe.tokens_minted) == 2
    client.list_secrets(CRED, SECRET)  # the fresh token is cached
    assert len(adobe.tokens_minted) == 2


def test_401_twice_is_access_denied(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("GET", SECRETS_PATH, gateway_error(401, "401013", "Oauth token is not valid"))
    with pytest.raises(AccessDenied, match="401013: Oauth token is not valid"):
        client.list_secrets(CRED, SECRET)
    assert len(adobe.tokens_minted) == 2 and len(adobe.paths(SECRETS_PATH)) == 2


def test_403_is_access_denied(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("GET", SECRETS_PATH, gateway_error(403, "403003", "Api Key is invalid"))
    with pytest.raises(AccessDenied) as caught:
        client.list_secrets(CRED, SECRET)
    assert "HTTP 403 (403003: Api Key is invalid)" in str(caught.value)
    assert len(adobe.paths(SECRETS_PATH)) == 1


# ---------------------------------------------------------------------------- tokens


def test_token_request_uses_the_form_body(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("GET", SECRETS_PATH, listing())
    client.list_secrets(CRED, SECRET)
    (mint,) = adobe.paths("/ims/token/v3")
    assert mint.method == "POST" and mint.url.query == b""
    assert mint.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(mint) == {
        "grant_type": "client_credentials",
        "client_id": CRED.client_id,
        "client_secret": SECRET,
        "scope": ",".join(MANAGEMENT_SCOPES),
    }


def test_token_cache_is_reused_across_calls_and_keyed_by_secret(
    client: AdobeClient, adobe: FakeAdobe
) -> None:
    adobe.on("GET", SECRETS_PATH, listing())
    adobe.on("DELETE", f"{SECRETS_PATH}/x", httpx.Response(204))
    for _ in range(3):
        client.list_secrets(CRED, SECRET)
    client.delete_secret(CRED, SECRET, "x")
    assert len(adobe.tokens_minted) == 1
    client.list_secrets(CRED, OTHER_SECRET)  # another secret, another token
    assert len(adobe.tokens_minted) == 2
    assert client.stats["token"] == 2 and client.stats["token_cache_hits"] == 3


def test_token_cache_is_shared_by_threads_and_minted_once(
    client: AdobeClient, adobe: FakeAdobe
) -> None:
    adobe.on("GET", SECRETS_PATH, listing())
    adobe.token_delay = 0.05
    start = threading.Barrier(32)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            client.list_secrets(CRED, SECRET)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(adobe.tokens_minted) == 1
    assert len(adobe.paths(SECRETS_PATH)) == 32


def test_token_is_renewed_token_margin_before_expiry(
    make_client: Callable[..., AdobeClient], adobe: FakeAdobe, fake_time: FakeTime
) -> None:
    client = make_client(token_margin=300.0)
    adobe.expires_in = "1000"  # strings are accepted too
    adobe.on("GET", SECRETS_PATH, listing())
    client.list_secrets(CRED, SECRET)
    fake_time.now += 699
    client.list_secrets(CRED, SECRET)
    assert len(adobe.tokens_minted) == 1
    fake_time.now += 1
    client.list_secrets(CRED, SECRET)
    assert len(adobe.tokens_minted) == 2


def test_verify_mints_fresh_and_caches_the_token(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("GET", SECRETS_PATH, listing())
    client.list_secrets(CRED, SECRET)
    client.verify(CRED, SECRET)  # fresh even though one is cached
    assert len(adobe.tokens_minted) == 2
    client.verify(CRED, NEW_SECRET)
    client.list_secrets(CRED, NEW_SECRET)  # served by the verification token
    assert len(adobe.tokens_minted) == 3
    last = adobe.paths(SECRETS_PATH)[-1]
    assert last.headers["Authorization"] == f"Bearer {adobe.tokens_minted[2]}"
    assert form(adobe.paths("/ims/token/v3")[2])["client_secret"] == NEW_SECRET


def test_verify_refused_is_invalid_client(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("POST", "/ims/token/v3", BAD_SECRET)
    with pytest.raises(InvalidClient) as caught:
        client.verify(CRED, NEW_SECRET)
    assert caught.value.step == "verify secret"


def test_invalidate_tokens_posts_each_minted_token(
    client: AdobeClient, adobe: FakeAdobe, fake_time: FakeTime
) -> None:
    adobe.on("GET", SECRETS_PATH, listing())
    adobe.on("POST", "/ims/invalidate_token/v2", httpx.Response(200, json={}))
    client.list_secrets(CRED, SECRET)
    client.verify(CRED, SECRET)
    client.list_secrets(CRED, OTHER_SECRET)  # not this secret's: left alone

    assert client.invalidate_tokens(CRED, SECRET) == 2

    posts = adobe.paths("/ims/invalidate_token/v2")
    assert [form(p) for p in posts] == [
        {
            "token_type": "access_token",
            "token": token,
            "cascading": "all",
            "client_id": CRED.client_id,
            "client_secret": SECRET,
        }
        for token in adobe.tokens_minted[:2]
    ]
    assert all(p.url.query == b"" for p in posts)
    assert client.stats["invalidate"] == 2
    assert client.invalidate_tokens(CRED, SECRET) == 0  # nothing left to invalidate
    client.list_secrets(CRED, SECRET)  # dropped from the cache: a new token is minted
    assert len(adobe.tokens_minted) == 4


def test_invalidate_tokens_of_unknown_secret_is_zero(client: AdobeClient) -> None:
    assert client.invalidate_tokens(CRED, NEW_SECRET) == 0


def test_invalidate_failure_keeps_the_token_for_a_repeat(
    client: AdobeClient, adobe: FakeAdobe
) -> None:
    adobe.on("GET", SECRETS_PATH, listing())
    adobe.on(
        "POST",
        "/ims/invalidate_token/v2",
        BAD_SECRET,
        httpx.Response(200),
    )
    client.list_secrets(CRED, SECRET)
    with pytest.raises(InvalidClient, match="was it deleted first"):
        client.invalidate_tokens(CRED, SECRET)
    assert client.invalidate_tokens(CRED, SECRET) == 1


def test_token_rate_paces_mints(
    make_client: Callable[..., AdobeClient], adobe: FakeAdobe, fake_time: FakeTime
) -> None:
    client = make_client(token_rate=2.0)
    for secret in (SECRET, OTHER_SECRET, NEW_SECRET):
        client.verify(CRED, secret)
    assert fake_time.sleeps == [0.5, 0.5]


def test_malformed_token_answer(client: AdobeClient, adobe: FakeAdobe) -> None:
    adobe.on("POST", "/ims/token/v3", httpx.Response(200, json={"token_type": "bearer"}))
    with pytest.raises(PermanentError, match="no access_token"):
        client.verify(CRED, SECRET)


# ---------------------------------------------------------------------------- no leaks


def test_no_secret_or_token_in_errors_or_logs(
    make_client: Callable[..., AdobeClient], adobe: FakeAdobe, caplog: pytest.LogCaptureFixture
) -> None:
    """Drive every failure path and look for the raw values (not relying on redaction)."""
    caplog.set_level(logging.DEBUG)
    client = make_client(retry_attempts=2)
    echo = f"echo {SECRET} {NEW_SECRET}"
    errors: list[StepError] = []

    def attempt(call: Callable[[], object]) -> None:
        try:
            call()
        except StepError as exc:
            errors.append(exc)

    # Adobe echoing a secret in its error text is masked, not quoted.
    adobe.on("POST", "/ims/token/v3", ims_error(400, "invalid_client", echo))
    attempt(lambda: client.verify(CRED, SECRET))
    del adobe.routes[("POST", "/ims/token/v3")]
    for status in (401, 403, 404, 418, 503):
        adobe.on("GET", SECRETS_PATH, gateway_error(status, str(status), "no"))
        attempt(lambda: client.list_secrets(CRED, SECRET))
    adobe.on("POST", SECRETS_PATH, httpx.Response(201, json={"client_secret": NEW_SECRET}))
    attempt(lambda: client.add_secret(CRED, SECRET))
    adobe.on("POST", "/ims/invalidate_token/v2", httpx.Response(500, text=echo))
    attempt(lambda: client.invalidate_tokens(CRED, SECRET))

    assert len(errors) == 8
    values = [SECRET, NEW_SECRET, *adobe.tokens_minted]
    assert adobe.tokens_minted
    texts = [caplog.text, repr(client)]
    for err in errors:
        texts += [str(err), repr(err), "".join(traceback.format_exception(err))]
    for text in texts:
        for value in values:
            assert value not in text
