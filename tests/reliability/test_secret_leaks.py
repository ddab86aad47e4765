"""No secret value or access token anywhere a person or a system could read it (I5).

Full normal and emergency rotations, a failed one, one that ends in needs_attention, one
that dies of an unexpected error (its traceback logged), read-only commands, and the
daemon (its /metrics scraped) all run as the installed `rotator` command with
`--log-level DEBUG`, with Adobe and AWS faults injected so that retry and error paths
log too. Then every log line, every row of every table of the database (SQLite and
PostgreSQL), every line the CLI printed, /metrics and every webhook body are searched for
every secret and every access token the sandbox ever issued. Zero hits is the bar.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from rotator.adapters.db.tables import metadata
from rotator.devkit.localaws import free_port
from tests.reliability import figures
from tests.reliability.awsproxy import wait_until
from tests.reliability.harness import Case, ServicesRig
from tests.reliability.launcher import Proc, base_env, exec_rotator


class Webhooks:
    """A tiny local receiver; the first delivery is answered 503 (the retry path logs)."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        receiver = self
        # The webhook signing secret (issue 12): read from a file, searched for like the rest.
        self.signing = secrets.token_urlsafe(32)
        handle, self.secret_file = tempfile.mkstemp(prefix="rotator-leak-webhook-")
        os.write(handle, self.signing.encode())
        os.close(handle)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.bodies.append(body.decode("utf-8", "replace"))
                self.send_response(503 if len(receiver.bodies) == 1 else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        os.unlink(self.secret_file)


@pytest.fixture
def webhooks() -> Iterator[Webhooks]:
    receiver = Webhooks()
    yield receiver
    receiver.close()


@dataclass
class Haystack:
    parts: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, text: str) -> None:
        self.parts[name] = self.parts.get(name, "") + text + "\n"

    def run(self, name: str, proc: Proc, timeout: float = 60) -> int:
        started = time.monotonic()
        code = proc.wait(timeout)
        self.timings[name] = round(time.monotonic() - started, 1)
        self.add(f"{name}: stdout", proc.stdout)
        self.add(f"{name}: stderr (DEBUG logs)", proc.stderr)
        return code


def _rotator(case: Case, *command: str, installed: bool = False) -> Proc:
    """DEBUG logs on. SQLite runs use the installed console script, PostgreSQL ones the
    fork server (same code, same process boundary, a second of CPU less each)."""
    argv = ["--log-level", "DEBUG", *case.argv(*command)]
    if installed or case.db_url.startswith("sqlite"):
        return exec_rotator(argv, env=base_env(), cwd=case.rig.root)
    return case.rig.launcher.start(argv, env=base_env(), cwd=case.rig.root)


def _dump_tables(case: Case) -> str:
    out = []
    with case.engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(text(f"SELECT * FROM {table.name}")):
                out.append(json.dumps([str(v) for v in row]))
    return "\n".join(out)


