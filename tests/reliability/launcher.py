"""Start `rotator` as a real process, read what it prints, stop it dead with SIGKILL.

Two ways to start one, same handle:
- `Zygote`: a fork server that imported rotator once (see zygote.py), for the crash matrix
  and the soak, which start well over a hundred processes;
- `exec_rotator`: the installed console script, `.venv/bin/rotator`, for the leak scan and
  the bad-input cases (and for everything when ROTATOR_EXEC=1).

stdout is a pipe the test reads on demand; `block_stdout()` fills that pipe so the
process blocks on its next line. `rotator rotate` prints one line right after each state
is committed and before the next step starts, so a process blocked there is stopped
exactly at a step boundary with no request in flight.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ROTATOR = str(BIN / "rotator")
FILLER = b"\0"


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment for a rotator process (no inherited ROTATOR_* surprises)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="*",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Proc:
    """One running rotator: pid, exit code, and its output (stderr goes to a file)."""

    def __init__(self, pid: int, out_r: int, out_w: int, err_path: Path, waiter: Any) -> None:
        self.pid = pid
        self._out_r = out_r
        self._out_w = out_w  # kept so that block_stdout() can fill the pipe
        self._err_path = err_path
        self._waiter = waiter
        self._chunks: list[bytes] = []
        self.code: int | None = None
        self.killed = False

    # --- output --------------------------------------------------------------------------

    def drain(self) -> str:
        """Read whatever the process printed so far (never blocks)."""
        while True:
            try:
                chunk = os.read(self._out_r, 65536)
            except BlockingIOError:
                break
            except OSError:
                break
            if not chunk:
                break
            self._chunks.append(chunk)
        return self.stdout

    @property
    def stdout(self) -> str:
        return b"".join(self._chunks).replace(FILLER, b"").decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        try:
            return self._err_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def lines(self) -> list[str]:
        return [line for line in self.drain().splitlines() if line.strip()]

    def block_stdout(self) -> None:
        """Fill the stdout pipe: the process blocks on the next line it prints."""
        self.drain()
        # A second open file description, so O_NONBLOCK does not reach the child's stdout.
        fd = os.open(f"/proc/self/fd/{self._out_w}", os.O_WRONLY | os.O_NONBLOCK)
        try:
            for size in (65536, 4096, 512, 64, 8, 1):
                while True:
                    try:
                        os.write(fd, FILLER * size)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno == errno.EAGAIN:
                            break
                        raise
        finally:
            os.close(fd)

    # --- life ----------------------------------------------------------------------------

    def poll(self) -> int | None:
        if self.code is None:
            self.code = self._waiter(self.pid, 0)
        return self.code

    def wait(self, timeout: float = 60.0) -> int:
        code = self._waiter(self.pid, timeout)
        if code is None:
            self.kill()
            code = self._waiter(self.pid, 10)
            raise TimeoutError(
                f"rotator (pid {self.pid}) still running after {timeout}s; killed. "
                f"stdout: {self.drain()[-2000:]!r} stderr: {self.stderr[-2000:]!r}"
            )
        self.code = code
        self.drain()
        self.close()
        return code

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, no lease release; exactly a crash."""
        self.killed = True
        # Once reaped its pid is free (pid_max may be 32768): only a live process is killed.
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self._waiter(self.pid, 10)
        self.drain()
        self.close()

    def close(self) -> None:
        for name in ("_out_r", "_out_w"):
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    if name == "_out_r":
                        self._chunks.append(_read_rest(fd))
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)


def _read_rest(fd: int) -> bytes:
    out = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out.append(chunk)
    return b"".join(out)


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    flags = fcntl.fcntl(r, fcntl.F_GETFL)
    fcntl.fcntl(r, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    return r, w


class Zygote:
    """The fork server (one per test session) and the exit codes of its children."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        self._process = subprocess.Popen(
            [sys.executable, str(HERE / "zygote.py"), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=base_env(),
        )
        theirs.close()
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._pids: list[int] = []
        self._exits: dict[int, int] = {}
        self._reader = threading.Thread(target=self._read, daemon=True, name="zygote-reader")
        self._reader.start()
        self.started = 0

    def _read(self) -> None:
        while True:
            try:
                message = self._sock.recv(65536)
            except OSError:
                return
            if not message:
                return
            data = json.loads(message)
            with self._cond:
                if "pid" in data:
                    self._pids.append(data["pid"])
                else:
                    self._exits[data["exit"]] = data["code"]
                self._cond.notify_all()

    def _wait(self, pid: int, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while pid not in self._exits:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._exits[pid]

    def spawn(self, argv: list[str], *, env: dict[str, str], cwd: str | Path) -> Proc:
        out_r, out_w = _pipe()
        err_fd, err_path = tempfile.mkstemp(prefix="rotator-err-", suffix=".log", dir=cwd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        request = json.dumps({"argv": argv, "env": env, "cwd": str(cwd)}).encode()
        with self._lock:
            with self._cond:
                before = len(self._pids)
            socket.send_fds(self._sock, [request], [devnull, out_w, err_fd])
            with self._cond:
                if not self._cond.wait_for(lambda: len(self._pids) > before, timeout=30):
                    raise RuntimeError("the fork server did not answer")
                pid = self._pids[before]
        os.close(devnull)
        os.close(err_fd)
        self.started += 1
        return Proc(pid, out_r, out_w, Path(err_path), self._wait)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the reader; the server sees EOF and ends
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()


def exec_rotator(argv: list[str], *, env: dict[str, str], cwd: str | Path) -> Proc:
    """The installed console script, as an operator would run it."""
    out_r, out_w = _pipe()
    err_fd, err_path = tempfile.mkstemp(prefix="rotator-err-", suffix=".log", dir=cwd)
    process = subprocess.Popen(
        [ROTATOR, *argv],
        stdin=subprocess.DEVNULL,
        stdout=out_w,
        stderr=err_fd,
        env=env,
        cwd=str(cwd),
    )
    os.close(err_fd)

    def waiter(pid: int, timeout: float) -> int | None:
        try:
            return process.wait(timeout=timeout if timeout > 0 else 0.0001)
        except subprocess.TimeoutExpired:
            return None

    return Proc(process.pid, out_r, out_w, Path(err_path), waiter)


class Launcher:
    """The zygote unless ROTATOR_EXEC=1; counts the processes it started."""

    def __init__(self) -> None:
        self.exec_mode = os.environ.get("ROTATOR_EXEC") == "1"
        self._zygote: Zygote | None = None
        self.started = 0
        self._lock = threading.Lock()

    def start(self, argv: list[str], *, env: dict[str, str], cwd: str | Path) -> Proc:
        with self._lock:
            self.started += 1
            if not self.exec_mode and self._zygote is None:
                self._zygote = Zygote()
        if self.exec_mode:
            return exec_rotator(argv, env=env, cwd=cwd)
        assert self._zygote is not None
        return self._zygote.spawn(argv, env=env, cwd=cwd)

    def close(self) -> None:
        if self._zygote is not None:
            self._zygote.close()
