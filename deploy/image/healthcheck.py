"""The image's HEALTHCHECK: GET /readyz on the address the mounted config listens on.

It reads the same file the daemon reads (``$ROTATOR_CONFIG``), so changing
``[daemon] listen`` never leaves the health check knocking on the old port. A wildcard
address (``0.0.0.0``, ``::``) is asked on loopback. Exit 0: ready; 1: not ready (or no
answer); 2: the config cannot be read.
"""

from __future__ import annotations

import os
import sys
import tomllib
import urllib.error
import urllib.request

from rotator.config import DaemonConfig

# Where to ask a daemon that listens on every interface.
WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "*": "127.0.0.1", "[::]": "[::1]"}  # noqa: S104


def readyz_url(listen: str) -> str:
    host, _, port = listen.rpartition(":")
    return f"http://{WILDCARDS.get(host, host)}:{port}/readyz"


def configured_listen(path: str) -> str:
    with open(path, "rb") as file:
        raw = tomllib.load(file)
    listen = raw.get("daemon", {}).get("listen")
    return str(listen) if listen else str(DaemonConfig.model_fields["listen"].default)


def main() -> int:
    path = os.environ.get("ROTATOR_CONFIG") or "rotator.toml"
    try:
        url = readyz_url(configured_listen(path))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        print(f"healthcheck: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(url, timeout=4) as answer:  # noqa: S310 (http on loopback)
            return 0 if answer.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
