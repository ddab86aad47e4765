"""System tests: the INSTALLED `rotator` command in subprocesses, as an operator runs it.

Each test writes a real TOML config to its tmp_path pointing at the in-process Adobe
sandbox, moto's Secrets Manager server and a real database, then runs `rotator ...`
(one-shot commands, or `rotator run` as a daemon) and looks at the world: Adobe's list,
AWS's labels, the state database, the HTTP endpoints, webhook bodies.

Every byte a rotator process writes to stdout or stderr is kept, and after each test it is
searched for every client secret and access token the sandbox ever issued (I5): the
`system` fixture fails the test if one is found. Daemons are always killed in teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from sqlalchemy import create_engine, select

from rotator.adapters.db.tables import events, rotations
from rotator.devkit.localaws import LocalAws, free_port
from rotator.devkit.sandbox.client import CreatedCredential, SandboxAdmin
from rotator.devkit.sandbox.server import SandboxServer
from tests.world import World

ROTATOR = Path(sys.executable).parent / "rotator"

# Fast timings: a whole normal rotation takes a few seconds.
FAST_POLICY: dict[str, Any] = {
    "max_age": "30d",
    "quiet_period": "2s",
    "poll_interval": "500ms",
    "verify_timeout": "5s",
    "max_drain": "1h",
}
OLD = 60 * 86400  # seconds: a secret this old is due under max_age 30d


@dataclass
class Ran:
    """One finished `rotator` command."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        command = " ".join(self.args)
        return f"rotator {command} -> {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


class DaemonProcess:
    """`rotator run` in a subprocess; its output goes to files so it never blocks on a pipe."""

    def __init__(self, system: System, name: str) -> None:
        self.system = system
        self.out_path = system.tmp / f"{name}.out"
        self.err_path = system.tmp / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [str(ROTATOR), "--config", str(system.config_path), "--log-format", "json", "run"],
                stdout=out,
                stderr=err,
                env=system.env(),
            )
        self.url = f"http://{system.listen}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, and the exit status of the graceful stop."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") + self.err_path.read_text(errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        lines = self.err_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def wait_held(self, hold_id: str, timeout: float = 20) -> None:
        """Wait for this daemon to park a request on a sandbox hold."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.alive(), f"the daemon exited:\n{self.output()}"
            try:
                self.system.admin.wait_held(hold_id, timeout_s=1)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"no request reached the hold in {timeout}s:\n{self.output()}"
                    ) from None

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """`wait_for`, failing with the daemon's output when it does."""

        def checked() -> bool:
            assert self.alive(), f"the daemon exited:\n{self.output()}"
            return check()

        try:
            wait_for(checked, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()[-3000:]}") from None

    def wait_ready(self, timeout: float = 20) -> None:
        def ready() -> bool:
            assert self.alive(), f"the daemon exited:\n{self.output()}"
            try:
                return self.get("/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout, "the daemon to be ready")

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample of /metrics, or None if it is not there."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        text = self.get("/metrics").text
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            metric, _, rest = key.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric == name and got == want:
                return float(value)
        return None


class Running:
    """A one-shot `rotator` command started in the background, its output in files."""

    def __init__(self, system: System, args: tuple[str, ...]) -> None:
        self.args = args
        stem = system.tmp / f"cli{len(system.running)}"
        self.out_path, self.err_path = stem.with_suffix(".out"), stem.with_suffix(".err")
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [str(ROTATOR), "--config", str(system.config_path), *args],
                stdout=out,
                stderr=err,
                env=system.env(),
            )

    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    def err(self) -> str:
        return self.err_path.read_text(errors="replace")


