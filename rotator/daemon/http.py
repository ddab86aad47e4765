"""The daemon's health and metrics endpoint: /healthz, /readyz, /metrics.

uvicorn in a thread of its own, on a socket bound before anything else (so a busy port is a
one-line configuration error), answering while the database is still awaited at start.
What the probes say is the daemon's (rotator/daemon/health.py); this module only serves it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from rotator.domain.errors import ConfigError

Verdict = Callable[[], tuple[bool, str]]


def http_app(
    liveness: Verdict,
    readiness: Verdict,
    last_tick: Callable[[], float | None],
    metrics: Callable[[], bytes],
) -> Starlette:
    async def healthz(_: Request) -> Response:
        ok, why = liveness()
        body = {"status": "ok"} if ok else {"status": "stuck", "reason": why}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def readyz(_: Request) -> Response:
        ok, why = readiness()
        body: dict[str, object] = {"ready": ok, "last_tick": last_tick()}
        if not ok:
            body["reason"] = why
        return JSONResponse(body, status_code=200 if ok else 503)

    async def render(_: Request) -> Response:
        return PlainTextResponse(metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", render),
        ]
    )


class HttpServer:
    """uvicorn on a thread; off the main thread it installs no signal handlers (the daemon
    owns signals)."""

    def __init__(self, app: Starlette) -> None:
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def serve(self, listener: socket.socket) -> None:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, daemon=True, name="http"
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)


def bind(listen: str) -> socket.socket:
    """Bind [daemon] listen now, so a taken port fails the start with one clear line."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"daemon.listen: cannot listen on {listen}: {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock
