"""Shared plumbing of the benchmarks: the stand-ins, databases, fleets, and the arithmetic.

Everything runs on 127.0.0.1. The Adobe sandbox (`rotator sandbox`) and moto's server
(`bench/_moto_server.py`) each run in a process of their own, so the rotator under test
does not share its interpreter (and GIL) with them; they do share this machine's cores,
which every figure has to be read against (see README's machine line).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.config import Config
from sqlalchemy import create_engine, insert, text

from rotator import config as config_mod
from rotator.adapters.db import migrate
from rotator.adapters.db.store import make_engine
from rotator.adapters.db.tables import credentials
from rotator.devkit.sandbox.client import CreatedCredential, SandboxAdmin

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PY = sys.executable
PG_ADMIN = os.environ.get("ROTATOR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# boto3 wants credentials even for a local endpoint; these are placeholders.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


# --------------------------------------------------------------------------- the machine


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_kb = int(line.split()[1])
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "ram": f"{ram_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def code_under_test() -> str:
    """Where `rotator` comes from: a snapshot (bench/snapshot.sh) names its commit."""
    import rotator

    where = Path(rotator.__file__).resolve().parents[1]
    marker = where / "COMMIT"
    if marker.exists():
        return f"commit {marker.read_text().strip()} (snapshot {where})"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "rotator", "migrations"],
            cwd=where,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return str(where)
    return f"working tree at {head}" + (" with uncommitted changes" if dirty else "")


def print_machine() -> None:
    m = machine()
    print(
        f"machine: nproc={m['nproc']} cpu={m['cpu']!r} ram={m['ram']} "
        f"python={m['python']} date={m['date']}; code: {code_under_test()}"
    )


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        time.sleep(0.05)


class Proc:
    """A child process that this benchmark started and alone stops (by its own pid)."""

    def __init__(self, argv: Sequence[str], *, log: Path | None = None, **kw: Any) -> None:
        self._log = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        self.popen = subprocess.Popen(
            list(argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=kw.pop("cwd", tempfile.gettempdir()),
            **kw,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        if hasattr(self._log, "close"):
            self._log.close()


class Sandbox:
    """`rotator sandbox` in its own process."""

    def __init__(self, *, token_lifetime: int | None = None) -> None:
        self.port = free_port()
        argv = [PY, "-m", "rotator", "sandbox", "--port", str(self.port)]
        if token_lifetime:
            argv += ["--token-lifetime", str(token_lifetime)]
        self.proc = Proc(argv)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(self.url + "/sandbox/health")
        self.admin = SandboxAdmin(self.url, timeout=300)

    def stop(self) -> None:
        self.admin.close()
        self.proc.stop()


class Moto:
    """moto's server in its own process, with a request log (bench/_moto_server.py)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = Proc([PY, str(BENCH / "_moto_server.py"), "--port", str(self.port)])
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(self.url + "/__bench/log")

    def client(self, pool: int = 32) -> Any:
        return boto3.client(
            "secretsmanager",
            region_name="us-east-1",
            endpoint_url=self.url,
            config=Config(max_pool_connections=pool, retries={"mode": "standard"}),
        )

    def log(self) -> list[tuple[float, float, str]]:
        entries = httpx.get(self.url + "/__bench/log", timeout=60).json()["entries"]
        return [(a, d, t.removeprefix("secretsmanager.")) for a, d, t in entries]

    def clear_log(self) -> None:
        httpx.delete(self.url + "/__bench/log", timeout=60)

    def stop(self) -> None:
        self.proc.stop()


@contextlib.contextmanager
def stand_ins(*, token_lifetime: int | None = None) -> Iterator[tuple[Sandbox, Moto]]:
    sandbox = Sandbox(token_lifetime=token_lifetime)
    try:
        moto = Moto()
        try:
            yield sandbox, moto
        finally:
            moto.stop()
    finally:
        sandbox.stop()


# --------------------------------------------------------------------------- databases


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh SQLite file or a fresh PostgreSQL database, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="rotator-bench-") as tmp:
            yield f"sqlite:///{tmp}/rotator.db"
        return
    if kind != "postgres":
        raise ValueError(kind)
    name = f"rotator_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        PG_ADMIN.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


# --------------------------------------------------------------------------- fleets


def make_fleet(
    sandbox: Sandbox, moto: Moto, count: int, *, prefix: str = "c", threads: int = 8
) -> tuple[list[dict[str, str]], list[CreatedCredential]]:
    """`count` sandbox credentials (one bulk call) and one AWS secret each in moto.

    Returns the credentials' config entries and the sandbox's records of them.
    """
    created = sandbox.admin.create_credentials(count)
    sm = moto.client(pool=threads * 2)
    run = uuid.uuid4().hex[:6]
    entries: list[dict[str, str]] = []
    for i, cred in enumerate(created):
        entries.append(
            {
                "name": f"{prefix}{i:05d}",
                "org_id": cred.org_id,
                "credential_id": cred.credential_id,
                "client_id": cred.client_id,
                "secret_id": f"bench/{run}/{prefix}{i:05d}",
            }
        )

    def publish(i: int) -> None:
        cred = created[i]
        assert cred.secret is not None
        value = {"client_secret": cred.secret.client_secret, "secret_uuid": cred.secret.uuid}
        sm.create_secret(Name=entries[i]["secret_id"], SecretString=json.dumps(value))

    parallel(publish, range(count), threads)
    return entries, created


