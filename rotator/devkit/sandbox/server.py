"""Run the sandbox in a background thread on a free port, for tests and benchmarks.

uvicorn runs its own event loop in that thread. Signal handlers are not installed there
(uvicorn only installs them from the main thread), and ``log_config=None`` keeps uvicorn
from reconfiguring the host process's logging; the access log is off so query strings
(``/ims/logout/v1/token?access_token=...``) are never written anywhere.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from rotator.devkit.sandbox.app import create_app
from rotator.devkit.sandbox.client import SandboxAdmin
from rotator.devkit.sandbox.persistence import load_state
from rotator.devkit.sandbox.state import SandboxState, Settings

__all__ = ["SandboxServer", "uvicorn_config"]


class _NoAccessLogH11(H11Protocol):
    """h11 that never writes uvicorn's access log.

    uvicorn decides per connection from ``logging.getLogger("uvicorn.access").hasHandlers()``
    whether to log each request line, query string included, so ``access_log=False`` is
    undone by anyone who later attaches a handler there (pytest's log capture does, and so
    may the host application's logging setup). Sandbox URLs carry access tokens
    (``/ims/logout/v1/token?access_token=...``): the sandbox never writes that line.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False


class _StripQueryStrings(logging.Filter):
    """Second line of defence: an access record that does get written loses its query."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def _guard_access_logger() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _StripQueryStrings) for f in access.filters):
        access.addFilter(_StripQueryStrings())


def uvicorn_config(app: ASGIApp, **options: Any) -> uvicorn.Config:
    """uvicorn settings shared by the in-process server and ``rotator sandbox``."""
    _guard_access_logger()
    defaults: dict[str, Any] = {
        "access_log": False,
        "http": _NoAccessLogH11,
        "lifespan": "on",
        "ws": "none",
        "backlog": 4096,
        "date_header": False,  # the sandbox sends Adobe's own (app._AdobeDate)
    }
    return uvicorn.Config(app, **{**defaults, **options})


class SandboxServer:
    """A running sandbox: ``with SandboxServer() as sb: httpx.get(sb.url + ...)``.

    ``state`` is the live in-memory model (thread-safe), for tests that prefer to inspect
    it directly; ``admin`` is an HTTP admin client bound to this server.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: Settings | None = None,
        state_file: Path | None = None,
        save_interval_s: float = 0.5,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.host = host
        self.state = SandboxState(settings)
        self.state_file = state_file
        if state_file is not None:
            load_state(self.state, state_file)
        self._requested_port = port
        self._save_interval_s = save_interval_s
        self._startup_timeout_s = startup_timeout_s
        self._socket: socket.socket | None = None
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._admin: SandboxAdmin | None = None
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sandbox has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL for both ``ims_url`` and ``api_url``, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    @property
    def admin(self) -> SandboxAdmin:
        if self._admin is None:
            self._admin = SandboxAdmin(self.url)
        return self._admin

    def start(self) -> Self:
        """Bind first (so the port is known and free), then serve in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("the sandbox is already running")
        # proto must be explicit: asyncio only sets TCP_NODELAY on sockets whose proto is TCP,
        # and without it every response (headers, then body) waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._socket = sock
        self._port = sock.getsockname()[1]
        config = uvicorn_config(
            create_app(
                self.state, state_file=self.state_file, save_interval_s=self._save_interval_s
            ),
            log_config=None,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="rotator-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the sandbox failed to start") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("the sandbox did not start in time")
            time.sleep(0.005)
        return self

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            self._server.run(sockets=[self._socket])
        except BaseException as exc:  # reported to start(); a thread cannot raise to it
            self._error = exc

    def stop(self) -> None:
        """Free held requests, shut down gracefully, and close the port."""
        self.state.faults.release_all_holds()
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = None
        self._thread = None
        self._socket = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
