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
    "adobe_s": 0.0,  # inside HTTP calls on the command's own (main) thread
    "aws_s": 0.0,
    "adobe_n": 0,
    "aws_n": 0,
    "background_http_s": 0.0,  # on other threads (the STS identity probe): not subtracted
    "background_http_n": 0,
    "identity_wait_s": 0.0,  # the main thread waiting for the identity probe's answer
    "sleep_s": 0.0,
    "sleeps": [],
}


def _patch() -> None:
    import threading

    import botocore.endpoint
    import httpx

    from rotator.adapters.identity import IdentityProbe

    send = httpx.Client.send
    aws_send = botocore.endpoint.Endpoint._send
    probe_result = IdentityProbe.result

    def account(kind: str, started: float) -> None:
        """Only the main thread's waits are taken off the total: another thread's HTTP call
        overlaps the command's own work, and subtracting it would hide that work."""
        took = time.perf_counter() - started
        if threading.current_thread() is threading.main_thread():
            timing[f"{kind}_s"] += took
            timing[f"{kind}_n"] += 1
        else:
            timing["background_http_s"] += took
            timing["background_http_n"] += 1

    def timed_send(self: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return send(self, *args, **kwargs)
        finally:
            account("adobe", t)

    def timed_aws_send(self: Any, request: Any) -> Any:
        t = time.perf_counter()
        try:
            return aws_send(self, request)
        finally:
            account("aws", t)

    def timed_result(self: IdentityProbe) -> str:
        t = time.perf_counter()
        try:
            return probe_result(self)
        finally:
            timing["identity_wait_s"] += time.perf_counter() - t

    real_sleep = time.sleep

    def timed_sleep(seconds: float) -> None:
        """Each wait is listed with its caller and thread, so that the bench subtracts only
        the deliberate ones (the emergency's confirming look) and shows the rest."""
        t = time.perf_counter()
        try:
            real_sleep(seconds)
        finally:
            took = time.perf_counter() - t
            caller = sys._getframe(1)
            where = f"{caller.f_code.co_filename.rsplit('/', 1)[-1]}:{caller.f_code.co_name}"
            main = threading.current_thread() is threading.main_thread()
            timing["sleeps"].append([where, took, main])

    time.sleep = timed_sleep
    httpx.Client.send = timed_send  # type: ignore[method-assign]
    botocore.endpoint.Endpoint._send = timed_aws_send  # type: ignore[method-assign]
    IdentityProbe.result = timed_result  # type: ignore[method-assign]


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
