"""I5 in the logs: a registered secret value never leaves the process in a log line.

Each test logs to its own StringIO through `logs.configure(json=True, stream=...)` and reads
back the JSON lines. The registry of secret values is process-global, so every test gets an
empty one and unique values.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from rotator import logs, redaction
from rotator.redaction import MASK


@pytest.fixture(autouse=True)
def empty_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, empty in (
        ("_values", set()),
        ("_index", {}),
        ("_permanent", set()),
        ("_scopes", {}),
        ("_scoped", {}),
        ("_until", {}),
        ("_expiries", []),
        ("_scope_expiries", []),
    ):
        monkeypatch.setattr(redaction, name, empty)


@pytest.fixture
def buf() -> Iterator[io.StringIO]:
    """Route every log line into a StringIO, and put logging back as it was afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name) for name in logs._NOISY}
    saved_noisy = {name: (lg.level, lg.propagate, list(lg.handlers)) for name, lg in noisy.items()}
    stream = io.StringIO()
    logs.configure("INFO", json=True, stream=stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)
    for name, (level, propagate, handlers) in saved_noisy.items():
        lg = noisy[name]
        lg.setLevel(level)
        lg.propagate = propagate
        lg.handlers[:] = handlers
    structlog.reset_defaults()


def fresh_secret() -> str:
    return f"p8e-{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# --- redaction.py ----------------------------------------------------------------------------


def test_a_registered_value_is_masked_wherever_it_appears() -> None:
    secret = fresh_secret()
    redaction.register(secret)
    assert redaction.redact(f"url?client_secret={secret}&x=1") == f"url?client_secret={MASK}&x=1"
    assert redaction.redact(f"{secret}{secret}") == MASK * 2


def test_unregistered_text_is_left_alone() -> None:
    redaction.register(fresh_secret())
    text = "nothing secret here: p8e-notregistered"
    assert redaction.redact(text) == text
    assert redaction.redact("") == ""


def test_nothing_registered_returns_the_text_unchanged() -> None:
    assert redaction.known_count() == 0
    assert redaction.redact("some text") == "some text"


@pytest.mark.parametrize("short", ["", "a", "abc", "1234567"])
def test_values_shorter_than_eight_characters_are_not_registered(short: str) -> None:
    redaction.register(short, None)
    assert redaction.known_count() == 0
    if short:
        assert redaction.redact(f"the word {short} stays") == f"the word {short} stays"


def test_eight_characters_are_enough_to_register() -> None:
    redaction.register("12345678")
    assert redaction.known_count() == 1
    assert redaction.redact("pin 12345678") == f"pin {MASK}"


def test_registering_twice_counts_once() -> None:
    secret = fresh_secret()
    redaction.register(secret, secret)
    redaction.register(secret)
    assert redaction.known_count() == 1


def test_the_longest_overlapping_value_is_masked_whole() -> None:
    short = "abcdefgh"
    long = "abcdefgh-and-the-rest-of-the-token"
    redaction.register(short)
    redaction.register(long)
    assert redaction.redact(f"x {long} y {short}") == f"x {MASK} y {MASK}"
    assert "rest-of-the-token" not in redaction.redact(long)


def test_values_with_regex_characters_are_matched_literally() -> None:
    secret = "a.b*c+d?(e)[f]{g}|h^$"
    redaction.register(secret)
    assert redaction.redact(f"<{secret}>") == f"<{MASK}>"
    assert redaction.redact("aXbbbcdde") == "aXbbbcdde"


def test_a_value_registered_later_is_masked_too() -> None:
    first, second = fresh_secret(), fresh_secret()
    redaction.register(first)
    assert redaction.redact(second) == second
    redaction.register(second)
    assert redaction.redact_all([first, second, "plain"]) == [MASK, MASK, "plain"]


# --- logs.py ---------------------------------------------------------------------------------


def test_structlog_event_message_is_redacted(buf: io.StringIO) -> None:
    secret = fresh_secret()
    redaction.register(secret)
    structlog.get_logger("rotator.test").info(f"minted a token with {secret}")
    output = buf.getvalue()
    assert secret not in output
    [line] = lines(buf)
    assert line["event"] == f"minted a token with {MASK}"
    assert line["level"] == "info"


