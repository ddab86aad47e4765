"""Nothing stops the fleet silently (issue 29): faults injected by the tests themselves on
127.0.0.1, against the installed `rotator run`, on real PostgreSQL and SQLite.

For each fault: how long until the fleet makes progress again (a bound, asserted, and a
`FIGURE` line printed for docs/reliability.md), what /readyz and /healthz said meanwhile
(sampled every 0.1 s), and no invariant broken (I4 after the rotation, the audit chain
verifies, nothing written by a worker that lost its lease).

Timings are small (lease 2 s, step_timeout 4 s, lock_timeout 1 s) so each test takes
seconds; the production defaults are in docs/operations.md ("Bounded waits", "Health").
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, func
from sqlalchemy import select as sql_select

from rotator.adapters.db.store import Store, make_engine
from rotator.adapters.db.tables import events
from tests.reliability.awsproxy import AwsProxy
from tests.system.conftest import DaemonProcess, System, to_toml, wait_for

FAST = {"lease": "2s", "step_timeout": "4s", "stop_timeout": "5s", "tick": "500ms"}


def figure(name: str, **values: Any) -> None:
    print(f"FIGURE {name}: " + ", ".join(f"{k}={v}" for k, v in values.items()))


def write_config(system: System, **sections: dict[str, Any]) -> None:
    """The system config with sections merged in ([database], [adobe], [aws] ...)."""
    config = system.config()
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    system.config_path.write_text(to_toml(config))


@dataclass
class Health:
    """/readyz and /healthz of one daemon, sampled every 0.1 s on a thread."""

    daemon: DaemonProcess
    samples: list[tuple[float, int, int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _code(self, path: str) -> tuple[int, str]:
        try:
            answer = httpx.get(self.daemon.url + path, timeout=1)
        except httpx.HTTPError:
            return 0, "no answer"
        return answer.status_code, str(answer.json().get("reason", ""))

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            ready, why = self._code("/readyz")
            health, stuck = self._code("/healthz")
            self.samples.append((time.monotonic(), ready, health, why or stuck))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def between(self, start: float, end: float) -> list[tuple[float, int, int, str]]:
        return [s for s in self.samples if start <= s[0] <= end]

    def first(self, start: float, *, ready: int | None = None, health: int | None = None) -> float:
        """Seconds after `start` of the first sample with that code (inf when none)."""
        for at, r, h, _ in self.samples:
            if at >= start and (ready is None or r == ready) and (health is None or h == health):
                return round(at - start, 1)
        return float("inf")

    def summary(self, start: float, end: float) -> str:
        seen = self.between(start, end)
        ready = sorted({r for _, r, _, _ in seen})
        health = sorted({h for _, _, h, _ in seen})
        reasons = sorted({w for *_, w in seen if w})[:3]
        return f"readyz {ready} healthz {health} reasons {reasons}"


def event_count(system: System, **where: Any) -> int:
    engine = create_engine(system.world.db_url)
    try:
        query = sql_select(func.count()).select_from(events)
        for key, value in where.items():
            query = query.where(events.c[key] == value)
        with engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def chain_verifies(system: System) -> bool:
    store = Store(make_engine(system.world.db_url))
    try:
        return store.verify_chain()[1] is None
    finally:
        store.engine.dispose()


def psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


# --- a session holding the hot row -------------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_session_holding_the_audit_head_costs_its_timeout_then_the_step_is_retried(
    any_db_system: System,
) -> None:
    system = any_db_system
    system.credential()
    system.daemon_settings = dict(FAST)
    write_config(system, database={"lock_timeout": "1s"})
    daemon = system.start_daemon()
    daemon.wait_ready()
    system.wait_state("draining")
    health = Health(daemon)
    before = event_count(system)

    holder = psycopg.connect(psycopg_url(system.world.db_url), autocommit=False)
    holder.execute("SELECT hash FROM chain_head WHERE id = 1 FOR UPDATE")  # then silence
    held = time.monotonic()
    daemon.wait_until(
        lambda: health.first(held, ready=503) < float("inf"), 20, "/readyz to say 503"
    )
    time.sleep(1)
    assert event_count(system) == before  # nobody appended past the held head
    holder.rollback()  # the session ends (or the server's idle timeout ends it)
    holder.close()
    released = time.monotonic()
    daemon.wait_until(lambda: event_count(system) > before, 15, "the fleet to save again")
    progress = time.monotonic() - released
    system.wait_state("completed", timeout=20)
    daemon.wait_until(lambda: daemon.get("/readyz").status_code == 200, 10, "ready again")
    health.stop()

    logs = [line.get("event", "") for line in daemon.logs()]
    figure(
        "hot row held",
        not_ready_after_s=health.first(held, ready=503),
        progress_after_release_s=round(progress, 1),
        during=health.summary(held, released),
    )
    assert "save cut short by a database timeout; trying again" in logs
    assert all(h == 200 for _, _, h, _ in health.between(held, released))  # not stuck: alive
    assert health.first(held, ready=503) <= 4 + 3 + 2  # step_timeout, 3 x lock_timeout, slack
    assert progress < 2 + 3 + 5  # the lease, 3 x lock_timeout, a tick and slack
    system.world.assert_i4("analytics")
    assert chain_verifies(system)


# --- a connection that goes silent -------------------------------------------------------


class SilentProxy:
    """A TCP forwarder on 127.0.0.1 that can stop forwarding without closing anything: the
    connections stay open and silent, as behind a dead NAT or a frozen peer."""

    def __init__(self, upstream: tuple[str, int], port: int = 0) -> None:
        self.upstream = upstream
        self.frozen = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                if self.frozen.is_set():
                    time.sleep(0.1)
                    continue
                readable, _, _ = select.select([a, b], [], [], 0.1)
                for sock in readable:
                    if self.frozen.is_set():
                        break
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_replica_whose_database_connections_go_silent_is_taken_over(
    any_db_system: System,
) -> None:
    """Two replicas, each reaching PostgreSQL through its own proxy; the one that claimed
    the rotation (parked in Adobe's add) goes silent: its connections stay open, nothing
    passes. The other takes the rotation over; the silent one says it is stuck."""
    system = any_db_system
    system.credential()
    # The rotation is frozen right after Adobe's add: B may find that secret an orphan of
    # A's, and deleting an orphan needs AWSCURRENT's secret known by construction (I12).
    system.world.adopt()
    db_url = system.world.db_url
    proxies = [SilentProxy(("127.0.0.1", 5432)) for _ in range(2)]
    database = {"lock_timeout": "1s", "idle_in_transaction_timeout": "2s"}
    system.daemon_settings = dict(FAST)
    hold = system.admin.arm_hold("add_secret", "after", timeout_s=60)
    daemons = []
    try:
        for proxy in proxies:
            system.world.db_url = db_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
            system.listen = f"127.0.0.1:{_free_port()}"
            write_config(system, database=database)
            daemons.append(system.start_daemon())
            daemons[-1].wait_until(lambda: _answers(daemons[-1]), 30, "its endpoint")
        system.world.db_url = db_url
        daemons[0].wait_held(hold, timeout=60)
        owner = _lease_owner(db_url)
        silent = next(i for i, d in enumerate(daemons) if f":{d.pid}:" in owner)
        a, b = daemons[silent], daemons[1 - silent]
        b.wait_ready()
        health_a, health_b = Health(a), Health(b)
        proxies[silent].frozen.set()  # A's connections go silent, mid-rotation
        frozen = time.monotonic()
        system.admin.release(hold)  # A's add returns; its next database call never does
        by_b = {"actor": _actor(system, b)}
        b.wait_until(lambda: event_count(system, **by_b) > 0, 30, "B to take over")
        taken = time.monotonic() - frozen
        system.wait_state("completed", timeout=30)
        a.wait_until(
            lambda: (
                health_a.first(frozen, health=503) < float("inf")
                and health_a.first(frozen, ready=503) < float("inf")
            ),
            20,
            "A to say it is stuck and not ready",
        )
        health_a.stop()
        health_b.stop()
        end = time.monotonic()
        figure(
            "silent connection",
            taken_over_after_s=round(taken, 1),
            a_not_ready_after_s=health_a.first(frozen, ready=503),
            a_not_alive_after_s=health_a.first(frozen, health=503),
            a=health_a.summary(frozen, end),
            b=health_b.summary(frozen, end),
        )
        assert taken < 2 + 2 + 8  # A's lease, the idle-in-transaction timeout, B's steps
        assert health_a.first(frozen, health=503) <= 4 + 2 + 3  # step_timeout + lease, slack
        assert health_a.first(frozen, ready=503) <= 3 * 0.5 + 2 + 2  # a stale write probe
        assert all(h == 200 for _, _, h, _ in health_b.samples)
        a.kill()  # what /healthz asks for: a restart
        system.world.assert_i4("analytics")
        assert chain_verifies(system)
    finally:
        for proxy in proxies:
            proxy.close()


def _lease_owner(db_url: str) -> str:
    with psycopg.connect(psycopg_url(db_url), autocommit=True) as conn:
        row = conn.execute("SELECT lease_owner FROM rotations WHERE finished_at IS NULL").fetchone()
    return str(row[0]) if row else ""


def _free_port() -> int:
    from rotator.devkit.localaws import free_port

    return free_port()


def _actor(system: System, daemon: DaemonProcess) -> str:
    """The engine owner of a daemon (host:pid:hex), from its start log line."""
    wait_for(lambda: any("owner" in line for line in daemon.logs()), 10, "the start line")
    return next(str(line["owner"]) for line in daemon.logs() if "owner" in line)


# --- a worker blocked in a call ----------------------------------------------------------


def test_a_worker_blocked_in_a_call_lets_its_lease_go_and_abandons_without_writing(
    system: System,
) -> None:
    system.credential()
    system.daemon_settings = {**FAST, "workers": 2}
    write_config(system, adobe={"timeout": "60s"})
    hold = system.admin.arm_hold("add_secret", "before", timeout_s=90)
    daemon = system.start_daemon()
    daemon.wait_held(hold, timeout=60)
    blocked = time.monotonic()
    health = Health(daemon)
    # Another worker takes the rotation over once step_timeout let the lease go.
    system.wait_state("draining", "completed", timeout=30)
    first = next(e["at"] for e in system.events() if e["kind"] != "started")
    progress = time.monotonic() - blocked
    daemon.wait_until(lambda: health.first(blocked, health=503) < float("inf"), 15, "503")
    before = len(system.events())
    system.admin.release(hold, drop=True)  # the call fails now: its worker must not write
    released = time.monotonic()
    system.wait_state("completed", timeout=20)
    daemon.wait_until(lambda: daemon.get("/healthz").status_code == 200, 10, "alive again")
    health.stop()
    figure(
        "worker blocked in a call",
        progress_after_s=round(progress, 1),
        not_alive_after_s=health.first(blocked, health=503),
        during=health.summary(blocked, released),
    )
    logs = [line.get("event", "") for line in daemon.logs()]
    assert any("step ran past daemon.step_timeout" in e for e in logs)
    assert first is not None and progress < 4 + 1 + 6  # step_timeout, takeover, the steps
    # The abandoned worker wrote nothing: every event after the release follows the
    # rotation's own order (no second 'planned' step, no state written twice).
    kinds = [e["kind"] for e in system.events()]
    assert kinds.count("planned") == 1, kinds
    assert len(system.events()) >= before
    system.world.assert_i4("analytics")
    assert chain_verifies(system)


def test_a_graceful_stop_is_bounded_while_a_call_hangs(system: System) -> None:
    system.credential()
    system.daemon_settings = {**FAST, "stop_timeout": "2s"}
    write_config(system, adobe={"timeout": "60s"})
    hold = system.admin.arm_hold("add_secret", "before", timeout_s=60)
    daemon = system.start_daemon()
    daemon.wait_held(hold)
    asked = time.monotonic()
    daemon.signal(signal.SIGTERM)
    code = daemon.wait(timeout=15)
    took = time.monotonic() - asked
    system.admin.release(hold, drop=True)
    figure("graceful stop while a call hangs", exit_code=code, stopped_after_s=round(took, 1))
    assert code == 0 and took < 2 + 3
    assert any("stop_timeout passed" in line.get("event", "") for line in daemon.logs())


# --- a full small volume -----------------------------------------------------------------


@contextlib.contextmanager
def small_volume(path: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` (root only: the test is skipped, saying so, otherwise)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(volume: Path) -> Path:
    filler = volume / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


def test_a_full_volume_makes_the_daemon_not_ready_and_it_resumes_when_freed(
    system: System, tmp_path: Path
) -> None:
    with small_volume(tmp_path / "vol") as volume:
        system.world.db_url = f"sqlite:///{volume}/rotator.db"
        system.credential()
        system.daemon_settings = dict(FAST)
        write_config(system, database={"journal_size_limit": 262144, "wal_autocheckpoint": 64})
        daemon = system.start_daemon()
        daemon.wait_ready()
        system.wait_state("draining")
        health = Health(daemon)
        filler = fill(volume)
        full = time.monotonic()
        daemon.wait_until(lambda: health.first(full, ready=503) < float("inf"), 10, "503")
        time.sleep(1.5)
        filler.unlink()
        freed = time.monotonic()
        system.wait_state("completed", timeout=20)
        progress = time.monotonic() - freed
        daemon.wait_until(lambda: daemon.get("/readyz").status_code == 200, 10, "ready")
        health.stop()
        wal = volume / "rotator.db-wal"
        figure(
            "full volume",
            not_ready_after_s=health.first(full, ready=503),
            completed_after_freed_s=round(progress, 1),
            wal_bytes=wal.stat().st_size if wal.exists() else 0,
            during=health.summary(full, freed),
        )
        assert health.first(full, ready=503) <= 2
        assert all(h == 200 for _, _, h, _ in health.between(full, freed))
        assert progress < 15
        assert not wal.exists() or wal.stat().st_size <= 262144 + 65 * 4096
        system.world.assert_i4("analytics")
        assert chain_verifies(system)


# --- two replicas on one budget ----------------------------------------------------------


class TimedAwsProxy(AwsProxy):
    """The AWS proxy, also keeping the time of every write it forwards."""

    WRITES = ("PutSecretValue", "UpdateSecretVersionStage")

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.write_times: list[float] = []
        self.seen: list[tuple[float, str]] = []

    def _handle(self, handler: Any) -> None:
        target = (handler.headers.get("X-Amz-Target") or "").rpartition(".")[2]
        with self._lock:
            self.seen.append((round(time.monotonic() % 1000, 3), target))
        if target in self.WRITES:
            with self._lock:
                self.write_times.append(time.monotonic())
        super()._handle(handler)


def busiest_second(times: list[float]) -> int:
    ordered = sorted(times)
    return max((sum(1 for u in ordered if t <= u < t + 1) for t in ordered), default=0)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_replicas_share_one_write_budget_start_and_survey_once(
    any_db_system: System,
) -> None:
    system = any_db_system
    names = [f"cred{i}" for i in range(6)]
    for name in names:
        system.credential(name)
    with TimedAwsProxy(system.world.aws.endpoint_url) as proxy:
        system.daemon_settings = dict(FAST)
        budget = 4
        write_config(system, aws={"endpoint_url": proxy.url, "write_rate": budget})
        first = system.start_daemon()
        first.wait_ready()  # it has read its config: the second one's may be written
        system.listen = f"127.0.0.1:{_free_port()}"
        write_config(system, aws={"endpoint_url": proxy.url, "write_rate": budget})
        second = system.start_daemon()
        second.wait_ready()
        for name in names:
            system.wait_state("draining", "completed", name=name, timeout=90)
        first.wait_until(
            lambda: first.metric("rotator_replicas_live") == 2, 15, "two live replicas"
        )
        shown = first.metric("rotator_aws_write_budget_per_second")
    most = busiest_second(proxy.write_times)
    started = sum(
        1 for d in (first, second) for line in d.logs() if line.get("event") == "rotation started"
    )
    surveys = sum(event_count(system, credential=n, kind="surveyed") for n in names)
    figure(
        "two replicas, one budget",
        budget=budget,
        writes=len(proxy.write_times),
        most_in_one_second=most,
        started_lines=started,
        survey_events=surveys,
    )
    assert most <= budget, proxy.seen
    assert shown == budget
    assert started == len(names)  # one "rotation started" per rotation, across replicas
    assert surveys <= len(names)  # one survey per credential, across replicas
    assert chain_verifies(system)


# --- the database away at start ----------------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_daemon_started_while_postgresql_is_down_waits_for_it(any_db_system: System) -> None:
    """The database's address answers nothing (connection refused) when the daemon starts;
    it comes up 2 s later (a forwarder to the real server starts listening there)."""
    system = any_db_system
    port = _free_port()
    db_url = system.world.db_url
    system.world.db_url = db_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    system.credential()
    write_config(system, database={"start_wait": "60s", "connect_timeout": "2s"})
    daemon = system.start_daemon()
    proxy = None
    try:
        daemon.wait_until(lambda: _answers(daemon), 30, "the health endpoint")
        time.sleep(2)
        assert daemon.alive()
        assert daemon.get("/healthz").status_code == 200
        assert daemon.get("/readyz").json()["reason"] == "waiting for the database"
        proxy = SilentProxy(("127.0.0.1", 5432), port=port)  # the database is back
        up = time.monotonic()
        daemon.wait_ready(timeout=30)
        figure("database down at start", ready_after_db_up_s=round(time.monotonic() - up, 1))
        assert any(
            line.get("event") == "database unreachable at start; waiting for it"
            for line in daemon.logs()
        )
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        if proxy is not None:
            proxy.close()


def _answers(daemon: DaemonProcess) -> bool:
    try:
        daemon.get("/healthz")
        return True
    except httpx.TransportError:
        return False
