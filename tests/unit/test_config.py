"""TOML -> validated, frozen settings: every mistake is one line naming the file and the key."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest

from rotator import config
from rotator.config import Settings, from_mapping, load, parse_duration, parse_window
from rotator.domain.errors import ConfigError
from rotator.domain.model import Policy

SOURCE = "/etc/rotator/rotator.toml"


def cred(name: str = "analytics", **extra: Any) -> dict[str, Any]:
    """A credential whose Adobe and AWS ids follow its name (no two may share them)."""
    return {
        "name": name,
        "org_id": "ORG@AdobeOrg",
        "credential_id": f"123456-{name}",
        "client_id": f"cid-{name}",
        "secret_id": f"adobe/{name}",
        **extra,
    }


def config_error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw, source=SOURCE)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2s", timedelta(seconds=2)),
        ("15m", timedelta(minutes=15)),
        ("25h", timedelta(hours=25)),
        ("90d", timedelta(days=90)),
        ("2w", timedelta(weeks=2)),
        ("500ms", timedelta(milliseconds=500)),
        ("1.5h", timedelta(minutes=90)),
        (" 30 s ", timedelta(seconds=30)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration_reads_a_number_and_a_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_parse_duration_passes_a_timedelta_through() -> None:
    assert parse_duration(timedelta(hours=3)) == timedelta(hours=3)


@pytest.mark.parametrize(
    "bad", ["10", "ten", "5y", "", "h", "-5m", "5 minutes", "1h30m", "2S", 30, 1.5, None, True]
)
def test_parse_duration_refuses_anything_else(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


def test_a_bad_duration_in_the_file_names_the_file_and_key() -> None:
    message = config_error({"defaults": {"quiet_period": "ten"}})
    assert message.startswith(f"{SOURCE}: defaults.quiet_period: invalid duration 'ten'")


def test_a_bare_number_as_duration_is_refused_with_a_hint() -> None:
    message = config_error({"daemon": {"lease": 60}})
    assert f"{SOURCE}: daemon.lease:" in message
    assert "like 2s, 15m" in message


def test_durations_land_as_timedeltas() -> None:
    settings = from_mapping(
        {"daemon": {"tick": "500ms", "lease": "2m"}, "adobe": {"timeout": "5s"}}
    )
    assert settings.daemon.tick == timedelta(milliseconds=500)
    assert settings.daemon.lease == timedelta(minutes=2)
    assert settings.adobe.timeout == timedelta(seconds=5)


# --- unknown, missing, duplicate -------------------------------------------------------------


def test_an_unknown_top_level_section_is_refused() -> None:
    message = config_error({"databse": {"url": "sqlite://"}})
    assert message == f"{SOURCE}: databse: unknown key (check its spelling and section)"


def test_an_unknown_key_inside_a_section_is_refused() -> None:
    message = config_error({"defaults": {"quiet_perod": "1h"}})
    assert f"{SOURCE}: defaults.quiet_perod: unknown key" in message


def test_an_unknown_key_in_a_credential_names_its_index() -> None:
    message = config_error({"credentials": [cred(), cred("b", colour="red")]})
    assert f"{SOURCE}: credentials[1].colour: unknown key" in message


def test_missing_required_credential_keys_are_each_named_on_one_line() -> None:
    message = config_error({"credentials": [{"name": "analytics"}]})
    for key in ("org_id", "credential_id", "client_id", "secret_id"):
        assert f"{SOURCE}: credentials[0].{key}: required key is missing" in message
    assert message.count(SOURCE) == 4


def test_blank_credential_fields_are_refused() -> None:
    message = config_error({"credentials": [cred(client_id="   ")]})
    assert f"{SOURCE}: credentials[0].client_id: must not be empty" in message


def test_credential_fields_are_stripped() -> None:
    settings = from_mapping({"credentials": [cred(secret_id="  adobe/x  ")]})
    assert settings.credentials[0].secret_id == "adobe/x"


@pytest.mark.parametrize("name", ["a b", "-lead", "", "x" * 129, "sl/ash"])
def test_invalid_credential_names_are_refused(name: str) -> None:
    message = config_error({"credentials": [cred(name)]})
    assert f"{SOURCE}: credentials[0].name:" in message


def test_duplicate_credential_names_are_refused() -> None:
    message = config_error({"credentials": [cred("a"), cred("b"), cred("a")]})
    assert SOURCE in message
    assert "credentials[2].name 'a' repeats credentials[0]" in message


def test_several_problems_are_reported_together_on_one_line() -> None:
    message = config_error({"defaults": {"max_age": "soon"}, "daemon": {"workers": 0}, "extra": 1})
    assert "defaults.max_age" in message
    assert "daemon.workers" in message
    assert "extra: unknown key" in message


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"daemon": {"listen": "nohost"}}, "daemon.listen"),
        ({"daemon": {"workers": 1000}}, "daemon.workers"),
        ({"adobe": {"ims_url": "ftp://x"}}, "adobe.ims_url"),
        ({"adobe": {"token_rate": -1}}, "adobe.token_rate"),
        ({"aws": {"write_rate": -1}}, "aws.write_rate"),
        (
            {"notifications": {"webhooks": [{"url": "x", "events": ["nope"]}]}},
            "notifications.webhooks[0].events",
        ),
        ({"credentials": "analytics"}, "credentials"),
    ],
)
def test_other_invalid_values_name_their_key(raw: dict[str, Any], key: str) -> None:
    assert f"{SOURCE}: {key}:" in config_error(raw)


def test_settings_are_frozen() -> None:
    settings = from_mapping({"credentials": [cred()]})
    with pytest.raises(pydantic.ValidationError):
        settings.credentials[0].client_id = "other"  # type: ignore[misc]


def test_urls_lose_their_trailing_slash() -> None:
    settings = from_mapping({"adobe": {"ims_url": "http://127.0.0.1:8080/"}})
    assert settings.adobe.ims_url == "http://127.0.0.1:8080"


def test_unknown_credential_lookup_names_the_known_ones() -> None:
    settings = from_mapping({"credentials": [cred("a"), cred("b")]}, source=SOURCE)
    with pytest.raises(ConfigError, match=r"unknown credential 'c' \(known: a, b\)") as caught:
        settings.credential("c")
    assert SOURCE in str(caught.value)
    assert settings.credential("b").name == "b"


# --- policy merge ----------------------------------------------------------------------------


def test_policy_without_any_keys_is_the_built_in_default() -> None:
    settings = from_mapping({"credentials": [cred()]})
    assert settings.policy(settings.credentials[0]) == Policy()


def test_defaults_apply_and_each_credential_overrides_them() -> None:
    settings = from_mapping(
        {
            "defaults": {"max_age": "30d", "quiet_period": "2h", "prune_strays": False},
            "credentials": [
                cred("plain"),
                cred("special", quiet_period="10m", prune_strays=True, max_drain="3d"),
            ],
        }
    )
    plain = settings.policy(settings.credential("plain"))
    special = settings.policy(settings.credential("special"))
    assert plain == Policy(
        max_age=timedelta(days=30), quiet_period=timedelta(hours=2), prune_strays=False
    )
    assert special.max_age == timedelta(days=30)  # inherited
    assert special.quiet_period == timedelta(minutes=10)  # overridden
    assert special.prune_strays is True  # overridden back on
    assert special.max_drain == timedelta(days=3)  # own key
    assert special.verify_timeout == Policy().verify_timeout  # built-in


def test_a_false_credential_override_beats_a_true_default() -> None:
    settings = from_mapping(
        {"defaults": {"prune_strays": True}, "credentials": [cred(prune_strays=False)]}
    )
    assert settings.policy(settings.credentials[0]).prune_strays is False


def test_every_policy_key_can_be_overridden_per_credential() -> None:
    keys = {
        "max_age": "1d",
        "quiet_period": "2h",
        "max_drain": "3d",
        "verify_timeout": "4m",
        "poll_interval": "5m",
        "failure_cooldown": "6h",
    }
    settings = from_mapping({"credentials": [cred(**keys)]})
    pol = settings.policy(settings.credentials[0])
    for key, text in keys.items():
        assert getattr(pol, key) == parse_duration(text), key


def test_secret_and_uuid_keys_default_to_the_documented_names() -> None:
    settings = from_mapping({"credentials": [cred()]})
    c = settings.credentials[0]
    assert settings.secret_key(c) == "client_secret"
    assert settings.uuid_key(c) == "secret_uuid"


def test_secret_and_uuid_keys_follow_defaults_then_the_credential() -> None:
    settings = from_mapping(
        {
            "defaults": {"secret_key": "secret", "uuid_key": "uuid"},
            "credentials": [cred("a"), cred("b", secret_key="ADOBE_SECRET")],
        }
    )
    a, b = settings.credential("a"), settings.credential("b")
    assert (settings.secret_key(a), settings.uuid_key(a)) == ("secret", "uuid")
    assert (settings.secret_key(b), settings.uuid_key(b)) == ("ADOBE_SECRET", "uuid")


# --- schedule and window ---------------------------------------------------------------------


def test_a_valid_cron_schedule_is_kept_and_overridable() -> None:
    settings = from_mapping(
        {
            "defaults": {"schedule": "0 3 * * mon"},
            "credentials": [cred("a"), cred("b", schedule="0 4 1 * *")],
        }
    )
    assert settings.schedule(settings.credential("a")) == "0 3 * * mon"
    assert settings.schedule(settings.credential("b")) == "0 4 1 * *"


def test_no_schedule_means_none() -> None:
    settings = from_mapping({"credentials": [cred()]})
    assert settings.schedule(settings.credentials[0]) is None
    assert settings.window(settings.credentials[0]) is None


@pytest.mark.parametrize("bad", ["61 * * * *", "* * * * * *", "every day", "* * * 13 *"])
def test_an_invalid_cron_schedule_names_its_key(bad: str) -> None:
    message = config_error({"credentials": [cred(schedule=bad)]})
    assert message.startswith(f"{SOURCE}: credentials[0].schedule: invalid cron schedule")
    assert repr(bad) in message


@pytest.mark.parametrize(
    ("text", "start", "end", "days"),
    [
        ("09:00-17:00", time(9), time(17), set(range(7))),
        ("Mon-Fri 09:00-17:00", time(9), time(17), {0, 1, 2, 3, 4}),
        ("sat,sun 00:00-06:00", time(0), time(6), {5, 6}),
        ("fri-mon 22:00-02:00", time(22), time(2), {4, 5, 6, 0}),
        ("Tue,Thu-Fri 01:30-02:45", time(1, 30), time(2, 45), {1, 3, 4}),
        ("wed 08:00-09:00", time(8), time(9), {2}),
    ],
)
def test_parse_window_reads_days_and_hours(
    text: str, start: time, end: time, days: set[int]
) -> None:
    window = parse_window(text)
    assert (window.start, window.end, set(window.days)) == (start, end, days)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Funday 09:00-17:00",
        "Mon-Fri",
        "09:00",
        "09:00-17:00-18:00",
        "25:00-26:00",
        "Mon Fri 09:00-17:00",
        "nine-five",
    ],
)
def test_parse_window_refuses_malformed_windows(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid window"):
        parse_window(bad)


def test_an_invalid_window_in_the_file_names_its_key() -> None:
    message = config_error({"defaults": {"window": "Mon-Fri 9-5"}})
    assert message.startswith(f"{SOURCE}: defaults.window: invalid window")


def test_window_comes_from_the_credential_before_the_defaults() -> None:
    settings = from_mapping(
        {
            "defaults": {"window": "Mon-Fri 09:00-17:00"},
            "credentials": [cred("a"), cred("b", window="sat 00:00-06:00")],
        }
    )
    a = settings.window(settings.credential("a"))
    b = settings.window(settings.credential("b"))
    assert a is not None and b is not None
    assert a.contains(datetime(2026, 3, 2, 10, tzinfo=UTC))  # Monday 10:00
    assert not b.contains(datetime(2026, 3, 2, 3, tzinfo=UTC))
    assert b.contains(datetime(2026, 3, 7, 3, tzinfo=UTC))  # Saturday 03:00


def test_a_window_with_a_utc_offset_is_refused_at_load_time() -> None:
    config_error({"defaults": {"window": "09:00+02:00-17:00"}})


def test_a_misspelt_weekday_is_refused() -> None:
    config_error({"defaults": {"window": "monkey-frisbee 09:00-17:00"}})


# --- load ------------------------------------------------------------------------------------


GOOD_TOML = """
[database]
url = "sqlite:///state.db"

