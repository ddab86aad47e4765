"""What ships besides the code: the Dockerfile, config.example.toml, README and the ops docs.

There is no Docker engine in CI, so the image is checked for what can be checked without
building it: the files it copies exist and pass .dockerignore, it installs from the
hash-locked requirements (tests/system/test_deploy_kit.py runs that install), its command is
a real rotator command, its health check asks /readyz on the port the config names (the
check's own script is run against a live `rotator run`), it runs as a non-root user, and it
bakes in nothing secret-looking. The audit queries in docs/operations.md run on both databases
after real rotations, so the documentation cannot drift from the schema.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any, get_args, get_origin

import click
import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine

from rotator import config
from rotator.cli import main
from rotator.devkit.localaws import LocalAws, free_port
from rotator.devkit.sandbox.server import SandboxServer
from rotator.domain.model import Policy, State
from tests.world import World

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


# --- the Dockerfile ----------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends in a line continuation"
    result = []
    for line in logical:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _all(name: str) -> list[str]:
    return [args for instr, args in _instructions() if instr == name]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_the_image_is_python_311_slim_pinned_by_digest() -> None:
    bases = _all("FROM")
    assert bases, "no FROM"
    digests = set()
    for base in bases:  # the build stage too: its venv is copied into the last one
        found = re.fullmatch(
            r"python:3\.11[\w.-]*-slim[\w.-]*@(sha256:[0-9a-f]{64})( AS \w+)?", base, re.I
        )
        assert found, f"FROM {base}: python 3.11 slim, pinned by digest"
        digests.add(found[1])
    assert len(digests) == 1, f"the stages use different base images: {digests}"
    (label,) = re.findall(r'org\.opencontainers\.image\.base\.digest="([^"]+)"', _dockerfile())
    assert {label} == digests, "the base.digest label names another image"


def test_every_copied_file_exists_and_survives_dockerignore() -> None:
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "the context is an allow-list: start with '*'"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copies = _all("COPY") + _all("ADD")
    assert copies
    for args in copies:
        if "--from=" in args:
            continue  # from an earlier stage, not from the build context
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for source in parts[:-1]:
            path = source.rstrip("/")
            assert (ROOT / path).exists(), f"COPY {source}: no such file in the repository"
            assert path in allowed, f"COPY {source}: .dockerignore leaves it out of the context"


LOCK = ROOT / "deploy" / "image" / "requirements.lock"


def _locked() -> dict[str, str]:
    """name -> version of every requirement in the lock file."""
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", LOCK.read_text(), re.M)
    return {name.lower().replace("_", "-"): version for name, version in pins}


def test_the_image_installs_from_the_hash_locked_requirements() -> None:
    runs = _all("RUN")
    installs = [r for r in runs if "pip install" in r]
    assert installs, runs
    first = installs[0]
    assert "--require-hashes" in first and "requirements.lock" in first, first
    assert any("deploy/image/requirements.lock" in c for c in _all("COPY"))
    # The package itself comes after, adding nothing unlocked.
    assert all("--no-deps" in r for r in installs[1:]), installs
    # Every file in the lock carries a hash; every pin has at least one.
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n\n", 1)[-1])
    for block in blocks:
        if re.match(r"^[A-Za-z0-9_.-]+==", block):
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_lock_holds_the_runtime_and_postgres_dependencies_but_not_the_demo() -> None:
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked()
    wanted = pyproject["dependencies"] + pyproject["optional-dependencies"]["postgres"]
    for line in wanted:
        req = Requirement(line)
        name = req.name.lower().replace("_", "-")
        assert name in locked, f"{name} is a dependency but not in {LOCK.name}: re-run pip-compile"
        assert req.specifier.contains(locked[name]), f"{name}=={locked[name]} breaks {line}"
    for line in pyproject["optional-dependencies"]["demo"]:
        assert Requirement(line).name.lower() not in locked, f"{line}: demo-only, not in the image"


def test_the_image_ships_the_migrations() -> None:
    assert any("migrations" in c for c in _all("COPY"))
    # The migrations ship inside the package, so the installed image can migrate.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = pyproject["tool"]["setuptools"]
    assert {"rotator.migrations", "rotator.migrations.versions"} <= set(setuptools["packages"])
    assert setuptools["package-dir"]["rotator.migrations"] == "migrations"
    assert (ROOT / "migrations" / "env.py").is_file()
    assert list((ROOT / "migrations" / "versions").glob("0*.py"))


def test_every_package_directory_ships() -> None:
    """An explicit package list misses a new subpackage silently: the editable dev install
    still imports it, the image (a real install) does not."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "rotator").rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    missing = found - set(setuptools["packages"])
    assert not missing, f"add to [tool.setuptools] packages: {sorted(missing)}"


