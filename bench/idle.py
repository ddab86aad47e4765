"""Idle cost: the daemon with 10,000 configured credentials and nothing due.

Set-up, without a single Adobe or AWS call: the credentials table is written directly
(the schema made by the real migrations) with each credential's current uuid, its
secret's `created_at` one day ago (max_age is 90 days: not due) and `surveyed_at` now
(the next survey is poll_interval = 15 min away). The database also gets 10,000 completed
rotations and 100,000 audit events on a valid hash chain (`rotator audit verify` passes),
so the tick runs against a database with history.

1. tick: `Daemon.tick()` in-process, on SQLite and on PostgreSQL, median of repeated ticks.
2. process: `rotator --config ... run` as a subprocess (default tick 30 s) for --minutes:
   resident memory (VmRSS) and CPU (utime + stime from /proc/PID/stat) after start-up,
   plus `rotator_tick_seconds` from its /metrics. The sandbox and moto it is configured
   against count what it sent them (expected: nothing).

    .venv/bin/python bench/idle.py                        # 5 minutes, SQLite process
    .venv/bin/python bench/idle.py --quick                # 1 minute, fewer ticks
    .venv/bin/python bench/idle.py --minutes 5 --process-db postgres
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h
import httpx
from sqlalchemy import insert, update

from rotator import app as app_mod
from rotator.adapters.db.store import GENESIS, event_hash, make_engine
from rotator.adapters.db.tables import chain_head, events, rotations
from rotator.config import Settings
from rotator.daemon import Daemon

STEPS = (
    ("started", None, "planned"),
    ("planned", "planned", "creating"),
    ("staged", "creating", "staged"),
    ("verified", "staged", "verified"),
    ("promoted", "verified", "promoted"),
    ("draining", "promoted", "draining"),
    ("poll", "draining", "draining"),
    ("poll", "draining", "draining"),
    ("quiet", "draining", "retiring"),
    ("completed", "retiring", "completed"),
)


def fleet_config(count: int, db_url: str, sandbox: str, aws: str) -> dict[str, Any]:
    creds = [
        {
            "name": f"idle{i:05d}",
            "org_id": "4242",
            "credential_id": str(100000 + i),
            "client_id": f"bench-idle-{i:05d}",
            "secret_id": f"bench/idle/{i:05d}",
        }
        for i in range(count)
    ]
    return h.settings_mapping(db_url, sandbox, aws, creds)


def populate(settings: Settings, events_count: int) -> None:
    """Credentials (not due), completed rotations, and a valid audit chain."""
    names = [c.name for c in settings.credentials]
    hashes = {
        c.name: hashlib.sha256(c.model_dump_json().encode()).hexdigest()
        for c in settings.credentials
    }
    h.prepopulate(
        settings.database.url,
        {n: f"{i:032x}" for i, n in enumerate(names)},
        created_ago=timedelta(days=1),
        config_hashes=hashes,
    )
    engine = make_engine(settings.database.url)
    rotation_count = max(1, events_count // len(STEPS))
    start = datetime.now(UTC) - timedelta(days=30)
    rows, chain = [], []
    prev = GENESIS
    for r in range(rotation_count):
        name = names[r % len(names)]
        at = start + timedelta(seconds=r)
        rows.append(
            {
                "id": r + 1,
                "credential": name,
                "trigger": "scheduled",
                "state": "completed",
                "actor": "scheduler",
                "reason": "due",
                "old_uuid": f"{r:032x}",
                "new_uuid": f"{r + 1:032x}",
                "known_uuids": [],
                "request_token": f"{r:032x}",
                "detail": {},
                "created_at": at,
                "state_since": at,
                "promoted_at": at,
                "finished_at": at,
                "next_attempt_at": at,
            }
        )
        for kind, src, dst in STEPS:
            event = {
                "rotation_id": r + 1,
                "credential": name,
                "at": at,
                "actor": "bench",
                "kind": kind,
                "from_state": src,
                "to_state": dst,
                "detail": {"bench": True},
            }
            digest = event_hash(prev, event)  # 0.1's unkeyed link, marked as such
            seq = len(chain) + 1
            chain.append(
                {**event, "seq": seq, "scheme": "sha256-v1", "prev_hash": prev, "hash": digest}
            )
            prev = digest
    with engine.begin() as conn:
        for i in range(0, len(rows), 2000):
            conn.execute(insert(rotations), rows[i : i + 2000])
        for i in range(0, len(chain), 5000):
            conn.execute(insert(events), chain[i : i + 5000])
        head = conn.execute(chain_head.select()).first()
        values = {"hash": prev, "last_event_id": len(chain), "seq": len(chain)}
        if head is None:
            conn.execute(insert(chain_head).values(id=1, **values))
        else:
            conn.execute(update(chain_head).where(chain_head.c.id == 1).values(**values))
        if engine.dialect.name == "postgresql":  # ids were given explicitly: move sequences
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('rotations','id'), "
                "(SELECT max(id) FROM rotations))"
            )
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('events','id'), (SELECT max(id) FROM events))"
            )
    engine.dispose()


def install_tick_prototype(daemon: Daemon) -> None:
    """The tick fixes proposed in README (finding 3), patched in to measure them.

    Policy per credential computed once; credential rows read incrementally (only rows
    whose updated_at moved since the last read).
    """
    from sqlalchemy import func, select

    from rotator.adapters.db.store import CredentialRow
    from rotator.adapters.db.tables import credentials

    settings, store = daemon.settings, daemon.app.store  # type: ignore[union-attr]
    original = type(settings).policy
    policies = {c.name: original(settings, c) for c in settings.credentials}
    type(settings).policy = lambda self, cred: policies.get(cred.name) or original(self, cred)  # type: ignore[method-assign]

    cache: dict[str, Any] = {"rows": {}, "mark": None}
    fields = CredentialRow.__dataclass_fields__

    def credential_rows() -> dict[str, CredentialRow]:
        query = select(credentials)
        if cache["mark"] is not None:
            query = query.where(credentials.c.updated_at > cache["mark"])
        with store.engine.connect() as conn:
            changed = conn.execute(query).mappings().all()
            if changed or cache["mark"] is None:
                cache["mark"] = conn.execute(select(func.max(credentials.c.updated_at))).scalar()
        for r in changed:
            cache["rows"][r["name"]] = CredentialRow(**{k: r[k] for k in fields})
        return dict(cache["rows"])

    store.credential_rows = credential_rows  # type: ignore[method-assign]
    # (The per-credential attention gauge the prototype also trimmed is gone: /metrics now
    # reads the fleet from the database at scrape time, not on every tick.)


def tick_times(
    settings: Settings, repeats: int, prototype: bool = False
) -> tuple[list[float], int, dict[str, float]]:
    """Time `Daemon.tick()`, wired as `Daemon.run()` wires it (no clock, no HTTP)."""
    daemon = Daemon(settings)
    daemon.app = app_mod.build(settings, upgrade=True)
    daemon.app.engine.sync()
    policy = type(settings).policy
    if prototype:
        install_tick_prototype(daemon)
    times = []
    try:
        daemon.tick()  # warm-up: first queries, caches
        for _ in range(repeats):
            started = time.perf_counter()
            daemon.tick()
            times.append(time.perf_counter() - started)
        submitted = daemon._busy
        parts = tick_parts(daemon, repeats)
    finally:
        type(settings).policy = policy  # type: ignore[method-assign]
        daemon._stop.set()
        daemon.pool.shutdown(wait=True)
        daemon.app.close()
    return times, submitted, parts


def tick_parts(daemon: Daemon, repeats: int) -> dict[str, float]:
    """Median time of the pieces of one tick's `_start_due`, called as it calls them."""
    assert daemon.app is not None
    store, cfgs = daemon.app.store, daemon.settings.credentials
    pieces = {
        "store.credential_rows()": store.credential_rows,
        "store.unfinished()": store.unfinished,
        "settings.policy(cfg) x N": lambda: [daemon.settings.policy(c) for c in cfgs],
    }
    out = {}
    for label, fn in pieces.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        out[label] = h.median(times)
    return out


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def process_run(settings_map: dict[str, Any], minutes: float, sandbox: h.Sandbox, moto: h.Moto):
    """`rotator run` as a subprocess: RSS and CPU after start-up, tick time from /metrics."""
    with tempfile.TemporaryDirectory(prefix="rotator-idle-") as tmp:
        path = Path(tmp) / "rotator.toml"
        h.write_toml(path, settings_map)
        listen = settings_map["daemon"]["listen"]
        sandbox.admin.reset_counters()
        moto.clear_log()
        spawned = time.monotonic()
        proc = h.Proc(
            [str(Path(h.PY).parent / "rotator"), "--config", str(path), "run"],
            log=Path(tmp) / "daemon.log",
        )
        try:
            h.wait_http(f"http://{listen}/healthz", timeout=120)
            while httpx.get(f"http://{listen}/readyz", timeout=5).status_code != 200:
                time.sleep(0.1)
            ready = time.monotonic() - spawned
            startup_cpu = h.cpu_seconds(proc.pid)
            time.sleep(5)  # let the first tick's garbage settle
            cpu0, t0 = h.cpu_seconds(proc.pid), time.monotonic()
            rss = [h.rss_mb(proc.pid)]
            while time.monotonic() - t0 < minutes * 60:
                time.sleep(min(10.0, max(0.0, minutes * 60 - (time.monotonic() - t0))))
                rss.append(h.rss_mb(proc.pid))
            cpu = h.cpu_seconds(proc.pid) - cpu0
            wall = time.monotonic() - t0
            text = httpx.get(f"http://{listen}/metrics", timeout=10).text
        finally:
            proc.stop()
        log_tail = (Path(tmp) / "daemon.log").read_text(errors="replace")[-2000:]
    ticks = metric(text, "rotator_tick_seconds_count") or 0
    tick_sum = metric(text, "rotator_tick_seconds_sum") or 0
    counters = sandbox.admin.counters()["endpoints"]
    return {
        "ready_s": ready,
        "startup_cpu_s": startup_cpu,
        "rss_mb_max": max(rss),
        "rss_mb_last": rss[-1],
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_pct_of_core": 100 * cpu / wall,
        "ticks": ticks,
        "tick_mean_s": tick_sum / ticks if ticks else float("nan"),
        "adobe_calls": sum(v["requests"] for v in counters.values()),
        "aws_calls": len(moto.log()),
        "errors": [line for line in log_tail.splitlines() if '"error"' in line][-3:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--credentials", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--ticks", type=int, default=7, help="in-process ticks per database")
    parser.add_argument("--tick-db", choices=["sqlite", "postgres", "both", "none"], default="both")
    parser.add_argument("--process-db", choices=["sqlite", "postgres", "none"], default="sqlite")
    parser.add_argument("--quick", action="store_true", help="1 minute, 3 ticks")
    parser.add_argument(
        "--prototype-tick",
        action="store_true",
        help="also time the tick with finding 3's fixes patched in (in-process only)",
    )
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.ticks = min(args.minutes, 1.0), 3
    h.quiet_logs()
    h.print_machine()
    print(
        f"idle: {args.credentials} credentials configured, none due, "
        f"{args.events} audit events in the database"
    )
    with h.stand_ins() as (sandbox, moto):
        dbs = ["sqlite", "postgres"] if args.tick_db == "both" else [args.tick_db]
        for db in [d for d in dbs if d != "none"]:
            with h.database(db) as url:
                mapping = fleet_config(args.credentials, url, sandbox.url, moto.url)
                settings = h.settings(mapping)
                started = time.monotonic()
                populate(settings, args.events)
                filled = time.monotonic() - started
                times, submitted, parts = tick_times(settings, args.ticks)
                print(
                    f"  tick [{db}]: median {1000 * h.median(times):.0f} ms over {len(times)} "
                    f"ticks (min {1000 * min(times):.0f}, max {1000 * max(times):.0f}); "
                    f"jobs submitted {submitted} (surveys/workers); database filled in "
                    f"{filled:.0f}s"
                )
                print(
                    "    of which (medians, each timed alone): "
                    + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in parts.items())
                )
                if args.prototype_tick:
                    times, _, parts = tick_times(settings, args.ticks, prototype=True)
                    print(
                        f"    with the proposed tick fixes patched in (bench prototype): median "
                        f"{1000 * h.median(times):.0f} ms (min {1000 * min(times):.0f}, max "
                        f"{1000 * max(times):.0f}); "
                        + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in parts.items())
                    )
        if args.process_db != "none":
            with h.database(args.process_db) as url:
                mapping = fleet_config(args.credentials, url, sandbox.url, moto.url)
                settings = h.settings(mapping)
                populate(settings, args.events)
                r = process_run(mapping, args.minutes, sandbox, moto)
                print(
                    f"  process [{args.process_db}] `rotator run`, {r['wall_s'] / 60:.1f} min "
                    f"after ready: RSS max {r['rss_mb_max']:.0f} MB (last "
                    f"{r['rss_mb_last']:.0f} MB), CPU {r['cpu_s']:.2f}s = "
                    f"{r['cpu_pct_of_core']:.2f}% of one core; {r['ticks']:.0f} ticks, mean "
                    f"{1000 * r['tick_mean_s']:.0f} ms (/metrics rotator_tick_seconds); "
                    f"ready {r['ready_s']:.1f}s after spawn using {r['startup_cpu_s']:.1f}s CPU;"
                    f" calls sent: Adobe {r['adobe_calls']}, AWS {r['aws_calls']}"
                )
                if r["errors"]:
                    print("    daemon errors:", json.dumps(r["errors"])[:600])


if __name__ == "__main__":
    main()