def test_structlog_key_values_are_redacted_even_when_nested(buf: io.StringIO) -> None:
    secret, token = fresh_secret(), fresh_secret()
    redaction.register(secret, token)
    structlog.get_logger("rotator.test").warning(
        "step", client_secret=secret, body={"access_token": token, "list": [secret]}, n=3
    )
    output = buf.getvalue()
    assert secret not in output and token not in output
    [line] = lines(buf)
    assert line["client_secret"] == MASK
    assert line["body"] == {"access_token": MASK, "list": [MASK]}
    assert line["n"] == 3


def test_stdlib_logger_messages_are_redacted(buf: io.StringIO) -> None:
    secret = fresh_secret()
    redaction.register(secret)
    logging.getLogger("httpx").warning("POST /token client_secret=%s", secret)
    logging.getLogger("botocore").error(f"PutSecretValue {{'client_secret': '{secret}'}}")
    output = buf.getvalue()
    assert secret not in output
    first, second = lines(buf)
    assert first["event"] == f"POST /token client_secret={MASK}"
    assert first["logger"] == "httpx"
    assert MASK in second["event"]


def test_noisy_stdlib_info_is_held_back_at_info_level(buf: io.StringIO) -> None:
    logging.getLogger("httpx").info("HTTP Request: GET https://ims")
    logging.getLogger("rotator.test.std").info("kept")
    assert [line["event"] for line in lines(buf)] == ["kept"]


def boom(secret: str) -> None:
    local_secret = secret
    unregistered_local = "local-value-never-rendered-0123456789"
    raise RuntimeError(f"Adobe refused {local_secret} ({len(unregistered_local)})")


def test_structlog_exception_traceback_is_redacted_and_has_no_locals(buf: io.StringIO) -> None:
    secret = fresh_secret()
    redaction.register(secret)
    try:
        boom(secret)
    except RuntimeError:
        structlog.get_logger("rotator.test").exception("step failed")
    output = buf.getvalue()
    assert secret not in output
    assert "local-value-never-rendered" not in output
    [line] = lines(buf)
    [exc] = line["exception"]
    assert exc["exc_type"] == "RuntimeError"
    assert exc["exc_value"].startswith(f"Adobe refused {MASK}")
    assert [frame["name"] for frame in exc["frames"]][-1] == "boom"
    assert all("locals" not in frame for frame in exc["frames"])


def test_stdlib_exception_traceback_is_redacted_and_has_no_locals(buf: io.StringIO) -> None:
    secret = fresh_secret()
    redaction.register(secret)
    try:
        boom(secret)
    except RuntimeError:
        logging.getLogger("httpx").exception("request failed")
    output = buf.getvalue()
    assert secret not in output
    assert "local-value-never-rendered" not in output
    assert "Traceback" not in output  # no raw stdlib traceback appended after the JSON
    [line] = lines(buf)
    assert line["exception"][0]["exc_value"].startswith(f"Adobe refused {MASK}")
    assert all("locals" not in frame for frame in line["exception"][0]["frames"])


def test_a_chained_exception_cause_is_redacted(buf: io.StringIO) -> None:
    secret = fresh_secret()
    redaction.register(secret)
    try:
        try:
            boom(secret)
        except RuntimeError as inner:
            raise ValueError("wrapped") from inner
    except ValueError:
        structlog.get_logger("rotator.test").exception("outer")
    output = buf.getvalue()
    assert secret not in output
    assert output.count(MASK) >= 1
    assert "wrapped" in output


def test_short_values_are_not_masked_in_logs(buf: io.StringIO) -> None:
    redaction.register("info", "level")
    structlog.get_logger("rotator.test").info("info about level")
    [line] = lines(buf)
    assert line["event"] == "info about level"
    assert line["level"] == "info"


# --- a registry that stays flat over a year ---------------------------------------------------


def test_a_token_is_masked_until_an_hour_after_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(redaction, "clock", lambda: now[0])
    token, other = fresh_secret(), fresh_secret()
    redaction.register(token, until=now[0] + 86400)

    now[0] += 86400 + redaction.TOKEN_GRACE - 1
    redaction.register(other)  # any registration sweeps what has expired
    assert redaction.redact(token) == MASK
    now[0] += 2
    redaction.register(other)
    assert redaction.redact(token) == token
    assert redaction.sizes()["expiring"] == 0 and redaction.known_count() == 1


