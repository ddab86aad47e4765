"""A local AWS Secrets Manager stand-in: moto's HTTP server on 127.0.0.1 (for demo and tests).

boto3 talks to it over real HTTP, exactly as to AWS; nothing is patched. moto is more
lenient than AWS in places (see docs/), which is why the engine checks labels itself.
"""

from __future__ import annotations

import os
import socket
from types import TracebackType


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalAws:
    """Start moto's server in a thread; `endpoint_url` is what [aws] endpoint_url takes."""

    def __init__(self, port: int | None = None) -> None:
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:  # moto is an extra: say which one
            raise RuntimeError(
                "the local AWS stand-in needs moto: pip install 'adobe-secret-rotator[demo]'"
            ) from exc
        self.port = port or free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        # boto3 insists on credentials even for a local endpoint; these are placeholders.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalAws:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