# size: the whole leak scenario (config, rotations, webhooks, report) reads as one run.
def _scenario(rig: ServicesRig, db: str, webhooks: Webhooks, hay: Haystack) -> dict[str, int]:
    hooks = {
        "notifications": {
            "webhooks": [
                {
                    "url": webhooks.url,
                    "events": ["started", "completed", "failed", "needs_attention", "cancelled"],
                    "timeout": "2s",
                    "secret": {"id": "leak-scan", "file": webhooks.secret_file},
                }
            ]
        }
    }
    case = rig.new_case(db, extra=hooks, defaults={"verify_timeout": "2s"})
    client, faults = case.cred.client_id, rig.state.faults
    codes: dict[str, int] = {}

    # 1. A normal rotation through Adobe 503s, a dropped token call and AWS throttling;
    #    Adobe answers every add with 202 (issue 11 finding 4: an unexpected 2xx quoted its
    #    body, the new secret's plaintext, into the error, the audit and the webhooks).
    faults.consistency.set_add_status(202, client_id=client)
    faults.add("list_secrets", status=503, count=2, client_id=client)
    faults.add("token", action="drop", count=1, client_id=client)
    rig.proxy.add_fault("PutSecretValue", secret_id=case.secret_id, count=1)
    codes["normal"] = hay.run("normal", _rotator(case, "rotate", case.name, "--wait"))

    # 2. An emergency rotation (tokens minted with the old secret are invalidated).
    faults.add("delete_secret", status=500, count=1, client_id=client)
    codes["emergency"] = hay.run(
        "emergency",
        _rotator(case, "rotate", case.name, "--emergency", "--reason", "leak scan", "--wait"),
    )

    # 3. Adobe never accepts the new secret: rolled back, failed.
    faults.set_timing(accept_delay_ms=600_000)
    try:
        codes["failed"] = hay.run("failed", _rotator(case, "rotate", case.name, "--wait"))
    finally:
        faults.set_timing(accept_delay_ms=0)

    # 4. AWS refuses the put: the new secret is given back, needs attention.
    rig.proxy.add_fault("PutSecretValue", secret_id=case.secret_id, code="AccessDeniedException")
    codes["attention"] = hay.run("needs attention", _rotator(case, "rotate", case.name))
    rig.proxy.clear_faults()

    # 5. That rotation resumes, and meets an unexpected error: the events table vanishes
    #    while it waits on AWS, its next save fails and the CLI logs the traceback.
    hold = case.aws_hold("PutSecretValue")
    proc = _rotator(case, "rotate", case.name, "--wait")
    hold.wait(30)
    with case.engine.begin() as conn:
        conn.execute(text("ALTER TABLE events RENAME TO events_away"))
    hold.release()
    codes["unexpected"] = hay.run("unexpected error", proc)
    with case.engine.begin() as conn:
        conn.execute(text("ALTER TABLE events_away RENAME TO events"))
    assert "Traceback" in proc.stderr or '"exception"' in proc.stderr, proc.stderr[-2000:]

    # 6. Read-only commands (on one database: they print the same from either).
    if db == "sqlite":
        for command in (["status", "--json"], ["history", "--json"]):
            hay.run(" ".join(command), _rotator(case, *command))

    # 7. The daemon: a due credential (max_age 1s) rotated by the scheduler; /metrics.
    hay.add("webhooks so far", "\n".join(webhooks.bodies))
    _daemon(rig, db, webhooks, hay)
    hay.add("database", _dump_tables(case))
    case.close()
    return codes


def _daemon(rig: ServicesRig, db: str, webhooks: Webhooks, hay: Haystack) -> None:
    port = free_port()
    case = rig.new_case(
        db,
        defaults={"max_age": "1s"},
        daemon={"listen": f"127.0.0.1:{port}", "tick": "500ms", "jitter": "100ms"},
        extra={"notifications": {"webhooks": [{"url": webhooks.url, "timeout": "2s"}]}},
    )
    rig.state.faults.add("token", status=503, count=1, client_id=case.cred.client_id)
    proc = _rotator(case, "run", installed=True)
    try:
        wait_until(
            lambda: any(r["state"] == "completed" for r in case.rotations()),
            timeout=40,
            interval=0.2,
        )
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "rotator_rotations" in metrics
        hay.add("daemon /metrics", metrics)
        for path in ("/healthz", "/readyz"):
            hay.add(f"daemon {path}", httpx.get(f"http://127.0.0.1:{port}{path}").text)
        time.sleep(0.5)  # let the completed webhook go out
    finally:
        proc.drain()
        os.kill(proc.pid, signal.SIGTERM)
        hay.run("daemon", proc, timeout=30)
    hay.add("daemon database", _dump_tables(case))
    case.close()


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_no_secret_or_token_anywhere(rig: ServicesRig, db: str, webhooks: Webhooks) -> None:
    hay = Haystack()
    codes = _scenario(rig, db, webhooks, hay)
    hay.add("webhooks", "\n".join(webhooks.bodies))
    print(f"leak scan {db}: seconds per run {hay.timings}")

    needles = [row["client_secret"] for row in rig.state.all_secret_values()]
    needles += rig.state.all_token_values()
    needles.append(webhooks.signing)
    haystack = hay.parts
    hits = [
        f"{needle[:4]}… in {where}"
        for needle in needles
        for where, text_ in haystack.items()
        if needle in text_
    ]
    figures.add("leak scan: secret and token values searched for", len(needles))
    figures.add("leak scan: characters of output searched", sum(map(len, haystack.values())))
    figures.add("leak scan: hits", len(hits))

    # The scan looked at real output: logs at DEBUG, every outcome, webhooks, metrics.
    assert codes == {"normal": 0, "emergency": 0, "failed": 1, "attention": 3, "unexpected": 1}
    logs = "".join(v for k, v in haystack.items() if "stderr" in k)
    assert '"level": "debug"' in logs and "rotation step" in logs
    assert "retry" in logs  # the fault paths logged
    assert len(webhooks.bodies) >= 6
    assert any('"event": "failed"' in b for b in webhooks.bodies)
    assert "event_id" in haystack["database"]  # the outbox's rows were searched too
    assert len(needles) >= 10
    assert hits == []