def test_a_scope_keeps_its_most_recent_registrations_only() -> None:
    first, *rest = [fresh_secret() for _ in range(redaction.KEEP_PER_SCOPE + 1)]
    redaction.register(first, scope="adobe:client-a")
    for value in rest[:-1]:
        redaction.register(value, scope="adobe:client-a")
    redaction.register(first, scope="adobe:client-a")  # used again: the most recent now
    redaction.register(rest[-1], scope="adobe:client-a")

    assert redaction.redact(first) == MASK  # still in use: kept
    assert redaction.redact(rest[0]) == rest[0]  # the least recently used: forgotten
    assert redaction.known_count() == redaction.KEEP_PER_SCOPE


def test_the_fields_of_one_version_are_kept_and_let_go_together() -> None:
    versions = [(fresh_secret(), fresh_secret()) for _ in range(redaction.KEEP_PER_SCOPE + 1)]
    for fields in versions:
        redaction.register(*fields, scope="aws:adobe/a")
    assert [redaction.redact(v) for v in versions[0]] == list(versions[0])
    assert all(redaction.redact(v) == MASK for fields in versions[1:] for v in fields)


def test_a_value_held_for_another_reason_outlives_its_scope() -> None:
    shared, *others = [fresh_secret() for _ in range(redaction.KEEP_PER_SCOPE + 1)]
    redaction.register(shared, scope="aws:adobe/a")
    redaction.register(shared, scope="adobe:client-a")
    redaction.register(shared)  # and permanently
    for value in others:
        redaction.register(value, scope="aws:adobe/a")
    assert redaction.redact(shared) == MASK
    redaction.forget(shared)
    assert redaction.redact(shared) == shared


def test_at_info_the_aws_librarys_info_lines_stay_out(buf: io.StringIO) -> None:
    """botocore's "Found credentials ..." was the daemon's first line, before its own
    `daemon started`: the wire loggers stay at WARNING at INFO (never below INFO at DEBUG)."""
    logging.getLogger("botocore.credentials").info("Found credentials in environment variables.")
    logging.getLogger("botocore").warning("a warning still shows")
    structlog.get_logger("rotator.daemon").info("daemon started")
    assert [line["event"] for line in lines(buf)] == ["a warning still shows", "daemon started"]
    for name in logs._WIRE:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING, name


def test_clip_redacts_before_it_cuts() -> None:
    """A cut made first splits a secret so that it is no longer recognised: its first
    characters would be printed as they are."""
    secret = "p8e-" + "S3cr3tV4lu3" * 4
    redaction.register(secret)
    text = "x" * 185 + secret + " and more"
    assert secret[:15] in text[:200]  # what cutting first would have printed
    clipped = redaction.clip(text, 200)
    assert secret[:8] not in clipped and clipped == "x" * 185 + redaction.MASK + " and "
    first = redaction.clip(f"boom: {secret}\nsecond line", 300, first_line=True)
    assert first == f"boom: {redaction.MASK}"


def test_a_scoped_secret_is_forgotten_an_hour_after_it_was_last_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1_000_000.0]
    monkeypatch.setattr(redaction, "clock", lambda: now[0])
    secret, other = "p8e-" + "a1" * 16, "p8e-" + "b2" * 16
    redaction.register(secret, scope="client-1")
    redaction.register(other, scope="client-1")
    now[0] += redaction.SCOPE_TTL * 0.75
    redaction.register(other, scope="client-1")  # used again: kept from now on
    assert redaction.redact(secret) == redaction.redact(other) == redaction.MASK
    now[0] += redaction.SCOPE_TTL * 0.5  # secret: 1.25 TTL since its last registration
    assert redaction.redact(f"{secret} {other}") == f"{secret} {redaction.MASK}"
    now[0] += redaction.SCOPE_TTL
    assert redaction.redact(other) == other
    assert redaction.sizes()["scoped"] == 0 and redaction.sizes()["scopes"] == 0