def parallel(fn: Callable[[int], Any], items: Sequence[int] | range, threads: int) -> None:
    queue = list(items)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            with lock:
                if not queue or errors:
                    return
                item = queue.pop()
            try:
                fn(item)
            except BaseException as exc:
                errors.append(exc)
                return

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]


def settings_mapping(
    db_url: str,
    sandbox_url: str,
    aws_url: str,
    creds: list[dict[str, str]],
    *,
    defaults: dict[str, Any] | None = None,
    daemon: dict[str, Any] | None = None,
    adobe: dict[str, Any] | None = None,
    aws: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "database": {"url": db_url},
        "adobe": {"ims_url": sandbox_url, "api_url": sandbox_url, **(adobe or {})},
        "aws": {"endpoint_url": aws_url, "region": "us-east-1", **(aws or {})},
        "defaults": defaults or {},
        "daemon": {"listen": f"127.0.0.1:{free_port()}", **(daemon or {})},
        "credentials": creds,
    }


def settings(mapping: dict[str, Any]) -> config_mod.Settings:
    return config_mod.from_mapping(mapping, source="bench.toml")


def write_toml(path: Path, mapping: dict[str, Any]) -> None:
    """A tiny TOML writer for the shapes above (tables of scalars, arrays of tables)."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return json.dumps(str(v))

    lines: list[str] = []
    for section, body in mapping.items():
        if section == "credentials":
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {scalar(v)}" for k, v in body.items()]
        lines.append("")
    for cred in mapping.get("credentials", []):
        lines.append("[[credentials]]")
        lines += [f"{k} = {scalar(v)}" for k, v in cred.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def prepopulate(
    db_url: str,
    names_uuids: dict[str, str | None],
    *,
    created_ago: timedelta,
    config_hashes: dict[str, str] | None = None,
) -> None:
    """Write credential rows directly (the schema made by the real migrations).

    `secret_created_at = now - created_ago` tells the scheduler the age of each current
    secret, which is what a survey would have learned from Adobe's `created_at`: older than
    max_age makes it due, younger makes it not due, without one Adobe call.
    """
    engine = make_engine(db_url)
    try:
        migrate.upgrade(engine)
        now = datetime.now(UTC)
        rows = [
            {
                "name": name,
                "config_hash": (config_hashes or {}).get(name, "bench"),
                "current_uuid": current,
                "secret_created_at": now - created_ago,
                "surveyed_at": now,
                "updated_at": now,
            }
            for name, current in names_uuids.items()
        ]
        with engine.begin() as conn:
            for i in range(0, len(rows), 1000):
                conn.execute(insert(credentials), rows[i : i + 1000])
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- arithmetic


def now() -> datetime:
    return datetime.now(UTC)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """The most events in any half-open window [t, t + width) (a maximum sits at an event)."""
    ordered = sorted(times)
    best, j = 0, 0
    for i, start in enumerate(ordered):
        while j < len(ordered) and ordered[j] < start + width:
            j += 1
        best = max(best, j - i)
    return best


def steady_rate(times: Sequence[float], trim: float = 0.1) -> float:
    """Events per second between the first and last `trim` fraction (ramp-up/down cut)."""
    ordered = sorted(times)
    if len(ordered) < 10:
        return float("nan")
    a = ordered[int(len(ordered) * trim)]
    b = ordered[int(len(ordered) * (1 - trim)) - 1]
    n = int(len(ordered) * (1 - trim)) - 1 - int(len(ordered) * trim)
    return n / (b - a) if b > a else float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def quiet_logs() -> None:
    """What `rotator run` does by default: structlog at WARNING, JSON lines to stderr."""
    from rotator import logs

    logs.configure("WARNING", json=True)


def watch_rotations(
    daemon: Any, on_rows: Callable[[list[Any]], None], stop: threading.Event, interval: float = 0.2
) -> threading.Thread:
    """Call `on_rows` with every rotation row (credential, state, promoted_at, finished_at)
    each `interval` while a daemon runs: what an engine listener used to report, read from the
    database (the engine no longer calls listeners; the outbox carries its outcomes)."""
    from sqlalchemy import select

    from rotator.adapters.db.tables import rotations

    query = select(
        rotations.c.credential, rotations.c.state, rotations.c.promoted_at, rotations.c.finished_at
    )

    def loop() -> None:
        while not stop.wait(interval):
            app = daemon.app
            if app is None:
                continue
            try:
                with app.store.engine.connect() as conn:
                    rows = list(conn.execute(query).all())
            except Exception as exc:  # the daemon is starting or stopping: look again
                print(f"    (watch: {type(exc).__name__}; looking again)")
                continue
            on_rows(rows)

    thread = threading.Thread(target=loop, daemon=True, name="watch-rotations")
    thread.start()
    return thread
