"""Several replicas on one database: each credential rotated once, fenced leases, failover.

The daemons are real `rotator run` processes; Adobe is the sandbox and AWS is moto's
server, both in this test process on 127.0.0.1.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from rotator.adapters.db.store import Store, make_engine
from rotator.adapters.db.tables import events, rotations
from rotator.devkit.localaws import LocalAws, free_port
from rotator.devkit.sandbox.server import SandboxServer
from rotator.domain.model import State, Trigger
from tests.private_pg import PrivatePostgres
from tests.world import World

ROTATOR = str(Path(sys.executable).parent / "rotator")


def _toml(world: World, *, lease: str = "2s", workers: int = 4) -> str:
    settings = world.settings()
    lines = [
        f'[database]\nurl = "{settings.database.url}"',
        f'[adobe]\nims_url = "{world.sandbox.url}"\napi_url = "{world.sandbox.url}"',
        f'[aws]\nregion = "us-east-1"\nendpoint_url = "{world.aws.endpoint_url}"',
        '[defaults]\nmax_age = "1d"\nquiet_period = "1s"\npoll_interval = "300ms"\n'
        'verify_timeout = "10s"',
        f'[daemon]\ntick = "500ms"\njitter = "0s"\nworkers = {workers}\nlease = "{lease}"\n'
        f'listen = "127.0.0.1:{{port}}"',
    ]
    for name, cred in world.creds.items():
        lines.append(
            f'[[credentials]]\nname = "{name}"\norg_id = "{cred.org_id}"\n'
            f'credential_id = "{cred.credential_id}"\nclient_id = "{cred.client_id}"\n'
            f'secret_id = "{world.secret_ids[name]}"'
        )
    return "\n\n".join(lines) + "\n"


@contextmanager
def daemons(
    world: World, tmp_path: Path, count: int, **kwargs: Any
) -> Iterator[list[subprocess.Popen[bytes]]]:
    template = _toml(world, **kwargs)
    procs = []
    try:
        for index in range(count):
            path = tmp_path / f"replica{index}.toml"
            path.write_text(template.replace("{port}", str(free_port())))
            log = (tmp_path / f"replica{index}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [ROTATOR, "--config", str(path), "--log-level", "INFO", "run"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _make_due(world: World, count: int) -> None:
    for index in range(count):
        cred = world.credential(f"cred{index:03d}")
        assert cred.secret is not None
        world.admin.set_secret_times(cred.credential_id, cred.secret.uuid, created_ago_s=2 * 86400)


def _store(world: World) -> Store:
    engine = make_engine(world.db_url)
    from rotator.adapters.db import migrate

    migrate.upgrade(engine)
    return Store(engine)


def _completed(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(rotations).where(rotations.c.state == "completed")
            ).scalar_one()
        )


# Several daemons on one database are the PostgreSQL way only: a second daemon on one SQLite
# file refuses to start (rotator/daemon/lock.py). What stays true on SQLite (one daemon with
# CLI processes racing it; a killed daemon restarted takes over) is tested further down.
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_three_daemons_rotate_every_due_credential_exactly_once(
    world: World, tmp_path: Path
) -> None:
    count = 50
    _make_due(world, count)
    store = _store(world)
    world.admin.reset_counters()

    with daemons(world, tmp_path, 3):
        _wait_for(lambda: _completed(store) >= count, 150, f"{count} completed rotations")
        time.sleep(1.5)  # a few more ticks: nobody may start a second rotation

    assert world.admin.count("add_secret") == count
    with store.engine.connect() as conn:
        per_credential: dict[str, int] = dict(
            conn.execute(
                select(rotations.c.credential, func.count()).group_by(rotations.c.credential)
            ).all()
        )
        owners = {
            row[0].rsplit(":", 1)[0]
            for row in conn.execute(select(events.c.actor).where(events.c.kind == "promoted"))
        }
    assert len(per_credential) == count and set(per_credential.values()) == {1}
    assert len(owners) >= 2, f"work was not shared between replicas: {owners}"
    for name in world.creds:
        world.assert_i4(name)
    assert store.verify_chain()[1] is None
    store.engine.dispose()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_replica_killed_mid_rotation_is_finished_by_another_after_its_lease(
    world: World, tmp_path: Path
) -> None:
    _make_due(world, 1)
    world.adopt("cred000")  # an orphan is deleted only when AWSCURRENT is known (I12)
    store = _store(world)
    hold = world.admin.arm_hold("add_secret", "after", timeout_s=60)

    with daemons(world, tmp_path, 2, lease="2s") as procs:
        world.admin.wait_held(hold, timeout_s=60)
        owner = store.lease(store.unfinished()[0].id).owner or ""
        victim = next(p for p in procs if f":{p.pid}:" in owner)
        victim.send_signal(signal.SIGKILL)  # the secret exists at Adobe; its value dies here
        victim.wait(timeout=10)
        world.admin.release(hold, drop=True)
        _wait_for(lambda: _completed(store) >= 1, 60, "the survivor to finish")

    rotation = store.recent("cred000", limit=5)
    assert [r.state for r in rotation] == [State.COMPLETED]
    assert world.admin.count("add_secret") == 2  # the orphan's add and the survivor's add
    world.assert_i4("cred000")  # the orphan is gone: exactly one secret, the published one
    store.engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_one_sqlite_daemon_and_cli_processes_racing_it_rotate_each_credential_once(
    world: World, tmp_path: Path
) -> None:
    count = 6
    _make_due(world, count)
    store = _store(world)
    world.admin.reset_counters()
    config = tmp_path / "cli.toml"
    config.write_text(_toml(world).replace("{port}", str(free_port())))
    names = sorted(world.creds)

    with daemons(world, tmp_path, 1):
        clis = [
            subprocess.Popen(
                [ROTATOR, "--config", str(config), "rotate", name, "--wait"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for name in names
        ]
        outputs = [cli.communicate(timeout=120)[0].decode() for cli in clis]
        _wait_for(lambda: _completed(store) >= count, 60, f"{count} completed rotations")
        time.sleep(1.5)  # a few more ticks: nobody may start a second rotation

    for cli, out in zip(clis, outputs, strict=True):
        assert cli.returncode == 0, out
    assert world.admin.count("add_secret") == count
    with store.engine.connect() as conn:
        per_credential: dict[str, int] = dict(
            conn.execute(
                select(rotations.c.credential, func.count()).group_by(rotations.c.credential)
            ).all()
        )
    assert per_credential == dict.fromkeys(names, 1)
    for name in names:
        world.assert_i4(name)
    assert store.verify_chain()[1] is None
    store.engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_sqlite_daemon_killed_mid_rotation_is_finished_by_its_restart(
    world: World, tmp_path: Path
) -> None:
    _make_due(world, 1)
    world.adopt("cred000")  # an orphan is deleted only when AWSCURRENT is known (I12)
    store = _store(world)
    hold = world.admin.arm_hold("add_secret", "after", timeout_s=60)

    with daemons(world, tmp_path, 1, lease="2s") as (victim,):
        world.admin.wait_held(hold, timeout_s=60)
        assert f":{victim.pid}:" in (store.lease(store.unfinished()[0].id).owner or "")
        victim.send_signal(signal.SIGKILL)  # the secret exists at Adobe; its value dies here
        victim.wait(timeout=10)
        world.admin.release(hold, drop=True)
    (tmp_path / "restart").mkdir()
    with daemons(world, tmp_path / "restart", 1, lease="2s"):  # the one-daemon lock is free
        _wait_for(lambda: _completed(store) >= 1, 60, "the restarted daemon to finish")

    assert [r.state for r in store.recent("cred000", limit=5)] == [State.COMPLETED]
    assert world.admin.count("add_secret") == 2  # the orphan's add and the restart's add
    world.assert_i4("cred000")  # the orphan is gone: exactly one secret, the published one
    store.engine.dispose()


def test_a_stale_worker_cannot_write_after_its_lease_was_taken_over(world: World) -> None:
    world.credential()
    first, second = world.fresh_app(owner="replica-a"), world.fresh_app(owner="replica-b")
    rotation = first.engine.request("analytics", Trigger.MANUAL, actor="test")
    stale = first.engine.claim(rotation.id)
    assert stale is not None
    with first.store.engine.begin() as conn:  # replica-a stalls past its lease
        conn.execute(
            update(rotations)
            .where(rotations.c.id == rotation.id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    fresh = second.engine.claim(rotation.id)
    assert fresh is not None and fresh.fence == stale.fence + 1
    events_before = len(first.store.events(rotation_id=rotation.id))

    assert first.engine.step(stale) is None  # LeaseLost: stops without writing

    after = first.store.get(rotation.id)
    assert after.state is State.PLANNED
    assert len(first.store.events(rotation_id=rotation.id)) == events_before
    assert second.engine.drive(fresh).state in {State.DRAINING, State.COMPLETED}
    first.close()
    second.close()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres().init()
    yield cluster
    cluster.destroy()


def test_postgresql_restarted_mid_rotation_and_the_daemon_completes_it(
    sandbox: SandboxServer, local_aws: LocalAws, private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    world = World(sandbox=sandbox, aws=local_aws, db_url=private_pg.url)
    _make_due(world, 1)
    world.adopt("cred000")  # an orphan is deleted only when AWSCURRENT is known (I12)
    store = _store(world)
    hold = world.admin.arm_hold("add_secret", "after", timeout_s=60)

    with daemons(world, tmp_path, 1, lease="3s") as procs:
        world.admin.wait_held(hold, timeout_s=60)
        private_pg.stop()
        try:
            world.admin.release(hold)  # the daemon's next write finds no database
            time.sleep(3)
        finally:
            private_pg.start()
        _wait_for(lambda: _safe_completed(store) >= 1, 90, "completion after the restart")
        assert procs[0].poll() is None, "the daemon must survive the database going away"
    log = (tmp_path / "replica0.log").read_text()
    assert "OperationalError" in log  # the database really was away while it worked

    world.assert_i4("cred000")
    assert world.admin.count("add_secret") <= 2
    store.engine.dispose()
    world.close()


def _safe_completed(store: Store) -> int:
    try:
        return _completed(store)
    except Exception:
        return 0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_claims_from_several_processes_on_one_sqlite_file_never_overlap(
    world: World, tmp_path: Path
) -> None:
    store = _store(world)
    for index in range(40):
        store.sync_credentials({f"c{index}": "x"})
        store.start(f"c{index}", Trigger.MANUAL, actor="test")
    script = (
        "import json, sys\n"
        "from datetime import timedelta\n"
        "from rotator.adapters.db.store import Store, make_engine\n"
        "store = Store(make_engine(sys.argv[1]))\n"
        "got = []\n"
        "while True:\n"
        "    claims = store.claim(sys.argv[2], timedelta(minutes=5), limit=3)\n"
        "    if not claims: break\n"
        "    got += [c.rotation.id for c in claims]\n"
        "print(json.dumps(got))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, world.db_url, f"p{i}"], stdout=subprocess.PIPE
        )
        for i in range(4)
    ]
    claimed: list[int] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        claimed += json.loads(out)
    assert sorted(claimed) == sorted(r.id for r in store.unfinished())
    assert len(claimed) == len(set(claimed)) == 40
    store.engine.dispose()
