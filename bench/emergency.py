"""Emergency latency and start-up: `rotator rotate NAME --emergency`, and `rotator --help`.

1. `rotator --help`: wall time of the installed console script, median of --help-runs
   (>= 10), beside `python -c pass` (the interpreter's own floor); then the modules that
   `-X importtime` says cost most on that path.
2. Emergency: `rotator --config X rotate NAME --emergency` as a subprocess against the
   sandbox (no added latency) and moto, on a migrated SQLite database, one fresh
   credential per run. Timed from spawn until the "completed" line (printed right after
   the old secret's deletion is saved) and until exit; the sandbox is then asked whether
   the old secret is gone. The same command also runs under bench/_timed_cli.py, which
   adds up the wall time spent inside HTTP calls (httpx for Adobe, botocore for AWS) and
   in deliberate waits (time.sleep: the emergency confirms the leaked secret gone with two
   looks at Adobe, poll_interval = 1 s apart here): rotator's own overhead = total - time
   inside HTTP calls - deliberate waits. Only the main thread's HTTP calls are taken off
   (the STS identity probe's call runs beside the command's work), and only the sleep of
   `follow` waiting for the confirming look is deliberate; every other wait (pacing,
   retries, the wait for the identity answer) stays in the overhead and is shown.
3. The floor: the CPU and wall time of a bare `python -c "import ..."` of the libraries an
   emergency cannot do without (SQLAlchemy, httpx, botocore, structlog: the brief's choices;
   then with pydantic and click, the config's and the CLI's), in the same run.

Every command runs byte-compiled, as a wheel install is (pip compiles at install). On an
editable checkout with PYTHONDONTWRITEBYTECODE set (this machine's environment sets it),
Python would compile rotator's own ~35 modules again at every start (~60 ms of CPU here),
which no installed rotator pays: the bench keeps their compiled form under a temporary
PYTHONPYCACHEPREFIX, filled by the warm-up run.

    .venv/bin/python bench/emergency.py            # 10 emergency runs, 15 --help runs
    .venv/bin/python bench/emergency.py --quick    # 3 and 10
    .venv/bin/python bench/emergency.py --profile /tmp/emergency.prof   # cProfile one run
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

ROTATOR = str(Path(h.PY).parent / "rotator")


def cpu_of_pass(runs: int = 5) -> float:
    """Median CPU time (user + system) of `python -c pass`: the interpreter's own floor."""
    times = []
    for _ in range(runs):
        proc = subprocess.Popen([h.PY, "-c", "pass"])
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        times.append(usage.ru_utime + usage.ru_stime)
    return h.median(times)


