"""docs/operations.md's staging guide and shell-completion section, run as written.

The guide's ```sh blocks are taken from the document (not copied here), joined in order
and run by bash with `set -eu`, in an empty directory, with this venv's `rotator` and
`moto_server` first on PATH. The only change: the three port numbers of its first line
become free ports, so the run cannot collide with anything else on the machine. Every
background process the guide starts lives in the script's own process group, which the
test kills afterwards whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from sqlalchemy import create_engine, text

from rotator.devkit.localaws import LocalAws, free_port
from rotator.devkit.sandbox.server import SandboxServer

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
BIN = Path(sys.executable).parent


def _section(title: str) -> str:
    doc = OPERATIONS.read_text()
    start = doc.index(f"\n## {title}\n")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end != -1 else len(doc)]


def _sh_blocks(title: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", _section(title), re.S)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ROTATOR_"))}
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env["HOME"] = str(home)
    return env


@pytest.fixture
def guide_run(tmp_path: Path) -> Iterator[tuple[subprocess.CompletedProcess[str], Path]]:
    blocks = _sh_blocks("Staging: the sandbox and moto")
    assert len(blocks) >= 5, "the guide lost its steps"
    ports = re.compile(r"\b(SANDBOX_PORT|MOTO_PORT|METRICS_PORT)=\d+")
    assert len(ports.findall(blocks[0])) == 3, blocks[0]
    blocks[0] = ports.sub(lambda m: f"{m[1]}={free_port()}", blocks[0])
    script = tmp_path / "guide.sh"
    script.write_text("set -eu\n" + "\n".join(blocks))
    work = tmp_path / "staging"
    work.mkdir()
    output = tmp_path / "guide.out"
    with output.open("w") as sink:
        proc = subprocess.Popen(
            ["bash", str(script)],
            cwd=work,
            env=_env(tmp_path),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: the guide's `&` jobs included
        )
    try:
        try:
            proc.wait(timeout=150)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the guide did not finish in 150 s:\n{output.read_text()[-4000:]}")
        yield subprocess.CompletedProcess(proc.args, proc.returncode, output.read_text(), ""), work
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_the_staging_guide_ends_in_a_completed_rotation(
    guide_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, work = guide_run
    logs = "".join(
        f"\n--- {name}\n{(work / name).read_text()[-2000:]}"
        for name in ("daemon.log", "moto.log")
        if (work / name).exists()
    )
    assert done.returncode == 0, done.stdout[-4000:] + logs
    # The database the guide's config names: one rotation, completed.
    engine = create_engine(f"sqlite:///{work / 'staging.db'}")
    try:
        with engine.connect() as conn:
            states = conn.execute(text("SELECT state FROM rotations")).scalars().all()
    finally:
        engine.dispose()
    # Two rotations, both completed: the second through the hostile Adobe's faults.
    assert states == ["completed", "completed"], states
    # What the guide says of the loop: an attempt that fails is the pre-flight refusing
    # because the list answer left out the current secret (at most the two omissions),
    # and then the rotation recovers the secret whose add answer was lost.
    refusals = re.findall(r"^error: analytics: (.*)$", done.stdout, re.M)
    assert len(refusals) <= 2, refusals
    assert all(
        re.fullmatch(r"cannot rotate: current uuid \w+ is not listed at Adobe", r) for r in refusals
    ), refusals
    # The lost add answer: whoever ran the step (this CLI or the daemon) met it and went on.
    daemon_log = (work / "daemon.log").read_text()
    assert "Adobe may have acted on it anyway" in done.stdout + daemon_log, "no lost add"
    assert re.search(r"rotation 2 \(manual\) of analytics: completed", done.stdout)
    # The first log line the guide shows is rotator's own `daemon started`.
    first = json.loads((work / "daemon.log").read_text().splitlines()[0])
    assert first["event"] == "daemon started" and first["config"] == "staging.toml", first
    # Adobe (the sandbox's saved world) holds exactly one secret, the new one; no value of
    # it, nor of the old one, was printed by any command of the guide.
    world = json.loads((work / "sandbox-state.json").read_text())
    printed = done.stdout + "".join(p.read_text() for p in work.glob("*.log"))
    (credential,) = world["credentials"]
    assert len(credential["secrets"]) == 1, "the old secret (or a lost add's) is still there"
    values = _strings_under(world, "value") | _strings_under(world, "client_secret")
    assert values, "the sandbox state file has no secret values: test out of date"
    assert not [v for v in values if len(v) >= 8 and v in printed]
    assert "[[credentials]]" in (work / "staging.toml").read_text()


def _strings_under(node: object, key: str) -> set[str]:
    if isinstance(node, dict):
        found = {node[key]} if isinstance(node.get(key), str) else set()
        return found.union(*(_strings_under(v, key) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_strings_under(v, key) for v in node))
    return set()


# --- shell completion ---------------------------------------------------------------------


def _completion_commands() -> dict[str, str]:
    """shell -> the documented command line that writes its completion script."""
    lines = [
        line
        for block in _sh_blocks("Shell completion")
        for line in block.splitlines()
        if line.startswith("rotator completion ")
    ]
    found = {}
    for line in lines:
        shell = re.match(r"rotator completion (\w+) > ", line)
        assert shell, line
        found[shell[1]] = line
    return found


def test_the_documented_completion_scripts_complete_rotator(tmp_path: Path) -> None:
    commands = _completion_commands()
    assert set(commands) == {"bash", "zsh", "fish"}
    env = _env(tmp_path)
    for shell, line in commands.items():
        target = Path(line.split(" > ", 1)[1].replace("~", str(tmp_path)))
        target.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        script = target.read_text()
        assert "_ROTATOR_COMPLETE" in script and f"{shell}_complete" in script, shell
    # bash runs its script: `rotator sta<TAB>` offers status, `rotator sandbox <TAB>` the
    # sandbox's subcommands.
    bash_script = commands["bash"].split(" > ", 1)[1].replace("~", str(tmp_path))
    probe = (
        f"source {bash_script}\n"
        "COMP_WORDS=(rotator sta); COMP_CWORD=1; _rotator_completion rotator\n"
        'printf "%s\\n" "${COMPREPLY[@]}"; echo ---\n'
        "COMP_WORDS=(rotator sandbox ''); COMP_CWORD=2; _rotator_completion rotator\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", probe], env=env, capture_output=True, text=True)
    first, _, second = done.stdout.partition("---")
    assert "status" in first.split(), done.stdout + done.stderr
    assert {"create-credential", "list"} <= set(second.split()), done.stdout + done.stderr


# --- the sandbox subcommands' refusals ----------------------------------------------------


def _sandbox_cli(*args: str, aws: LocalAws, url: str) -> subprocess.CompletedProcess[str]:
    env = {
        **_env(Path.cwd()),
        "ROTATOR_SANDBOX_URL": url,
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    return subprocess.run(
        [str(BIN / "rotator"), "sandbox", *args], env=env, capture_output=True, text=True
    )


def test_create_credential_prints_a_config_table_and_refuses_bad_input_changing_nothing(
    sandbox: SandboxServer, local_aws: LocalAws
) -> None:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    made = _sandbox_cli(
        "create-credential", "--name", name, "--age", "91d", aws=local_aws, url=sandbox.url
    )
    assert made.returncode == 0, made.stderr
    table = tomllib.loads(made.stdout)["credentials"][0]
    assert table["name"] == name and table["secret_id"] == f"adobe/{name}"
    (secret,) = sandbox.admin.secrets(table["credential_id"])
    assert sandbox.admin.now_ms() - secret["created_at"] > 90 * 86400 * 1000
    sm = boto3.client(
        "secretsmanager", region_name="us-east-1", endpoint_url=local_aws.endpoint_url
    )
    value = json.loads(sm.get_secret_value(SecretId=f"adobe/{name}")["SecretString"])
    assert value["secret_uuid"] == secret["uuid"]
    assert value["client_secret"] not in made.stdout + made.stderr

    before = len(sandbox.admin.state()["credentials"])
    refusals = [
        (("--name", name), 1, "already exists"),  # its AWS secret exists
        (("--name", "bad name!"), 2, "--name"),
        (("--name", name + "x", "--age", "ninety"), 2, "--age"),
    ]
    for args, code, words in refusals:
        done = _sandbox_cli("create-credential", *args, aws=local_aws, url=sandbox.url)
        assert done.returncode == code, (args, done.stderr)
        assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    down = _sandbox_cli("list", "--wait", "0", aws=local_aws, url=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "does not answer" in down.stderr, down.stderr
    assert len(sandbox.admin.state()["credentials"]) == before, "a refusal created something"
    listed = _sandbox_cli("list", "--json", aws=local_aws, url=sandbox.url)
    ids = [c["credential_id"] for c in json.loads(listed.stdout)]
    assert table["credential_id"] in ids
