"""One AWS write budget for the fleet (issue 29): two and three replicas, one `write_rate`.

N `rotator run` replicas (subprocesses) share one PostgreSQL database and one moto; C
credentials are due at once (their current secret recorded as older than max_age, so no
survey is needed). moto's own request log (bench/_moto_server.py: arrival times) gives
every PutSecretValue / UpdateSecretVersionStage; the figure is the most writes in any
half-open one-second window, against the budget `[aws] write_rate`. Before issue 29 the
budget was per process: two replicas at write_rate = 5 wrote 10 in their worst second.

    .venv/bin/python bench/budget.py                       # 2 and 3 replicas, rate 5, 40 due
    .venv/bin/python bench/budget.py --replicas 3 --rate 10 --count 60
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h
from sqlalchemy import func, select

from rotator.adapters.db.connect import make_engine
from rotator.adapters.db.tables import rotations

WRITES = {"PutSecretValue", "UpdateSecretVersionStage"}
ROTATOR = str(Path(sys.executable).parent / "rotator")


def run(replicas: int, rate: float, count: int) -> dict[str, float]:
    with h.stand_ins() as (sandbox, moto), h.database("postgres") as db_url:
        entries, created = h.make_fleet(sandbox, moto, count)
        h.prepopulate(
            db_url,
            {
                e["name"]: c.secret.uuid if c.secret else None
                for e, c in zip(entries, created, strict=True)
            },
            created_ago=timedelta(days=400),
        )
        moto.clear_log()
        tmp = Path(tempfile.mkdtemp(prefix="rotator-budget-"))
        procs = []
        started = time.monotonic()
        for index in range(replicas):
            mapping = h.settings_mapping(
                db_url,
                sandbox.url,
                moto.url,
                entries,
                defaults={"max_age": "30d", "quiet_period": "1h", "poll_interval": "10m"},
                daemon={"tick": "1s", "jitter": "0s", "workers": 8},
                aws={"write_rate": rate},
            )
            path = tmp / f"replica{index}.toml"
            h.write_toml(path, mapping)
            procs.append(
                h.Proc([ROTATOR, "--config", str(path), "run"], log=tmp / f"replica{index}.log")
            )
        engine = make_engine(db_url)
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    draining = conn.execute(
                        select(func.count())
                        .select_from(rotations)
                        .where(rotations.c.state == "draining")
                    ).scalar_one()
                if draining >= count:
                    break
                time.sleep(0.5)
            took = time.monotonic() - started
        finally:
            for proc in procs:
                proc.stop()
            engine.dispose()
        log = moto.log()
        writes = [arrive for arrive, _done, target in log if target in WRITES]
    return {
        "replicas": replicas,
        "budget": rate,
        "rotations": count,
        "writes": len(writes),
        "max_in_1s": h.max_in_window(writes),
        "min_gap": round(
            min(b - a for a, b in zip(sorted(writes), sorted(writes)[1:], strict=False)), 3
        )
        if len(writes) > 1
        else 0,
        "mean_rate": round(len(writes) / (max(writes) - min(writes)), 2) if writes else 0,
        "seconds": round(took, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="*", default=[2, 3])
    parser.add_argument("--rate", type=float, default=5)
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args()
    h.quiet_logs()
    h.print_machine()
    for replicas in args.replicas:
        result = run(replicas, args.rate, args.count)
        print(
            f"{result['replicas']} replicas, write_rate {result['budget']:g}: "
            f"{result['writes']} writes for {result['rotations']} rotations in "
            f"{result['seconds']} s; most in any 1 s window {result['max_in_1s']} "
            f"(budget {result['budget']:g}); mean {result['mean_rate']}/s; "
            f"closest two writes {result['min_gap']} s apart"
        )


if __name__ == "__main__":
    main()
