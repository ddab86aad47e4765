"""The errors that still misled (issue 28): each bad input through the installed command,
one line, the documented exit code, nothing changed."""

from __future__ import annotations

from rotator.devkit.localaws import free_port
from tests.system.conftest import System, to_toml
from tests.system.test_truthful_errors import _one_error, _run, _with


def test_an_unquoted_org_id_says_it_must_be_a_quoted_string_of_digits(system: System) -> None:
    system.credential()
    config = system.config()
    config["credentials"][0]["org_id"] = 100001  # TOML: org_id = 100001
    path = system.tmp / "unquoted.toml"
    path.write_text(to_toml(config))
    assert "org_id = 100001\n" in path.read_text()
    ran = _run(system, "status", config=path)
    _one_error(ran, 2, "credentials[0].org_id", "must be a quoted string of digits", '"100001"')
    assert "valid string" not in ran.err


def test_an_unsupported_database_names_the_supported_ones(system: System) -> None:
    system.credential()
    mysql = _with(system, database={"url": "mysql://rotator@127.0.0.1/rotator"})
    for args in (("status",), ("db", "upgrade")):
        ran = _run(system, *args, config=mysql)
        _one_error(ran, 2, "database.url", "unsupported database 'mysql'", "SQLite", "PostgreSQL")
        assert "MySQLdb" not in ran.err


def test_sqlite_in_a_missing_folder_says_the_folder_does_not_exist(system: System) -> None:
    system.credential()
    folder = system.tmp / "no-such-folder"
    missing = _with(system, database={"url": f"sqlite:///{folder}/rotator.db"})
    for args in (("status",), ("db", "upgrade")):
        ran = _run(system, *args, config=missing)
        _one_error(
            ran, 2, "database.url", f"{folder}/rotator.db: the folder {folder} does not exist"
        )
        assert "db upgrade" not in ran.err and "unable to open" not in ran.err
    assert not folder.exists()


def test_a_bad_database_url_in_the_environment_is_blamed_on_the_variable(
    system: System,
) -> None:
    system.credential()
    env = {**system.env(), "ROTATOR_DATABASE_URL": "foo"}
    for args in (("status",), ("db", "upgrade")):
        ran = _run(system, *args, env=env)
        _one_error(ran, 2, "ROTATOR_DATABASE_URL", "not a database URL")
        assert str(system.config_path) not in ran.err
    env["ROTATOR_DATABASE_URL"] = "mysql://x@127.0.0.1/db"
    _one_error(_run(system, "status", env=env), 2, "ROTATOR_DATABASE_URL", "unsupported")


def test_an_aws_endpoint_that_is_down_is_named(system: System) -> None:
    system.credential()
    assert system.rotator("db", "upgrade").code == 0
    down = f"http://127.0.0.1:{free_port()}"
    config = _with(system, aws={"endpoint_url": down})
    ran = _run(system, "rotate", "analytics", config=config)
    _one_error(ran, 1, f"AWS unreachable at {down}")
    assert system.rotation_rows() == []  # nothing started