def as_installed(env: dict[str, str], cache: Path) -> dict[str, str]:
    """`env` with byte-compiled modules kept (under `cache`), as an installed rotator has."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(cache)}


# What an emergency cannot do without: the brief's store, Adobe client, AWS client and logs.
CORE = "sqlalchemy, httpx, botocore.client, structlog"
# ... and the config's validation and the CLI.
CORE_AND_CONFIG = CORE + ", pydantic.main, click"


def floor(modules: str, env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall and CPU time of a bare interpreter importing `modules`, nothing else."""
    walls, cpus = [], []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.Popen([h.PY, "-c", f"import {modules}"], env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0, modules
        walls.append(time.perf_counter() - started)
        cpus.append(usage.ru_utime + usage.ru_stime)
    return h.median(walls), h.median(cpus)


def wall(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - started


def startup(runs: int, env: dict[str, str]) -> None:
    wall([ROTATOR, "--help"], env)  # warm the page cache, compile
    helps = [wall([ROTATOR, "--help"], env) for _ in range(runs)]
    floors = [wall([h.PY, "-c", "pass"], env) for _ in range(runs)]
    print(
        f"  `rotator --help`: median {1000 * h.median(helps):.0f} ms over {runs} runs "
        f"(min {1000 * min(helps):.0f}, max {1000 * max(helps):.0f}); "
        f"`python -c pass`: {1000 * h.median(floors):.0f} ms"
    )
    proc = subprocess.run(
        [h.PY, "-X", "importtime", ROTATOR, "--help"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    top: list[tuple[int, str]] = []  # imports at nesting level 0 partition the total
    selfs: list[tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            selfs.append((int(m[1]), m[4]))
            if len(m[3]) == 1:
                top.append((int(m[2]), m[4]))
    total = sum(t for t, _ in top)
    print(
        f"    -X importtime: {total / 1000:.0f} ms importing in all; largest top-level imports "
        "(cumulative): "
        + ", ".join(f"{n} {t / 1000:.0f} ms" for t, n in sorted(top, reverse=True)[:8])
    )
    print(
        "    largest self times: "
        + ", ".join(f"{n} {t / 1000:.0f} ms" for t, n in sorted(selfs, reverse=True)[:8])
    )


def emergency_run(
    config: Path, name: str, sandbox: h.Sandbox, cred: Any, env: dict[str, str], timed: bool
) -> dict[str, Any]:
    timing_file = Path(tempfile.mkstemp(prefix="rotator-timing-", suffix=".json")[1])
    argv = [ROTATOR, "--config", str(config), "rotate", name, "--emergency", "--reason", "bench"]
    if timed:
        argv = [h.PY, str(h.BENCH / "_timed_cli.py"), *argv[1:]]
    env = {**env, "ROTATOR_BENCH_TIMING": str(timing_file)}
    spawned = time.time()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd="/"
    )
    assert proc.stdout is not None
    completed_at = None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        if completed_at is None and ": completed" in line:
            completed_at = time.time()
    _, status, usage = os.wait4(proc.pid, 0)  # the command's own CPU time, with its exit
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    exited = time.time()
    remaining = [s["uuid"] for s in sandbox.admin.secrets(cred.credential_id)]
    timing = json.loads(timing_file.read_text()) if timed and timing_file.stat().st_size else {}
    timing_file.unlink()
    return {
        "code": code,
        "to_completed_s": (completed_at or exited) - spawned,
        "to_exit_s": exited - spawned,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "old_deleted": cred.secret.uuid not in remaining and len(remaining) == 1,
        "timing": timing,
        "spawned": spawned,
        "output": lines[-3:],
    }


def _deliberate(where: str, main: bool) -> bool:
    """The one deliberate wait: `follow` sleeping until the emergency's confirming look."""
    return main and where == "rotation.py:follow"


NOISE = ("importlib", "contextlib", "click/", "{built-in", "{method", "<frozen")


def show_profile(path: Path, limit: int = 40) -> None:
    """Cumulative times of one run's functions, without import machinery and click."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows = []
    for (file, line, name), (_, _, _, cumulative, _) in stats.items():
        where = file.split("site-packages/")[-1]
        where = re.sub(r".*/rotator-snapshot-[^/]+/", "", where)
        label = f"{where}:{line}({name})"
        if not any(n in label for n in NOISE):
            rows.append((cumulative, label))
    for cumulative, label in sorted(rows, reverse=True)[:limit]:
        print(f"    {1000 * cumulative:6.0f} ms  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--help-runs", type=int, default=15)
    parser.add_argument("--profile", type=Path, help="cProfile one timed emergency run here")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.help_runs = 3, 10
    h.print_machine()
    cache = Path(tempfile.mkdtemp(prefix="rotator-bench-pycache-"))
    base_env = as_installed({**os.environ, "ROTATOR_LOG_LEVEL": "WARNING"}, cache)
    print(
        "byte-compiled modules, as installed"
        + (
            " (PYTHONDONTWRITEBYTECODE of this environment lifted)"
            if "PYTHONDONTWRITEBYTECODE" in os.environ
            else ""
        )
    )
    print("start-up:")
    startup(max(10, args.help_runs), base_env)
    with h.stand_ins() as (sandbox, moto), h.database("sqlite") as url:
        n = 2 * args.runs + 2
        creds, created = h.make_fleet(sandbox, moto, n)
        # poll_interval 1 s: the emergency's two confirming looks at Adobe are 1 s apart
        # (min(poll_interval, 60 s)), and that wait is subtracted as a deliberate one.
        mapping = h.settings_mapping(
            url, sandbox.url, moto.url, creds, defaults={"poll_interval": "1s"}
        )
        with tempfile.TemporaryDirectory(prefix="rotator-emergency-") as tmp:
            config = Path(tmp) / "rotator.toml"
            h.write_toml(config, mapping)
            env = base_env
            subprocess.run(
                [ROTATOR, "--config", str(config), "db", "upgrade"],
                check=True,
                capture_output=True,
                env=env,
            )
            # Warm-up: the page cache and moto's first Secrets Manager call (~150 ms).
            emergency_run(config, creds[-1]["name"], sandbox, created[-1], env, False)
            plain = [
                emergency_run(config, creds[i]["name"], sandbox, created[i], env, False)
                for i in range(args.runs)
            ]
            timed = [
                emergency_run(config, creds[i]["name"], sandbox, created[i], env, True)
                for i in range(args.runs, 2 * args.runs)
            ]
            if args.profile:
                profiled_env = {**env, "ROTATOR_BENCH_PROFILE": str(args.profile)}
                emergency_run(config, creds[-2]["name"], sandbox, created[-2], profiled_env, True)
    bad = [r for r in plain + timed if r["code"] != 0 or not r["old_deleted"]]
    print(
        f"emergency (`rotator rotate NAME --emergency`, no added latency), {args.runs} runs each:"
    )
    if bad:
        print(f"  {len(bad)} run(s) did not delete the old secret: {bad[0]['output']}")
    print(
        f"  spawn -> old secret deleted ('completed' printed): median "
        f"{1000 * h.median([r['to_completed_s'] for r in plain]):.0f} ms; spawn -> exit "
        f"{1000 * h.median([r['to_exit_s'] for r in plain]):.0f} ms "
        f"(min {1000 * min(r['to_exit_s'] for r in plain):.0f}, "
        f"max {1000 * max(r['to_exit_s'] for r in plain):.0f})"
    )
    print(
        f"  CPU time of the command (user + system, all its threads; less sensitive to a busy "
        f"machine than wall time): median {1000 * h.median([r['cpu_s'] for r in plain]):.0f} ms;"
        f" `python -c pass`: {1000 * cpu_of_pass():.0f} ms"
    )
    overhead, parts = [], []
    for r in timed:
        t = r["timing"]
        total = r["to_exit_s"]
        http = t["adobe_s"] + t["aws_s"]
        deliberate = sum(took for where, took, main in t["sleeps"] if _deliberate(where, main))
        other_waits = sum(took for where, took, main in t["sleeps"] if main) - deliberate
        overhead.append(total - http - deliberate)
        parts.append(
            {
                "total": total,
                "interpreter": t["started"] - r["spawned"],
                "import rotator.cli": t["import_cli_s"],
                "inside Adobe HTTP": t["adobe_s"],
                "inside AWS HTTP": t["aws_s"],
                "waiting on purpose": deliberate,
                "other waits (pacing, retries)": other_waits,
                "waiting for the identity answer": t["identity_wait_s"],
                "background HTTP (not subtracted)": t["background_http_s"],
                "interpreter shutdown": r["spawned"] + total - t["exited"],
                "adobe_n": t["adobe_n"],
                "aws_n": t["aws_n"],
            }
        )
    med = {k: h.median([p[k] for p in parts]) for k in parts[0]}
    rest = (
        med["total"]
        - med["interpreter"]
        - med["import rotator.cli"]
        - med["inside Adobe HTTP"]
        - med["inside AWS HTTP"]
        - med["waiting on purpose"]
        - med["interpreter shutdown"]
    )
    print(
        f"  timed runs: total {1000 * med['total']:.0f} ms = interpreter start "
        f"{1000 * med['interpreter']:.0f} + import rotator.cli "
        f"{1000 * med['import rotator.cli']:.0f} + inside Adobe HTTP "
        f"{1000 * med['inside Adobe HTTP']:.0f} ({med['adobe_n']:g} calls) + inside AWS HTTP "
        f"{1000 * med['inside AWS HTTP']:.0f} ({med['aws_n']:g} calls) + waiting on purpose "
        f"{1000 * med['waiting on purpose']:.0f} + interpreter "
        f"shutdown after exit() {1000 * med['interpreter shutdown']:.0f} + the rest (config, "
        f"imports inside commands, clients, database, rotator's logic) {1000 * rest:.0f} ms"
    )
    print(
        f"    of the rest, other waits (pacing, retries) "
        f"{1000 * med['other waits (pacing, retries)']:.0f} ms, waiting for the STS identity "
        f"answer {1000 * med['waiting for the identity answer']:.0f} ms; the identity probe's "
        f"own HTTP call on its thread (overlapping, not subtracted) "
        f"{1000 * med['background HTTP (not subtracted)']:.0f} ms"
    )
    print(
        f"  rotator's own overhead (total - inside HTTP calls - waiting on purpose): median "
        f"{1000 * h.median(overhead):.0f} ms; `python -c pass` in this run: "
        f"{1000 * h.median([wall([h.PY, '-c', 'pass']) for _ in range(5)]):.0f} ms"
    )
    core_wall, core_cpu = floor(CORE, base_env, 5)
    config_wall, config_cpu = floor(CORE_AND_CONFIG, base_env, 5)
    pass_wall, pass_cpu = floor("sys", base_env, 5)
    print(
        f"  floor: `python -c 'import {CORE}'` median {1000 * core_wall:.0f} ms wall, "
        f"{1000 * core_cpu:.0f} ms CPU; with pydantic and click {1000 * config_wall:.0f} ms "
        f"wall, {1000 * config_cpu:.0f} ms CPU; `python -c 'import sys'` "
        f"{1000 * pass_wall:.0f} ms wall, {1000 * pass_cpu:.0f} ms CPU"
    )
    shutil.rmtree(cache, ignore_errors=True)
    if args.profile:
        print(f"  cProfile of one run written to {args.profile}; top cumulative:")
        show_profile(args.profile)


if __name__ == "__main__":
    main()