def test_the_image_has_oci_labels() -> None:
    labels = " ".join(_all("LABEL"))
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_the_command_is_rotator_run() -> None:
    entrypoint = _exec_form(_all("ENTRYPOINT")[-1]) if _all("ENTRYPOINT") else []
    command = entrypoint + _exec_form(_all("CMD")[-1])
    assert command[0] == "rotator", command
    assert command[1:] == ["run"], command
    ctx = click.Context(main)
    assert main.get_command(ctx, command[1]) is not None, f"rotator has no command {command[1]}"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["rotator"] == "rotator.cli:main"


def test_the_user_is_not_root() -> None:
    users = _all("USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]


def test_no_secret_is_baked_in() -> None:
    looks_secret = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH|SESSION", re.I)
    for instr in ("ENV", "ARG"):
        for args in _all(instr):
            if instr == "ENV" and "=" not in args.split()[0]:
                names = [args.split()[0]]  # the legacy `ENV NAME value` form
            else:
                names = [pair.split("=", 1)[0] for pair in shlex.split(args)]
            for name in names:
                assert not looks_secret.search(name), f"{instr} {name}: looks like a secret"
    text = (ROOT / "Dockerfile").read_text()
    assert "AWS_ACCESS_KEY_ID" not in text.replace("AWS_*", "")
    assert "rotator.toml" not in " ".join(_all("COPY")), "config is mounted, never copied"


def test_config_is_a_mounted_file_named_by_rotator_config() -> None:
    envs = " ".join(_all("ENV"))
    assert "ROTATOR_CONFIG=/etc/rotator/rotator.toml" in envs
    option = next(p for p in main.params if p.name == "config_path")
    assert isinstance(option, click.Option) and option.envvar == "ROTATOR_CONFIG"


def _healthcheck() -> list[str]:
    (args,) = _all("HEALTHCHECK")
    _, _, command = args.partition("CMD ")
    return _exec_form(command.strip())


HEALTHCHECK_SCRIPT = ROOT / "deploy" / "image" / "healthcheck.py"


def test_the_healthcheck_asks_readyz_on_the_configured_port() -> None:
    command = _healthcheck()
    assert command[0] == "python", command
    copied = [c for c in _all("COPY") if "deploy/image/healthcheck.py" in c]
    assert copied and copied[0].split()[-1] == command[1], (copied, command)
    text = HEALTHCHECK_SCRIPT.read_text()
    assert "/readyz" in text and "ROTATOR_CONFIG" in text
    assert not re.search(r":9477\b", " ".join(command)), "the port is read from the config"
    port = config.DaemonConfig().listen.rpartition(":")[2]
    assert f"EXPOSE {port}" in (ROOT / "Dockerfile").read_text()


def _run_healthcheck(cfg: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK_SCRIPT)],
        capture_output=True,
        timeout=30,
        env={**os.environ, "ROTATOR_CONFIG": str(cfg)},
    )


