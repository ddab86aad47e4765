"""Key material from a file or an environment variable: read, registered, never shown."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from rotator import redaction
from rotator.audit.keys import KeySource, load_all
from rotator.domain.errors import ConfigError


def test_a_key_from_a_file_is_read_registered_and_hidden(tmp_path: Path) -> None:
    value = secrets.token_urlsafe(32)
    (tmp_path / "audit.key").touch(mode=0o600)
    (tmp_path / "audit.key").write_text(value + "\n")
    key = KeySource("k1", file=str(tmp_path / "audit.key")).load()
    assert key.id == "k1" and key.material == value.encode()
    assert value not in repr(key) and value not in str(key)
    assert redaction.redact(f"x {value} y") == f"x {redaction.MASK} y"


def test_a_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    value = secrets.token_hex(24)
    monkeypatch.setenv("ROTATOR_TEST_AUDIT_KEY", value)
    keys = load_all([KeySource("env-key", env="ROTATOR_TEST_AUDIT_KEY")])
    assert keys["env-key"].material == value.encode()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (dict(id="k", env="ROTATOR_TEST_UNSET_VAR"), "not set"),
        (dict(id="k", file="/nonexistent/audit.key"), "cannot read file"),
        (dict(id="k", env="X", file="/y"), "exactly one"),
        (dict(id="", env="X"), "must not be empty"),
    ],
)
def test_bad_sources_fail_with_one_clear_line(source: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KeySource(**source).load()


def test_a_short_key_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    value = secrets.token_hex(4)
    monkeypatch.setenv("ROTATOR_TEST_SHORT_KEY", value)
    with pytest.raises(ConfigError, match="too short") as caught:
        KeySource("short", env="ROTATOR_TEST_SHORT_KEY").load()
    assert value not in str(caught.value)


def test_duplicate_ids_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATOR_TEST_DUP_KEY", secrets.token_hex(16))
    source = KeySource("same", env="ROTATOR_TEST_DUP_KEY")
    with pytest.raises(ConfigError, match="twice"):
        load_all([source, source])


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_others_can_read_or_write_is_refused_as_ssh_does(
    tmp_path: Path, mode: int
) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_text(secrets.token_urlsafe(32))
    key_file.chmod(mode)
    with pytest.raises(ConfigError) as caught:
        KeySource("k1", file=str(key_file)).load()
    message = str(caught.value)
    assert "\n" not in message and str(key_file) in message
    assert f"chmod 600 {key_file}" in message and f"{mode:04o}" in message
    key_file.chmod(0o600)
    assert KeySource("k1", file=str(key_file)).load().id == "k1"
