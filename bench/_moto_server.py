"""moto's Secrets Manager server (the same WSGI app and request handler as `moto_server` and
`ThreadedMotoServer`), with a request log the benchmarks read.

Every request is recorded as (arrival time, completion time, X-Amz-Target) in memory; no
extra network hop, so what the benchmark sees is what moto itself served:

    GET    /__bench/log   -> {"entries": [[t_arrive, t_done, "secretsmanager.PutSecretValue"], ...]}
    DELETE /__bench/log   -> clears the log

Run: python bench/_moto_server.py --port PORT   (binds 127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

LOG_PATH = "/__bench/log"


class RequestLog:
    """WSGI middleware: time every request moto serves, by its X-Amz-Target."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.entries: list[tuple[float, float, str]] = []
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == LOG_PATH:
            with self.lock:
                if environ.get("REQUEST_METHOD") == "DELETE":
                    self.entries.clear()
                    body = b"{}"
                else:
                    body = json.dumps({"entries": self.entries}).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        arrived = time.time()
        try:
            # moto's responses are small, fully built lists: materialise inside the timing.
            return list(self.app(environ, start_response))
        finally:
            done = time.time()
            with self.lock:
                self.entries.append((arrived, done, target))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = RequestLog(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", args.port, app, True, request_handler=MotoRequestHandler)
    server.serve_forever()


if __name__ == "__main__":
    main()