[defaults]
max_age = "60d"

[[credentials]]
name = "analytics"
org_id = "ORG@AdobeOrg"
credential_id = "123"
client_id = "cid"
secret_id = "adobe/analytics"
quiet_period = "30h"
"""


def test_load_reads_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "rotator.toml"
    path.write_text(GOOD_TOML, encoding="utf-8")
    settings = load(path)
    assert isinstance(settings, Settings)
    assert settings.source == str(path)
    # A relative SQLite path is the config file's folder's, not the working directory's.
    assert settings.database.url == f"sqlite:///{tmp_path.resolve() / 'state.db'}"
    pol = settings.policy(settings.credential("analytics"))
    assert (pol.max_age, pol.quiet_period) == (timedelta(days=60), timedelta(hours=30))


def test_load_uses_rotator_config_when_no_path_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text(GOOD_TOML, encoding="utf-8")
    monkeypatch.setenv("ROTATOR_CONFIG", str(path))
    assert config.default_path() == path
    assert load().credential("analytics").client_id == "cid"


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_load_of_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    assert "no such config file" in load_error(tmp_path / "absent.toml")


def test_load_of_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[defaults\nmax_age = 1d\n", encoding="utf-8")
    assert "not valid TOML" in load_error(path)


def test_load_of_a_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[database]\nurl = "caf\xe9"\n'.encode("latin-1"))
    assert "cannot read" in load_error(path)


def test_load_of_a_directory_is_a_config_error(tmp_path: Path) -> None:
    assert "cannot read" in load_error(tmp_path)


def test_load_reports_validation_errors_against_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rotator.toml"
    path.write_text(GOOD_TOML + 'bogus = "x"\n', encoding="utf-8")
    message = load_error(path)
    assert f"{path}: credentials[0].bogus: unknown key" in message


# --- config that refuses the dangerous, and where the database is ------------------------


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://ims.example.com", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost/x", True),
        ("http://[::1]:9/", True),
        ("http://ims.example.com", False),
        ("http://127.0.0.1.example.com/", False),
        ("http://10.0.0.1/", False),
        ("http://[::1].example/", False),
    ],
)
def test_plain_http_only_to_loopback(url: str, ok: bool) -> None:
    raw = {"adobe": {"ims_url": url}, "credentials": [cred()]}
    if ok:
        assert from_mapping(raw, source=SOURCE).adobe.ims_url == url.rstrip("/")
    else:
        assert "adobe.ims_url" in config_error(raw)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://secretsmanager.eu-west-1.amazonaws.com", True),
        ("http://127.0.0.1:5000", True),
        ("http://localhost:4566", True),
        ("http://moto.internal:5000", False),
        ("http://10.1.2.3", False),
        ("ftp://example.com", False),
    ],
)
def test_the_aws_endpoint_needs_tls_off_loopback(url: str, ok: bool) -> None:
    raw = {"aws": {"endpoint_url": url}, "credentials": [cred()]}
    if ok:
        assert from_mapping(raw, source=SOURCE).aws.endpoint_url == url
    else:
        assert "aws.endpoint_url" in config_error(raw)


@pytest.mark.parametrize(
    "variable",
    ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL_STS"],
)
def test_the_aws_endpoint_variables_cannot_bypass_the_tls_rule(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "http://aws.attacker.example:80")
    message = config_error({"credentials": [cred()]})
    assert message.startswith(f"{variable}: http://aws.attacker.example") and "https" in message
    monkeypatch.setenv(variable, "http://127.0.0.1:5000")
    assert from_mapping({"credentials": [cred()]}, source=SOURCE).credentials


def test_checkpoint_file_is_relative_to_the_config_file_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "rotator.toml"
    path.write_text('[audit]\ncheckpoint_file = "audit/cp.jsonl"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load(path).audit.checkpoint_file == str(folder / "audit" / "cp.jsonl")
    path.write_text('[audit]\ncheckpoint_file = "/var/lib/rotator/cp.jsonl"\n', "utf-8")
    assert load(path).audit.checkpoint_file == "/var/lib/rotator/cp.jsonl"
    path.write_text("[audit]\n", encoding="utf-8")
    assert load(path).audit.checkpoint_file == ""


@pytest.mark.parametrize(
    ("same", "what"),
    [
        ({"client_id": "cid-a"}, "client_id"),
        ({"credential_id": "123456-a"}, "org_id+credential_id"),
        ({"secret_id": "adobe/a"}, "secret_id"),
        (
            {"secret_id": "arn:aws:secretsmanager:us-east-1:111122223333:secret:adobe/a-AbCdEf"},
            "secret_id",
        ),
    ],
)
def test_two_credentials_on_one_adobe_credential_or_aws_secret_are_refused(
    same: dict[str, str], what: str
) -> None:
    message = config_error({"credentials": [cred("a"), cred("b", **same)]})
    assert f"credentials[1].{what}" in message and "repeats credentials[0]" in message


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_postgres_urls_mean_psycopg(scheme: str) -> None:
    settings = from_mapping({"database": {"url": f"{scheme}://u@h/db"}}, source=SOURCE)
    assert settings.database.url == "postgresql+psycopg://u@h/db"


def test_rotator_database_url_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rotator.toml"
    path.write_text(GOOD_TOML, encoding="utf-8")
    monkeypatch.setenv("ROTATOR_DATABASE_URL", "postgres://rotator:pw@db/rotator")
    assert load(path).database.url == "postgresql+psycopg://rotator:pw@db/rotator"


@pytest.mark.parametrize("url", ["https://hooks.exa\x00mple.com/h", "https://xn--zz.example.com/h"])
def test_a_webhook_url_httpx_cannot_send_to_is_refused_at_load(url: str) -> None:
    """Issue 26: both passed config on fae5c9a, then every delivery raised InvalidURL (or an
    IDNA error) at send time."""
    raw = {"notifications": {"webhooks": [{"url": url, "events": ["failed"]}]}}
    message = config_error(raw)
    assert "notifications.webhooks[0].url" in message and "httpx" in message
    assert "\n" not in message.strip()
