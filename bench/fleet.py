"""Fleet throughput and quota pacing: N credentials due at once, Adobe 50 ms slower per call.

Each run has three phases, against a fresh sandbox, a fresh moto and a fresh database:

A. moto alone: 16 threads run the exact AWS call sequence of one rotation (rotator's own
   `AwsSecrets` adapter, unpaced) on scratch secrets: calls/s moto serves on this machine.
B. solo: 10 rotations one after another (engine.request + drive to draining), same +50 ms:
   the time one rotation takes when nothing else competes (T_solo).
C. fleet: the real daemon, `Daemon.run()` in this process with its default worker count,
   its HTTP endpoint and APScheduler's tick; N credentials are due at once (their
   current secret is recorded as older than max_age). Timed from the start of the first
   tick to the last rotation reaching draining (a listener on the engine's events).

The bound the fleet is held to is the smallest of:
  workers / T_solo                       (concurrency x latency: Adobe's 50 ms per call
                                          plus rotator's, moto's and the database's time)
  moto calls/s (A) / AWS calls per rotation
  write_rate / AWS writes per rotation   (the pacing budget)
  token_rate / tokens per rotation       (when an Adobe token budget is set)

Afterwards moto's request log (bench/_moto_server.py) and the sandbox's token list give
the AWS writes and Adobe token mints per sliding one-second window.

    .venv/bin/python bench/fleet.py                 # 1,000 credentials, SQLite and PG, 3 runs
    .venv/bin/python bench/fleet.py --quick         # 200 credentials, 1 run per database
    .venv/bin/python bench/fleet.py --db postgres --token-rate 10 --count 300 --runs 1
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import resource
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contextlib

import _harness as h
from sqlalchemy import create_engine, text

from rotator import app as app_mod
from rotator.adapters.aws_secrets import AwsSecrets
from rotator.config import DaemonConfig
from rotator.daemon import Daemon
from rotator.domain.model import State, Trigger

WRITES = {"PutSecretValue", "UpdateSecret", "UpdateSecretVersionStage"}
LATENCY_MS = 50
SOLO = 10
MOTO_THREADS, MOTO_ROUNDS = 16, 120


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


def moto_alone(moto: h.Moto) -> dict[str, float]:
    """Phase A: the AWS half of a rotation, 16 at a time, with nothing else running."""
    sm = moto.client()
    names = [f"bench/moto-alone/{uuid.uuid4().hex[:8]}-{i}" for i in range(MOTO_THREADS * 2)]
    for name in names:
        sm.create_secret(Name=name, SecretString=json.dumps({"client_secret": "x" * 40}))
    aws = AwsSecrets(region="us-east-1", endpoint_url=moto.url, write_rate=0)

    def rotation_shaped(i: int) -> None:
        name = names[i % len(names)]
        token = uuid.uuid4().hex
        current = aws.read(name)  # planned
        assert current is not None
        aws.read(name)  # creating: AWSCURRENT again
        aws.read(name, version_id=token)  # creating: is our version there? (404 + describe)
        aws.put_pending(name, token, {"client_secret": uuid.uuid4().hex * 2})
        aws.stages(name)  # verified -> promoted: check the labels first
        aws.move_stage(name, "AWSCURRENT", to_version=token, from_version=current.version_id)
        aws.move_stage(name, "AWSPENDING", to_version=None, from_version=token)

    moto.clear_log()
    cpu0 = h.cpu_seconds(moto.proc.pid)
    started = time.monotonic()
    # Each thread works on its own secrets, as rotations of different credentials do.
    h.parallel(rotation_shaped, range(MOTO_ROUNDS), MOTO_THREADS)
    elapsed = time.monotonic() - started
    calls = len(moto.log())
    cpu = h.cpu_seconds(moto.proc.pid) - cpu0
    moto.clear_log()
    return {
        "calls": calls,
        "calls_per_s": calls / elapsed,
        "moto_cpu_ms_per_call": 1000 * cpu / calls,
        "rotation_shapes_per_s": MOTO_ROUNDS / elapsed,
    }


def solo(settings: Any, names: list[str]) -> list[float]:
    """Phase B: one rotation at a time, to draining, through the engine."""
    app = app_mod.build(settings, upgrade=True)
    times = []
    try:
        for name in names:
            started = time.monotonic()
            rotation = app.engine.request(name, Trigger.MANUAL, actor="bench")
            claim = app.engine.claim(rotation.id)
            assert claim is not None
            final = app.engine.drive(claim)
            times.append(time.monotonic() - started)
            if final.state is not State.DRAINING:
                print(f"    solo rotation of {name} ended {final.state.value}: {final.last_error}")
    finally:
        app.close()
    return times


def pg_backends_cpu(url: str) -> float:
    """CPU seconds of the PostgreSQL backends serving this benchmark's database."""
    name = url.rsplit("/", 1)[1]
    engine = create_engine(h.PG_ADMIN.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            pids = [
                r[0]
                for r in conn.execute(
                    text("SELECT pid FROM pg_stat_activity WHERE datname = :n"), {"n": name}
                )
            ]
    finally:
        engine.dispose()
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += h.cpu_seconds(pid)
    return total


def one_run(args: argparse.Namespace, db: str) -> dict[str, Any]:
    with h.stand_ins() as (sandbox, moto), h.database(db) as url:
        moto_cap = moto_alone(moto)
        cal, cal_created = h.make_fleet(sandbox, moto, SOLO, prefix="k")
        creds, created = h.make_fleet(sandbox, moto, args.count, prefix="c")
        mapping = h.settings_mapping(
            url,
            sandbox.url,
            moto.url,
            cal + creds,
            aws={"write_rate": args.write_rate},
            adobe={"token_rate": args.token_rate} if args.token_rate else None,
            daemon={"workers": args.workers} if args.workers else None,
        )
        settings = h.settings(mapping)
        hashes = {
            c.name: hashlib.sha256(c.model_dump_json().encode()).hexdigest()
            for c in settings.credentials
        }
        # Due: the current secret is recorded older than max_age (90 d by default), as a
        # survey would have recorded it; no Adobe call is needed to learn that. The
        # calibration credentials are recorded young (not due) and freshly surveyed.
        due_age = settings.defaults.max_age or timedelta(days=90)
        h.prepopulate(
            url,
            {
                c["name"]: cr.secret.uuid if cr.secret else None
                for c, cr in zip(creds, created, strict=True)
            },
            created_ago=timedelta(days=due_age.days + 1),
            config_hashes=hashes,
        )
        h.prepopulate(
            url,
            {
                c["name"]: cr.secret.uuid if cr.secret else None
                for c, cr in zip(cal, cal_created, strict=True)
            },
            created_ago=timedelta(days=1),
            config_hashes=hashes,
        )
        sandbox.admin.set_latency("*", LATENCY_MS)
        solo_times = solo(settings, [c["name"] for c in cal])
        sandbox.admin.reset_counters()
        moto.clear_log()

        daemon = Daemon(settings)
        arrivals: list[float] = []
        trouble: collections.Counter[str] = collections.Counter()
        ticks: list[tuple[float, float]] = []
        done = threading.Event()
        lock = threading.Lock()
        real_tick = daemon.tick
        fleet_names = {c["name"] for c in creds}
        troubled = {State.FAILED.value, State.NEEDS_ATTENTION.value, State.CANCELLED.value}

        def seen(rows: list[Any]) -> None:
            """Fleet rotations that reached draining (at promotion), and those in trouble."""
            offset = time.monotonic() - time.time()
            mine = [r for r in rows if r.credential in fleet_names]
            with lock:
                arrivals[:] = [r.promoted_at.timestamp() + offset for r in mine if r.promoted_at]
                trouble.clear()
                trouble.update(r.state for r in mine if r.state in troubled)
                if len(arrivals) + sum(trouble.values()) >= args.count:
                    done.set()

        def tick() -> None:
            started = time.monotonic()
            real_tick()
            ticks.append((started, time.monotonic()))

        # The job APScheduler calls on each tick is picked up when run() wires itself; the
        # rotations are watched in the database.
        daemon.tick = tick  # type: ignore[method-assign]
        h.watch_rotations(daemon, seen, done)
        pids = {"sandbox": sandbox.proc.pid, "moto": moto.proc.pid, "rotator": os.getpid()}
        cpu0 = {k: h.cpu_seconds(p) for k, p in pids.items()}
        busy0, total0 = machine_busy()
        load0 = Path("/proc/loadavg").read_text().split()[0]
        wall0 = time.time()
        pg_cpu: list[float] = []

        def monitor() -> None:
            """Stop the daemon as SIGTERM would, once every rotation has arrived."""
            deadline = time.monotonic() + args.timeout
            while not done.wait(0.2):
                now = time.monotonic()
                stalled = ticks and not arrivals and now - ticks[0][0] > 120
                if now > deadline or stalled or (daemon._last_tick_ok is None and len(ticks) > 2):
                    print("    giving up: no progress (see the daemon's errors above)")
                    break
            if db == "postgres":
                pg_cpu.append(pg_backends_cpu(url))
            daemon._stop.set()
            if daemon.app is not None:
                daemon.app.engine.stopping.set()

        watcher = threading.Thread(target=monitor, daemon=True)
        watcher.start()
        daemon.run()  # the real daemon: migrate, sync, HTTP, APScheduler's tick, workers
        watcher.join()
        t0 = ticks[0][0] if ticks else time.monotonic()
        last = max(arrivals) if arrivals else time.monotonic()
        elapsed = last - t0
        first = min(arrivals) if arrivals else last
        # The tick after which work began (see README: the first tick dispatches no worker).
        t_work = max((a for a, _ in ticks if a <= first), default=t0)
        cpu = {k: h.cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
        if pg_cpu:
            cpu["postgres"] = pg_cpu[0]
        busy1, total1 = machine_busy()
        assert daemon.app is not None
        adobe_stats, aws_stats = dict(daemon.app.adobe.stats), dict(daemon.app.aws.stats)

        log = moto.log()
        counters = sandbox.admin.counters()["endpoints"]
        tokens = [
            t["issued_at"] / 1000 for t in sandbox.admin.tokens() if t["issued_at"] / 1000 >= wall0
        ]
        writes = [a for a, _, target in log if target in WRITES]
        by_target = collections.Counter(target for _, _, target in log)
        n = len(arrivals)
        ordered = sorted(arrivals)
        return {
            "db": db,
            "count": args.count,
            "workers": settings.daemon.workers,
            "reached_draining": n,
            "trouble": dict(trouble),
            "seconds": elapsed,
            "rotations_per_s": n / elapsed if elapsed > 0 else float("nan"),
            "seconds_from_work_tick": last - t_work,
            "rotations_per_s_from_work_tick": n / (last - t_work) if last > t_work else 0.0,
            "ticks": [(round(a - t0, 2), round(b - a, 2)) for a, b in ticks],
            "arrivals_pct_s": {
                q: round(ordered[min(n - 1, int(n * q / 100))] - t0, 2) if n else None
                for q in (1, 10, 50, 90, 99, 100)
            },
            "moto_alone": moto_cap,
            "solo_s": solo_times,
            "adobe_calls": {k: v["requests"] for k, v in counters.items() if v["requests"]},
            "adobe_client_stats": adobe_stats,
            "aws_calls": dict(by_target),
            "aws_client_stats": aws_stats,
            "aws_calls_per_s": len(log) / elapsed if elapsed > 0 else float("nan"),
            "moto_service_ms_mean": 1000 * sum(d - a for a, d, _ in log) / max(1, len(log)),
            "writes_max_1s": h.max_in_window(writes),
            "writes_steady_per_s": h.steady_rate(writes),
            "write_budget": args.write_rate,
            "tokens_max_1s": h.max_in_window(tokens),
            "tokens_steady_per_s": h.steady_rate(tokens),
            "token_budget": args.token_rate,
            "cpu_s": cpu,
            "machine_cpu_busy": (busy1 - busy0) / (total1 - total0),
            "loadavg_at_start": load0,
            "rotator_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "errors_logged": errors_in(args.log_file),
        }


def errors_in(log: Path) -> dict[str, int]:
    """Error lines the daemon logged so far, by event."""
    counts: collections.Counter[str] = collections.Counter()
    with log.open(errors="replace") as lines:
        for line in lines:
            if '"level": "error"' in line:
                try:
                    counts[json.loads(line).get("event", "?")] += 1
                except ValueError:
                    counts["?"] += 1
    return dict(counts)


def bound(r: dict[str, Any]) -> dict[str, float]:
    n = max(1, r["reached_draining"])
    aws_per = sum(r["aws_calls"].values()) / n
    writes_per = sum(v for k, v in r["aws_calls"].items() if k in WRITES) / n
    tokens_per = r["adobe_calls"].get("token", 0) / n
    bounds = {
        "latency x workers": r["workers"] / h.median(r["solo_s"]),
        "moto capacity": r["moto_alone"]["calls_per_s"] / aws_per,
        "write budget": r["write_budget"] / writes_per if r["write_budget"] else float("inf"),
    }
    if r["token_budget"]:
        bounds["token budget"] = r["token_budget"] / tokens_per
    return bounds


def show(r: dict[str, Any]) -> None:
    n = max(1, r["reached_draining"])
    adobe_total = sum(r["adobe_calls"].values())
    aws_total = sum(r["aws_calls"].values())
    b = bound(r)
    limit = min(b.values())
    print(
        f"  [{r['db']}] {r['reached_draining']}/{r['count']} reached draining "
        f"in {r['seconds']:.1f}s -> {r['rotations_per_s']:.2f} rotations/s from the first tick; "
        f"{r['rotations_per_s_from_work_tick']:.2f}/s from the tick that started work "
        f"(workers {r['workers']}, trouble {r['trouble'] or 'none'}, "
        f"load average at start {r['loadavg_at_start']})"
    )
    print(f"    ticks (start s, duration s): {r['ticks']}")
    print(f"    arrivals at draining (s after the first tick, percentiles): {r['arrivals_pct_s']}")
    ma = r["moto_alone"]
    print(
        f"    A. moto alone: {ma['calls_per_s']:.1f} calls/s "
        f"({ma['moto_cpu_ms_per_call']:.1f} ms moto CPU per call); "
        f"B. solo rotation to draining: median {1000 * h.median(r['solo_s']):.0f} ms"
    )
    print(
        "    bound: "
        + ", ".join(f"{k} {v:.2f}/s" for k, v in b.items())
        + f" -> {limit:.2f}/s; measured/bound {r['rotations_per_s'] / limit:.2f} "
        f"(from the work tick {r['rotations_per_s_from_work_tick'] / limit:.2f})"
    )
    print(
        f"    Adobe calls/rotation {adobe_total / n:.2f} {r['adobe_calls']}; "
        f"AWS calls/rotation {aws_total / n:.2f} {r['aws_calls']}"
    )
    print(
        f"    moto served {r['aws_calls_per_s']:.1f} calls/s over the run "
        f"(mean {r['moto_service_ms_mean']:.1f} ms inside moto per call); AWS writes: max "
        f"{r['writes_max_1s']} in any 1 s window, steady {r['writes_steady_per_s']:.1f}/s "
        f"vs budget {r['write_budget']}"
    )
    budget = r["token_budget"] or "unlimited"
    print(
        f"    Adobe tokens: max {r['tokens_max_1s']} in any 1 s window, steady "
        f"{r['tokens_steady_per_s']:.1f}/s vs budget {budget}"
    )
    cpu = r["cpu_s"]
    ours = sum(cpu.values())
    print(
        "    CPU per rotation: "
        + ", ".join(f"{k} {1000 * v / n:.1f} ms" for k, v in cpu.items())
        + f" (total {1000 * ours / n:.1f} ms); machine busy "
        f"{100 * r['machine_cpu_busy']:.0f}% of {h.machine()['nproc']} cores, of which other "
        f"processes {max(0.0, 100 * r['machine_cpu_busy'] - 100 * ours / r['seconds'] / 2):.0f}%"
    )
    nproc = int(h.machine()["nproc"])
    print(
        f"    CPU ceiling (not part of the bound): {nproc} cores / {1000 * ours / n:.0f} ms per "
        f"rotation = {nproc * n / ours:.1f} rotations/s if this machine ran nothing else; "
        f"rotator's peak RSS {r['rotator_max_rss_mb']:.0f} MB (this process); errors logged: "
        f"{r['errors_logged'] or 'none'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 credentials, 1 run per db")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--workers", type=int, default=0, help="0: the [daemon] default")
    parser.add_argument("--write-rate", type=float, default=50)
    parser.add_argument("--token-rate", type=float, default=0, help="0: unlimited")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--log-level", default="INFO", help="the daemon's log level (`rotator run`: INFO)"
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    args = parser.parse_args()
    if args.quick:
        args.count, args.runs = min(args.count, 200), 1
    # As `rotator run` logs by default (INFO, JSON lines), to a file instead of stderr: the
    # rendering and the redactor run on every line as they would in the daemon.
    from rotator import logs

    args.log_file = Path(tempfile.mkstemp(prefix="rotator-fleet-", suffix=".log")[1])
    logs.configure(args.log_level, json=True, stream=args.log_file.open("a"))
    h.print_machine()
    print(
        f"fleet: {args.count} credentials due at once, +{LATENCY_MS} ms on every Adobe call, "
        f"workers {args.workers or DaemonConfig().workers}, write_rate {args.write_rate}, "
        f"token_rate {args.token_rate or 'unlimited'}, {args.runs} run(s) per database, "
        f"daemon log level {args.log_level} (to {args.log_file})"
    )
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results: list[dict[str, Any]] = []
    for db in dbs:
        for _ in range(args.runs):
            r = one_run(args, db)
            show(r)
            results.append(r)
            if args.json:
                args.json.write_text(json.dumps(results, indent=2, default=str))
    print("medians:")
    for db in dbs:
        mine = [r for r in results if r["db"] == db]
        bounds = [min(bound(r).values()) for r in mine]
        print(
            f"  {db}: {h.median([r['rotations_per_s'] for r in mine]):.2f} rotations/s from the "
            f"first tick ({h.median([r['rotations_per_s_from_work_tick'] for r in mine]):.2f}/s "
            f"from the work tick), bound {h.median(bounds):.2f}/s, ratio "
            f"{h.median([r['rotations_per_s'] / b for r, b in zip(mine, bounds, strict=True)]):.2f}"
            f" ({h.median([r['rotations_per_s_from_work_tick'] / b for r, b in zip(mine, bounds, strict=True)]):.2f}); "  # noqa: E501
            f"AWS writes max/1s {max(r['writes_max_1s'] for r in mine)}, steady "
            f"{h.median([r['writes_steady_per_s'] for r in mine]):.1f}/s; "
            f"tokens max/1s {max(r['tokens_max_1s'] for r in mine)}, steady "
            f"{h.median([r['tokens_steady_per_s'] for r in mine]):.1f}/s"
        )


if __name__ == "__main__":
    main()
