"""A fork server for `rotator` processes (run as a script, never imported by the tests).

Starting `rotator` costs ~1.5 s of CPU, almost all of it imports. The crash matrix and the
soak start well over a hundred processes on a 2-core CI machine, so this server imports
rotator once and forks a child per run. A child is a real, separate process: it opens its
own database connections and sockets, runs `rotator.cli.main` with the given argv exactly
as the `rotator` console script does, and dies for real under SIGKILL. Set ROTATOR_EXEC=1
to start every run from the installed console script instead (slower, same results).

Protocol (SOCK_SEQPACKET, one JSON object per message): the test sends
``{"argv": [...], "env": {...}, "cwd": "..."}`` with three file descriptors (stdin, stdout,
stderr) attached; the server answers ``{"pid": N}`` and later ``{"exit": N, "code": C}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys


def _preload() -> None:
    import boto3  # noqa: F401
    import botocore.session  # noqa: F401
    import psycopg  # noqa: F401
    import sqlalchemy.dialects.postgresql.psycopg
    import sqlalchemy.dialects.sqlite.pysqlite  # noqa: F401

    import rotator.adapters.adobe
    import rotator.adapters.aws_secrets
    import rotator.adapters.db.migrate
    import rotator.app
    import rotator.cli
    import rotator.daemon
    import rotator.engine  # noqa: F401


def _child(fds: list[int], request: dict[str, object], sock: socket.socket) -> None:
    sock.close()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})  # type: ignore[call-overload]
    os.chdir(str(request["cwd"]))
    argv = [str(a) for a in request["argv"]]  # type: ignore[attr-defined]
    sys.argv = ["rotator", *argv]
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    code = 0
    try:
        from rotator.cli import main

        main(args=argv, prog_name="rotator")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe at exit changes nothing
            stream.flush()
    os._exit(code)


def serve(sock: socket.socket) -> None:
    children: set[int] = set()
    while True:
        ready, _, _ = select.select([sock], [], [], 0.02)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            sock.send(json.dumps({"exit": pid, "code": code}).encode())
        if not ready:
            continue
        message, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 3)
        if not message:
            return  # the test process went away
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            _child(list(fds), request, sock)
        for fd in fds:
            os.close(fd)
        children.add(pid)
        sock.send(json.dumps({"pid": pid}).encode())


if __name__ == "__main__":
    _preload()
    serve(socket.socket(fileno=int(sys.argv[1])))