class WebhookReceiver:
    """A tiny HTTP server on 127.0.0.1 that keeps every body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                received.append(self.rfile.read(length).decode())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(b) for b in self.bodies]

    def kinds(self) -> list[str]:
        return [e["event"] for e in self.events()]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class System:
    world: World
    tmp: Path
    listen: str = field(default_factory=lambda: f"127.0.0.1:{free_port()}")
    daemon_settings: dict[str, Any] = field(default_factory=dict)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    daemons: list[DaemonProcess] = field(default_factory=list)
    running: list[Running] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.world.defaults = dict(FAST_POLICY)

    @property
    def admin(self) -> SandboxAdmin:
        return self.world.admin

    @property
    def config_path(self) -> Path:
        return self.tmp / "rotator.toml"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("ROTATOR_CONFIG", None)
        env.pop("ROTATOR_LOG_LEVEL", None)
        return env

    # --- the world -----------------------------------------------------------------------

    def credential(
        self, name: str = "analytics", *, age_s: float | None = OLD, **overrides: Any
    ) -> CreatedCredential:
        """A sandbox credential published to AWS; by default its secret is old enough to be due."""
        cred = self.world.credential(name, **overrides)
        assert cred.secret is not None
        if age_s is not None:
            self.admin.set_secret_times(cred.credential_id, cred.secret.uuid, created_ago_s=age_s)
        return cred

    def config(self) -> dict[str, Any]:
        w = self.world
        return {
            "database": {"url": w.db_url},
            "adobe": {"ims_url": w.sandbox.url, "api_url": w.sandbox.url, "timeout": "10s"},
            "aws": {"endpoint_url": w.aws.endpoint_url, "region": "us-east-1"},
            "defaults": w.defaults,
            "daemon": {
                "tick": "1s",
                "jitter": "0s",
                "lease": "10s",
                "workers": 4,
                "listen": self.listen,
                **self.daemon_settings,
            },
            "notifications.webhooks": self.webhooks,
            "credentials": [
                {
                    "name": n,
                    "org_id": c.org_id,
                    "credential_id": c.credential_id,
                    "client_id": c.client_id,
                    "secret_id": w.secret_ids[n],
                    **w.extra[n],
                }
                for n, c in w.creds.items()
            ],
        }

    def write_config(self) -> Path:
        self.config_path.write_text(to_toml(self.config()))
        return self.config_path

    # --- running rotator -----------------------------------------------------------------

    def rotator(self, *args: str, timeout: float = 30, config: bool = True) -> Ran:
        """Run one `rotator` command to its end; its output joins the transcript."""
        if config and not self.config_path.exists():
            self.write_config()
        argv = [str(ROTATOR), *(["--config", str(self.config_path)] if config else []), *args]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=self.env(), cwd=self.tmp
        )
        self.transcript += [done.stdout, done.stderr]
        return Ran(tuple(args), done.returncode, done.stdout, done.stderr)

    def popen(self, *args: str) -> Running:
        """A `rotator` command running alongside the test; finish it with `collect`."""
        running = Running(self, args)
        self.running.append(running)
        return running

    def collect(self, running: Running, timeout: float = 30) -> Ran:
        code = running.proc.wait(timeout=timeout)
        out, err = running.out(), running.err()
        self.transcript += [out, err]
        return Ran(running.args, code, out, err)

    def start_daemon(self) -> DaemonProcess:
        if not self.config_path.exists():
            self.write_config()
        daemon = DaemonProcess(self, f"daemon{len(self.daemons)}")
        self.daemons.append(daemon)
        return daemon

    # --- looking -------------------------------------------------------------------------

    def rotation_rows(self, name: str = "analytics") -> list[dict[str, Any]]:
        """The rotations table (oldest first), read directly: quicker than `status`."""
        return self._rows(
            select(rotations).where(rotations.c.credential == name).order_by(rotations.c.id)
        )

    def events(self, name: str = "analytics") -> list[dict[str, Any]]:
        """The audit events (oldest first), read directly: quicker than `history`."""
        return self._rows(select(events).where(events.c.credential == name).order_by(events.c.id))

    def _rows(self, query: Any) -> list[dict[str, Any]]:
        engine = create_engine(self.world.db_url)
        try:
            with engine.connect() as conn:
                return [dict(r) for r in conn.execute(query).mappings()]
        except Exception:  # no database (or no schema) yet
            return []
        finally:
            engine.dispose()

    def state(self, name: str = "analytics") -> str | None:
        rows = self.rotation_rows(name)
        return rows[-1]["state"] if rows else None

    def wait_state(self, *states: str, name: str = "analytics", timeout: float = 40) -> str:
        daemon = self.daemons[-1] if self.daemons else None

        def reached() -> bool:
            if daemon is not None and not daemon.alive():
                raise AssertionError(f"the daemon exited:\n{daemon.output()}")
            return self.state(name) in states

        try:
            wait_for(reached, timeout, f"{name} to reach {states}")
        except AssertionError as exc:
            tail = daemon.output()[-3000:] if daemon else ""
            raise AssertionError(f"{exc} (it is {self.state(name)})\n{tail}") from None
        return str(self.state(name))

    def leaks(self) -> list[str]:
        """Secret values and tokens found in anything a rotator process printed."""
        for daemon in self.daemons:
            self.transcript.append(daemon.output())
        haystack = "\n".join(self.transcript)
        needles = self.admin.secret_values() + self.admin.token_values()
        return [n[:6] + "…" for n in needles if n in haystack]


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def to_toml(config: dict[str, Any]) -> str:
    """Enough TOML for a rotator config: tables of scalars, arrays of tables."""
    lines: list[str] = []
    for section, body in config.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{section}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in item.items()]
        else:
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)  # strings and lists of strings: JSON's escapes are TOML's


@pytest.fixture
def system(
    sandbox: SandboxServer, local_aws: LocalAws, sqlite_url: str, tmp_path: Path
) -> Iterator[System]:
    yield from _system(sandbox, local_aws, sqlite_url, tmp_path)


@pytest.fixture
def any_db_system(
    sandbox: SandboxServer, local_aws: LocalAws, db_url: str, tmp_path: Path
) -> Iterator[System]:
    """The same, once on SQLite and once on the real PostgreSQL."""
    yield from _system(sandbox, local_aws, db_url, tmp_path)


def _system(
    sandbox: SandboxServer, local_aws: LocalAws, db_url: str, tmp_path: Path
) -> Iterator[System]:
    world = World(sandbox=sandbox, aws=local_aws, db_url=db_url)
    system = System(world=world, tmp=tmp_path)
    try:
        yield system
    finally:
        for daemon in system.daemons:
            daemon.kill()
        for running in system.running:
            if running.proc.poll() is None:
                running.proc.kill()
                running.proc.wait(timeout=10)
            system.transcript += [running.out(), running.err()]
        world.close()
    leaks = system.leaks()
    assert leaks == [], f"secret values in rotator's output: {leaks}"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    yield hook
    hook.close()


def consumer_token(sandbox_url: str, client_id: str, secret: str) -> httpx.Response:
    """What a consumer does with AWSCURRENT's value: mint an access token at IMS."""
    return httpx.post(
        f"{sandbox_url}/ims/token/v3",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": "openid,AdobeID",
        },
        timeout=10,
    )


def boto_client(aws: LocalAws) -> Any:
    return boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=aws.endpoint_url)
