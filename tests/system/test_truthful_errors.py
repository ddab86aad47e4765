"""Errors that tell the truth, config that refuses the dangerous, and where the database is.

Each case runs the installed `rotator` command, as an operator would, and checks the exit
code and the one line it prints: what went wrong, in words that do not mislead.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.system.conftest import ROTATOR, Ran, System, to_toml, wait_for


def _run(
    system: System,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    config: Path | None = None,
) -> Ran:
    """`rotator --config ... ARGS` with a chosen environment and working directory."""
    path = config or system.write_config()
    done = subprocess.run(
        [str(ROTATOR), "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or system.env(),
        cwd=cwd or system.tmp,
    )
    system.transcript += [done.stdout, done.stderr]
    return Ran(tuple(args), done.returncode, done.stdout, done.stderr)


def _one_error(ran: Ran, code: int, *words: str) -> None:
    assert ran.code == code, ran
    lines = [line for line in ran.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), ran
    for word in words:
        assert word in lines[0], (word, ran)
    assert "Traceback" not in ran.err


def _with(system: System, **sections: dict[str, Any]) -> Path:
    config = system.config()
    for name, changes in sections.items():
        config[name] = {**config.get(name, {}), **changes}
    path = system.tmp / "edited.toml"
    path.write_text(to_toml(config))
    return path


# --- the database -------------------------------------------------------------------------


def test_a_database_outage_exits_1_saying_it_cannot_reach_the_database(system: System) -> None:
    system.credential()
    down = _with(system, database={"url": "postgresql://rotator:pw@127.0.0.1:1/rotator"})

    for args in (("status",), ("rotate", "analytics"), ("db", "upgrade")):
        ran = _run(system, *args, config=down)
        _one_error(ran, 1, "cannot reach the database", "127.0.0.1:1")
        assert "configuration" not in ran.err and ":pw@" not in ran.err


def test_postgres_and_postgresql_urls_both_open_with_the_installed_driver(
    system: System, pg_url: str
) -> None:
    system.credential()
    rest = pg_url.split("://", 1)[1]
    for scheme in ("postgres", "postgresql"):
        url = _with(system, database={"url": f"{scheme}://{rest}"})
        ran = _run(system, "db", "upgrade", config=url)
        assert ran.code == 0, ran
        assert "database at revision" in ran.out
        assert _run(system, "status", config=url).code == 0


def test_a_postgresql_url_without_the_driver_says_how_to_install_it(system: System) -> None:
    system.credential()
    shadow = system.tmp / "no-psycopg" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
    )
    env = {**system.env(), "PYTHONPATH": str(shadow.parent)}
    url = _with(system, database={"url": "postgresql://rotator@127.0.0.1:5432/rotator"})

    for args in (("status",), ("db", "upgrade")):
        ran = _run(system, *args, config=url, env=env)
        _one_error(ran, 2, "psycopg", "pip install 'adobe-secret-rotator[postgres]'")


def test_rotator_database_url_overrides_the_config_file(system: System) -> None:
    system.credential()
    elsewhere = system.tmp / "from-env.db"
    broken = _with(system, database={"url": "sqlite:////nonexistent-dir/rotator.db"})
    env = {**system.env(), "ROTATOR_DATABASE_URL": f"sqlite:///{elsewhere}"}

    assert _run(system, "db", "upgrade", config=broken, env=env).code == 0
    assert elsewhere.exists()
    assert _run(system, "status", config=broken, env=env).code == 0
    _one_error(_run(system, "status", config=broken), 2, "/nonexistent-dir/rotator.db")


def test_a_relative_sqlite_path_follows_the_config_file_not_the_working_directory(
    system: System, tmp_path: Path
) -> None:
    system.credential()
    etc, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    etc.mkdir()
    elsewhere.mkdir()
    config = system.config()
    config["database"] = {"url": "sqlite:///state.db"}
    path = etc / "solo.toml"
    path.write_text(to_toml(config))

    assert _run(system, "db", "upgrade", config=path, cwd=elsewhere).code == 0
    assert (etc / "state.db").exists()
    assert _run(system, "rotate", "analytics", config=path, cwd=etc).code == 0

    # A daemon started from another directory opens the same file, and says which.
    daemon = subprocess.Popen(
        [str(ROTATOR), "--config", str(path), "--log-format", "json", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=system.env(),
        cwd=elsewhere,
    )
    try:
        assert daemon.stderr is not None
        started = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "daemon started" not in started:
            started = daemon.stderr.readline()
            assert started or daemon.poll() is None, daemon.communicate()
        assert f'"database": "sqlite:///{etc / "state.db"}"' in started, started
        assert f'"config": "{path}"' in started, started
    finally:
        daemon.terminate()
        out, err = daemon.communicate(timeout=20)
        system.transcript += [out, err]
    assert list(elsewhere.iterdir()) == []


def test_a_second_daemon_on_one_sqlite_database_refuses_to_start(system: System) -> None:
    system.credential()
    first = system.start_daemon()
    first.wait_ready()

    second = _run(system, "run")

    _one_error(second, 2, "another rotator daemon", f"pid {first.pid}", "rotator.db")
    assert first.alive()
    first.kill()  # the kernel drops the lock with the process: a restart is not refused
    restarted = system.start_daemon()
    restarted.wait_ready()
    assert restarted.stop() == 0


# --- AWS, Ctrl-C ---------------------------------------------------------------------------


def test_no_aws_credentials_is_named_as_such(system: System) -> None:
    system.credential()
    assert _run(system, "db", "upgrade").code == 0
    env = {k: v for k, v in system.env().items() if not k.startswith("AWS_")}
    env |= {
        "AWS_SHARED_CREDENTIALS_FILE": str(system.tmp / "none"),
        "AWS_CONFIG_FILE": str(system.tmp / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }

    check = _run(system, "check", env=env)
    assert check.code == 1, check
    assert "no AWS credentials" in check.out and "unreachable" not in check.out, check
    rotate = _run(system, "rotate", "analytics", env=env)
    _one_error(rotate, 1, "no AWS credentials")
    assert "unreachable" not in rotate.err


def test_ctrl_c_during_rotate_wait_says_one_thing_and_exits_130(system: System) -> None:
    system.credential(quiet_period="1h")
    assert _run(system, "db", "upgrade").code == 0
    waiting = system.popen("rotate", "analytics", "--wait")
    wait_for(lambda: "draining" in waiting.out(), 60, "the rotation to drain")

    waiting.proc.send_signal(signal.SIGINT)
    ran = system.collect(waiting)

    _one_error(ran, 130, "interrupted", "resumes")


# --- messages that contradicted themselves ------------------------------------------------


def test_a_stray_never_used_is_said_to_be_recent_not_used(system: System) -> None:
    cred = system.credential(quiet_period="1h")
    system.admin.add_secret(cred.credential_id)  # created just now, never used
    assert _run(system, "db", "upgrade").code == 0

    ran = _run(system, "rotate", "analytics")

    assert ran.code == 3, ran
    # No binding yet (I12): the sentence says what was seen, the stray never used, and
    # the command a person runs; it never claims a use.
    assert "(last used never)" in ran.out
    assert "rotator adopt analytics --uuid" in ran.out
    assert "used within the quiet period" not in ran.out

    cancelled = _run(system, "cancel", "analytics")
    assert cancelled.code == 0, cancelled
    final = [line for line in cancelled.out.splitlines() if ": cancelled" in line]
    assert final, cancelled
    assert "rotator cancel" not in final[-1], final[-1]


# --- config that refuses the dangerous ----------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("adobe", "ims_url", "http://ims.example.com"),
        ("adobe", "api_url", "http://10.0.0.8:8080"),
    ],
)
def test_plain_http_to_another_host_is_refused(
    system: System, section: str, key: str, value: str
) -> None:
    system.credential()
    path = _with(system, **{section: {key: value}})
    _one_error(_run(system, "status", config=path), 2, f"{section}.{key}", "https")


def test_a_plain_http_webhook_to_another_host_is_refused(system: System) -> None:
    system.credential()
    system.webhooks.append({"url": "http://hooks.example.com/T0/B0/x"})
    _one_error(_run(system, "status"), 2, "notifications.webhooks[0].url", "https")
    assert "T0/B0" not in _run(system, "status").err  # the path may hold a token


@pytest.mark.parametrize("shared", ["client_id", "secret_id", "credential_id"])
def test_two_credentials_on_one_adobe_credential_or_aws_secret_are_refused(
    system: System, shared: str
) -> None:
    system.credential("analytics")
    system.credential("reports")
    config = system.config()
    first, second = config["credentials"]
    second[shared] = first[shared]
    if shared == "credential_id":
        second["org_id"] = first["org_id"]
    path = system.tmp / "twins.toml"
    path.write_text(to_toml(config))

    ran = _run(system, "status", config=path)

    _one_error(ran, 2, "credentials[1]", "repeats credentials[0]")
    assert "must be unique" in ran.err