def test_the_healthcheck_passes_against_a_ready_daemon_and_fails_without_one(
    tmp_path: Path,
) -> None:
    """The image's own HEALTHCHECK script against `rotator run` listening as in a container
    (the wildcard address, on a port only the config names)."""
    port = free_port()
    cfg = tmp_path / "rotator.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/rotator.db"\n'
        f'[daemon]\nlisten = "0.0.0.0:{port}"\ntick = "1s"\n'
    )
    assert _run_healthcheck(tmp_path / "missing.toml").returncode == 2
    down = _run_healthcheck(cfg)
    assert down.returncode == 1, "the health check passes with nothing listening"

    daemon = subprocess.Popen(
        [str(BIN / "rotator"), "--config", str(cfg), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "ROTATOR_CONFIG": ""},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except OSError:
                assert daemon.poll() is None, daemon.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "the daemon never became ready"
                time.sleep(0.1)
        up = _run_healthcheck(cfg)
        assert up.returncode == 0, up.stderr[-2000:]
    finally:
        daemon.send_signal(signal.SIGTERM)  # what `docker stop` sends
        try:
            code = daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            raise
    assert code == 0, f"rotator run exited {code} on SIGTERM"


# --- config.example.toml -----------------------------------------------------------------

EXAMPLE = ROOT / "config.example.toml"


def _model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, or the element of a tuple of models."""
    candidates = [annotation, *get_args(annotation)] if get_origin(annotation) else [annotation]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _sections() -> dict[str, tuple[type[BaseModel], bool]]:
    """Config section path -> (its model, whether it is an array of tables)."""
    found: dict[str, tuple[type[BaseModel], bool]] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            sub = _model(info.annotation)
            if sub is None:
                continue
            path = f"{prefix}{name}"
            found[path] = (sub, get_origin(info.annotation) is tuple)
            walk(sub, path + ".")

    walk(config.Settings, "")
    return found


def _commented_keys() -> dict[str, set[str]]:
    """Keys that appear as `# key = ...` lines, by the section they are written in."""
    keys: dict[str, set[str]] = {}
    section = ""
    for line in EXAMPLE.read_text().splitlines():
        header = re.match(r"^\[\[?([\w.]+)\]\]?", line)
        if header:
            section = header[1]
            continue
        commented = re.match(r"^#\s+(\w+)\s*=", line)
        if commented:
            keys.setdefault(section, set()).add(commented[1])
    return keys


def test_the_example_config_loads_as_shipped() -> None:
    settings = config.load(EXAMPLE)
    assert settings.credentials, "the example shows credentials"


def test_the_example_config_mentions_every_key() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    commented = _commented_keys()
    missing = []
    for path, (model, is_array) in _sections().items():
        node: Any = raw
        for part in path.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        tables = node if is_array else [node]
        active = set().union(*(set(t) for t in tables)) if tables else set()
        for key in model.model_fields:
            if _model(model.model_fields[key].annotation) is not None:
                continue  # a sub-section, checked on its own
            if key not in active and key not in commented.get(path, set()):
                missing.append(f"{path}.{key}")
    assert not missing, f"config.example.toml does not mention {missing}"


def test_every_per_credential_override_is_shown_on_a_credential() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    shown = set().union(*(set(c) for c in raw["credentials"]))
    assert set(config.CredentialConfig.model_fields) <= shown, (
        set(config.CredentialConfig.model_fields) - shown
    )


def test_the_example_values_are_the_defaults() -> None:
    """The file says its values are the defaults: hold it to that, so it cannot drift."""
    raw = tomllib.loads(EXAMPLE.read_text())
    for section, model in (
        ("database", config.DatabaseConfig),
        ("adobe", config.AdobeConfig),
        ("aws", config.AwsConfig),
        ("daemon", config.DaemonConfig),
    ):
        shown = model.model_validate(raw[section])
        assert shown == model(), f"[{section}] differs from the defaults"
    defaults = config.from_mapping({"defaults": raw["defaults"]}).defaults
    effective = Policy()
    for key in Policy.__dataclass_fields__:
        assert getattr(defaults, key) == getattr(effective, key), f"[defaults] {key}"
    settings = config.load(EXAMPLE)
    first = settings.credentials[0]
    assert settings.secret_key(first) == "client_secret"
    assert settings.uuid_key(first) == "secret_uuid"
    hook = settings.notifications.webhooks[0]
    default_hook = config.WebhookConfig(url=hook.url)
    assert (hook.events, hook.timeout) == (default_hook.events, default_hook.timeout)


# --- README ------------------------------------------------------------------------------


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.startswith("python3 -m venv")
    ]
    assert len(ci) == 1
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    assert ci[0] in blocks, "README's test command differs from .ci/run's"
    setup = [b for b in blocks if b.startswith("python3 -m venv")]
    assert len(setup) == 2, setup
    assert any(b.endswith("/rotator demo") and "[demo]" in b for b in setup), setup


def test_the_readme_documents_the_exit_codes_the_cli_uses() -> None:
    from rotator import cli

    readme = (ROOT / "README.md").read_text()
    for code in (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_ATTENTION):
        assert re.search(rf"\|\s*`?{code}`?\s*\|", readme), f"exit code {code} undocumented"


def test_the_readme_links_to_what_ships_here() -> None:
    readme = (ROOT / "README.md").read_text()
    for path in ("docs/operations.md", "config.example.toml", "Dockerfile"):
        assert f"]({path}" in readme, path
        assert (ROOT / path).exists(), path
    for path in ("bench/README.md", "docs/reliability.md"):  # written by others
        assert f"]({path}" in readme, path


# --- docs/operations.md: the audit queries -----------------------------------------------


def _queries() -> list[tuple[str, str | None, str]]:
    """(name or dialect tag, dialect or None for both, sql) of every sql block."""
    text = (ROOT / "docs" / "operations.md").read_text()
    found = []
    for sql in re.findall(r"```sql\n(.*?)```", text, re.S):
        first = sql.splitlines()[0]
        tag = first.removeprefix("--").strip()
        dialect = tag if tag in {"sqlite", "postgresql"} else None
        name = tag.removeprefix("query:").strip()
        found.append((name, dialect, sql))
    return found


def test_the_docs_have_portable_audit_queries() -> None:
    queries = _queries()
    assert {d for _, d, _ in queries} == {None, "sqlite", "postgresql"}
    assert "rotations-of-a-credential" in {n for n, _, _ in queries}


@pytest.fixture
def rotated(
    sandbox: SandboxServer, local_aws: LocalAws, db_url: str
) -> Any:  # yields World, typed loosely for the fixture plumbing
    world = World(sandbox=sandbox, aws=local_aws, db_url=db_url)
    world.credential("analytics")
    normal = world.rotate("analytics")
    emergency = world.rotate("analytics", emergency=True)
    assert normal.state is State.COMPLETED and emergency.state is State.COMPLETED
    yield world
    world.close()


def test_the_audit_queries_run_on_both_databases(rotated: World) -> None:
    engine = create_engine(rotated.db_url)
    dialect = engine.dialect.name
    results: dict[str, list[Any]] = {}
    try:
        with engine.connect() as conn:
            for name, only, sql in _queries():
                if only is not None and only != dialect:
                    continue
                rows = conn.exec_driver_sql(sql).mappings().all()
                results[name if only is None else "durations"] = list(rows)
    finally:
        engine.dispose()

    history = results["rotations-of-a-credential"]
    assert [r["trigger"] for r in history] == ["emergency", "manual"]
    assert all(r["state"] == "completed" and r["requested_by"] == "test" for r in history)
    owner = rotated.app.engine.owner
    assert all(r["finished_by"] == owner for r in history)
    durations = results["durations"]
    assert [r["id"] for r in durations] == [r["id"] for r in history]
    normal = durations[1]
    # FAST's quiet period is 1 s: the normal rotation drained at least that long.
    assert float(normal["drain_seconds"]) >= 1.0
    assert float(normal["total_seconds"]) >= float(normal["drain_seconds"])
    steps = results["steps-of-the-latest-rotation"]
    assert steps[-1]["to_state"] == "completed" and steps[0]["kind"] == "started"
    assert {r["kind"] for r in results["requests-by-people"]} == {"started"}
    assert len(results["emergency-rotations"]) == 1
    assert results["unfinished-rotations"] == []
    (cred,) = results["credentials"]
    assert cred["completed_rotations"] == 2
    assert cred["current_uuid"] == rotated.adobe_uuids()[0]
