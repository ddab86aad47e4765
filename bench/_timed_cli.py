"""Run the `rotator` command in this process, timing what it spends inside HTTP calls.

    ROTATOR_BENCH_TIMING=out.json python bench/_timed_cli.py rotate NAME --emergency

Same as the `rotator` console script (which only calls `rotator.cli:main`), plus: the
time.time() this interpreter reached its first line, the time `rotator.cli` took to
import, the wall time spent inside httpx.Client.send (Adobe) and botocore's
Endpoint._send (AWS), and in time.sleep (deliberate waits), written as JSON at exit.
With ROTATOR_BENCH_PROFILE=out.prof the command also runs under cProfile.
"""

from __future__ import annotations

import time

STARTED = time.time()

import atexit  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

timing: dict[str, Any] = {
    "started": STARTED,
    "adobe_s": 0.0,
    "aws_s": 0.0,
    "adobe_n": 0,
    "aws_n": 0,
    "sleep_s": 0.0,
}


def _patch() -> None:
    import botocore.endpoint
    import httpx

    send = httpx.Client.send
    aws_send = botocore.endpoint.Endpoint._send

    def timed_send(self: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return send(self, *args, **kwargs)
        finally:
            timing["adobe_s"] += time.perf_counter() - t
            timing["adobe_n"] += 1

    def timed_aws_send(self: Any, request: Any) -> Any:
        t = time.perf_counter()
        try:
            return aws_send(self, request)
        finally:
            timing["aws_s"] += time.perf_counter() - t
            timing["aws_n"] += 1

    real_sleep = time.sleep

    def timed_sleep(seconds: float) -> None:
        """Deliberate waits (the emergency's second confirming look) are not overhead."""
        t = time.perf_counter()
        try:
            real_sleep(seconds)
        finally:
            timing["sleep_s"] += time.perf_counter() - t

    time.sleep = timed_sleep
    httpx.Client.send = timed_send  # type: ignore[method-assign]
    botocore.endpoint.Endpoint._send = timed_aws_send  # type: ignore[method-assign]


def _write() -> None:
    timing["exited"] = time.time()
    with open(os.environ["ROTATOR_BENCH_TIMING"], "w") as out:
        json.dump(timing, out)


def main() -> None:
    atexit.register(_write)
    t = time.perf_counter()
    from rotator.cli import main as cli_main

    timing["import_cli_s"] = time.perf_counter() - t
    _patch()
    sys.argv[0] = "rotator"
    profile = os.environ.get("ROTATOR_BENCH_PROFILE")
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        atexit.register(lambda: profiler.dump_stats(profile))
        profiler.enable()
    cli_main()


if __name__ == "__main__":
    main()
