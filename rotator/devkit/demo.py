"""`rotator demo`: one normal and one emergency rotation, end to end, on this machine.

Everything runs in this process on 127.0.0.1: the Adobe sandbox (a real HTTP fake of IMS and
the I/O Management API), moto's server standing in for AWS Secrets Manager, and a SQLite
state database in a fresh directory that is kept afterwards. The rotations are driven by
the real engine (`app.build`, `engine.request`, `rotator.cli.follow`): the same code, the
same state machine and the same audit trail as in production; only the quiet period is
shortened from 25 hours to seconds.

A simulated consumer thread uses the credential the way docs/operations.md asks consumers
to: it caches its access token until it expires (1 s here, about 24 h at Adobe), then reads
AWSCURRENT again and mints a new one. Its tally is the demo's proof of invariant I8: during
the normal rotation it never gets ``invalid_client``.

Nothing here prints a secret value: every line passes the redactor, and at the end the demo
checks its own output against every client secret and access token the sandbox issued.
Heavy imports (moto, boto3, the engine) happen inside the command, so `rotator --help`
stays fast and importing this module does not import `rotator.cli` (which imports this).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from rotator.adapters.db.audit import AuditEvent
    from rotator.app import App
    from rotator.devkit.sandbox.client import SandboxAdmin
    from rotator.domain.model import Rotation, State

__all__ = ["demo"]

CREDENTIAL = "demo"
AWS_NAME = "adobe/demo"  # the secret's name in AWS Secrets Manager
TOKEN_LIFETIME_S = 1  # the sandbox's access-token lifetime: the consumer re-reads this often
CONSUMER_SCOPE = "openid,AdobeID"
POLL_INTERVAL = "250ms"
VERIFY_TIMEOUT = "10s"
MAX_DRAIN = "10m"
SETTLE_TIMEOUT_S = 60.0  # per rotation, on top of the quiet period: the demo never hangs


def _quiet_period(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from rotator.config import parse_duration

    try:
        delta = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if delta < timedelta(seconds=TOKEN_LIFETIME_S):
        raise click.BadParameter(
            f"must be at least the consumer's token lifetime ({TOKEN_LIFETIME_S}s), as in "
            f"production (25h for Adobe's 24h tokens): a shorter quiet period could delete "
            f"the old secret while a consumer still relies on it"
        )
    if delta > timedelta(minutes=10):
        raise click.BadParameter("at most 10m: this is a demo")
    return value.strip()


@click.command(name="demo")
@click.option(
    "--quiet-period",
    default="3s",
    show_default=True,
    callback=_quiet_period,
    help="How long the old secret must go unused before it is deleted (25h in production).",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Afterwards keep the servers and the consumer running (Ctrl-C stops them), so the "
    "written config can be used from another terminal.",
)
def demo(quiet_period: str, keep_running: bool) -> None:
    """Run a normal and an emergency rotation against local stand-ins, showing each step.

    Needs nothing but this package and its `demo` extra: the Adobe sandbox, moto's AWS
    Secrets Manager server and a SQLite database all run in this process on 127.0.0.1.
    Exit 0 only if both rotations completed, the consumer never got invalid_client during
    the normal rotation, the audit chain verified and no secret value was printed.
    """
    from rotator.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, die
    from rotator.domain.errors import RotatorError

    try:
        ok = _Demo(quiet_period, keep_running).run()
    except _SetupError as exc:
        die(str(exc), EXIT_USAGE)
    except RotatorError as exc:
        die(str(exc).replace("\n", "; "), exc.exit_code)
    except KeyboardInterrupt:
        die("interrupted", EXIT_FAILED)
    except Exception as exc:  # one redacted line, as every rotator command does
        logging.getLogger("rotator.devkit.demo").debug("demo failed", exc_info=True)
        from rotator import redaction

        first = redaction.clip(str(exc), 300, first_line=True)
        die(f"unexpected {type(exc).__name__}: {first}", EXIT_FAILED)
    raise SystemExit(EXIT_OK if ok else EXIT_FAILED)


class _SetupError(Exception):
    """The demo cannot start (e.g. moto is not installed): a usage problem, exit 2."""


# --- output ------------------------------------------------------------------------------


class _Output:
    """Every line the demo prints: redacted, and remembered for the final leak check.

    On a terminal the rotations are drawn as live boards with `rich`; otherwise (a pipe, a
    CI log) each step is one plain line as it happens.
    """

    def __init__(self) -> None:
        from rich.console import Console

        probe = Console()
        self.console: Console | None = (
            Console(record=True, highlight=False)
            if probe.is_terminal and not probe.is_dumb_terminal
            else None
        )
        self._plain: list[str] = []

    @property
    def live(self) -> bool:
        return self.console is not None

    def line(self, text: str = "", *, style: str | None = None) -> None:
        from rotator import redaction

        text = redaction.redact(text)
        if self.console is not None:
            from rich.text import Text

            self.console.print(Text(text, style=style or ""), soft_wrap=True)
        else:
            from rotator.cli import say

            self._plain.append(text)
            say(text)

    def printed(self) -> str:
        """All output so far (the live boards' frames included)."""
        recorded = self.console.export_text(clear=False) if self.console is not None else ""
        return "\n".join(self._plain) + "\n" + recorded

    @contextmanager
    def board(self, board: _Board) -> Iterator[None]:
        if self.console is None:
            yield
            return
        from rich.live import Live

        with Live(board, console=self.console, refresh_per_second=10, transient=False):
            yield


# --- the consumer ------------------------------------------------------------------------


@dataclass
class Tally:
    minted: int = 0
    invalid_client: int = 0
    other_errors: int = 0
    by_uuid: Counter[str] = field(default_factory=Counter)


class Consumer(threading.Thread):
    """A service using the credential as consumers should: read AWSCURRENT when the cached
    token expires, mint a new token with it. It counts what happens, per phase."""

    def __init__(self, *, ims_url: str, aws_endpoint: str, secret_id: str, client_id: str) -> None:
        super().__init__(name="demo-consumer", daemon=True)
        self.ims_url, self.aws_endpoint = ims_url, aws_endpoint
        self.secret_id, self.client_id = secret_id, client_id
        self.phase = "normal"
        self.tallies: dict[str, Tally] = {}
        self.last_used: dict[str, float] = {}  # secret uuid -> monotonic time of last mint
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def tally(self, phase: str) -> Tally:
        with self._lock:
            return self.tallies.setdefault(phase, Tally())

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        import boto3
        import httpx

        from rotator import redaction

        sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=self.aws_endpoint)
        with httpx.Client(timeout=5) as http:
            renew_at = 0.0
            while not self._halt.wait(0.02):
                if time.monotonic() < renew_at:
                    continue
                phase = self.phase
                try:
                    answer = sm.get_secret_value(SecretId=self.secret_id, VersionStage="AWSCURRENT")
                    value = json.loads(answer["SecretString"])
                    secret, uuid = str(value["client_secret"]), str(value.get("secret_uuid"))
                    redaction.register(secret)
                    response = http.post(
                        f"{self.ims_url}/ims/token/v3",
                        data={
                            "grant_type": "client_credentials",
                            "client_id": self.client_id,
                            "client_secret": secret,
                            "scope": CONSUMER_SCOPE,
                        },
                    )
                except Exception:  # the servers stop under us at the very end: count it
                    tally = self.tally(phase)
                    with self._lock:
                        tally.other_errors += 1
                    renew_at = time.monotonic() + 0.2
                    continue
                tally = self.tally(phase)
                if response.status_code == 200:
                    body = response.json()
                    redaction.register(body.get("access_token"))
                    with self._lock:
                        tally.minted += 1
                        tally.by_uuid[uuid] += 1
                        self.last_used[uuid] = time.monotonic()
                    renew_at = time.monotonic() + float(body.get("expires_in", TOKEN_LIFETIME_S))
                else:
                    with self._lock:
                        if _ims_error(response) == "invalid_client":
                            tally.invalid_client += 1
                        else:
                            tally.other_errors += 1
                    renew_at = time.monotonic() + 0.2

    def describe(self, phase: str, uuids: dict[str, str]) -> str:
        """'12 tokens (7 with the old secret, 5 with the new), 0 invalid_client'."""
        tally = self.tally(phase)
        with self._lock:
            parts = [
                f"{count} with the {label} secret"
                for label, uuid in uuids.items()
                if (count := tally.by_uuid.get(uuid, 0))
            ]
            text = f"{tally.minted} token{'' if tally.minted == 1 else 's'}"
            if parts:
                text += f" ({', '.join(parts)})"
            text += f", {tally.invalid_client} invalid_client"
            if tally.other_errors:
                text += f", {tally.other_errors} other errors"
        return text


def _ims_error(response: Any) -> str:
    try:
        return str(response.json().get("error", ""))
    except ValueError:
        return ""


# --- the live board ----------------------------------------------------------------------

_DOING = {
    "planned": "requested",
    "creating": "planned: old secret and Adobe's list read, request token persisted",
    "staged": "new secret created at Adobe, put to AWS as AWSPENDING",
    "verified": "the new secret mints a token at Adobe",
    "promoted": "AWSCURRENT holds the new secret, AWSPREVIOUS the old; AWSPENDING removed",
    "draining": "waiting until no consumer has used the old secret for the quiet period",
    "retiring": "the old secret is quiet: deleting it at Adobe",
    "completed": "done",
}


class _Board:
    """One rotation as a checklist of the states it passes, redrawn ten times a second."""

    def __init__(
        self, title: str, path: list[State], consumer: Consumer, phase: str, quiet: str
    ) -> None:
        self.title, self.path, self.consumer, self.phase = title, path, consumer, phase
        self.quiet = quiet
        self.started = time.monotonic()
        self.reached: dict[str, float] = {}
        self.rotation: Rotation | None = None

    def update(self, rotation: Rotation) -> None:
        self.rotation = rotation
        self.reached.setdefault(rotation.state.value, time.monotonic() - self.started)

    def uuids(self) -> dict[str, str]:
        r = self.rotation
        found = {"old": r.old_uuid if r else None, "new": r.new_uuid if r else None}
        return {k: v for k, v in found.items() if v}

    def detail(self, state: str) -> str:
        from rotator.domain.model import Trigger

        r = self.rotation
        if r is None:
            return _DOING[state]
        if state == "planned":
            return f"requested ({r.trigger.value}) by {r.actor}"
        if state == "creating" and r.old_uuid:
            return f"planned: AWSCURRENT holds Adobe secret {r.old_uuid}; request token persisted"
        if state == "staged" and r.new_uuid:
            return f"new Adobe secret {r.new_uuid} put to AWS as AWSPENDING"
        if state == "draining":
            text = f"deleting the old secret after {self.quiet} without use"
            last = self.consumer.last_used.get(r.old_uuid or "")
            if r.state.value == "draining" and last is not None:
                text += f" (the consumer last used it {time.monotonic() - last:.1f}s ago)"
            return text
        if state == "retiring" and r.trigger is Trigger.EMERGENCY:
            return "emergency: deleting every other secret now, invalidating our old tokens"
        if state == "completed" and r.state.value == "completed":
            return f"done: Adobe lists only {r.new_uuid}"
        return _DOING.get(state, state)

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        from rotator import redaction

        table = Table.grid(padding=(0, 1))
        table.add_column(width=2)
        table.add_column(justify="right", width=7)
        table.add_column(width=11)
        table.add_column()
        current = self.rotation.state.value if self.rotation else "planned"
        finished = self.rotation is not None and self.rotation.state.terminal
        for state in self.path:
            name = state.value
            at = self.reached.get(name)
            when = Text(f"+{at:.2f}s" if at is not None else "", style="dim")
            text = Text(redaction.redact(self.detail(name)))
            mark: RenderableType
            if name == current and not finished:
                mark = Spinner("dots", style="cyan")
            elif at is not None:
                mark = Text("✓", style="green")
            else:
                mark = Text("·", style="dim")
                text.stylize("dim")
            table.add_row(mark, when, Text(name, style="bold" if name == current else ""), text)
        if self.rotation is not None and self.rotation.state.value not in {
            s.value for s in self.path
        }:
            table.add_row(
                Text("!", style="red"),
                Text(""),
                Text(self.rotation.state.value, style="bold red"),
                Text(redaction.redact(self.rotation.last_error or "")),
            )
        consumer = Text(
            "consumer: " + self.consumer.describe(self.phase, self.uuids()), style="magenta"
        )
        return Group(Text(self.title, style="bold"), table, consumer)


# --- the demo itself ---------------------------------------------------------------------


class _Demo:
    def __init__(self, quiet_period: str, keep_running: bool) -> None:
        self.quiet = quiet_period
        self.keep_running = keep_running
        self.out = _Output()
        self.dir = Path(tempfile.mkdtemp(prefix="rotator-demo-"))
        self.config_path = self.dir / "rotator.toml"
        self.db_path = self.dir / "rotator.db"
        self.sandbox_state = self.dir / "sandbox-state.json"
        self.audit_key = self.dir / "audit.key"  # this writer's Ed25519 private key
        self.keyring = self.dir / "keyring.toml"  # the public keyring: all a verifier needs
        self.checkpoints = self.dir / "checkpoints.jsonl"
        self.report_path = self.dir / "report.html"
        self.problems: list[str] = []

    def run(self) -> bool:
        from rotator.devkit.localaws import LocalAws
        from rotator.devkit.sandbox.server import SandboxServer
        from rotator.devkit.sandbox.state import Settings as SandboxSettings

        started = time.monotonic()
        out = self.out
        out.line("rotator demo: a normal and an emergency rotation, on this machine", style="bold")
        out.line(f"files in {self.dir} (kept afterwards)")
        try:
            aws = LocalAws()
        except RuntimeError as exc:
            raise _SetupError(str(exc)) from None
        sandbox = SandboxServer(
            settings=SandboxSettings(token_lifetime_s=TOKEN_LIFETIME_S),
            state_file=self.sandbox_state,
        )
        with sandbox, aws:
            out.line(f"Adobe sandbox (IMS and I/O Management API) on {sandbox.url}")
            out.line(f"AWS Secrets Manager stand-in (moto) on {aws.endpoint_url}")
            app, consumer = self._set_up(sandbox.url, aws.endpoint_url, sandbox.admin)
            try:
                ok = self._rotate_twice(app, consumer, sandbox.admin, aws.endpoint_url)
                ok = self._audit(app) and ok
                report_text = self._report(app)
                ok = self._leak_check(sandbox.admin, report_text) and ok
                sandbox.admin.save()
                self._files()
                if self.keep_running:
                    self._linger(consumer)
            finally:
                consumer.stop()
                app.close()
        out.line(f"the auditor's report of this run: {self.report_path}", style="bold")
        verdict = "demo passed" if ok else "demo FAILED: " + "; ".join(self.problems)
        out.line(
            f"{verdict} in {time.monotonic() - started:.1f}s; the servers have stopped",
            style="bold green" if ok else "bold red",
        )
        return ok

    # --- set-up --------------------------------------------------------------------------

    def _set_up(self, sandbox_url: str, aws_url: str, admin: SandboxAdmin) -> tuple[App, Consumer]:
        import boto3

        from rotator import app as app_mod
        from rotator import config, redaction

        cred = admin.create_credential(name="rotator demo")
        if cred.secret is None:
            from rotator.domain.errors import InvariantError

            raise InvariantError("the sandbox creates a first secret")
        redaction.register(cred.secret.client_secret)
        sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=aws_url)
        sm.create_secret(
            Name=AWS_NAME,
            SecretString=json.dumps(
                {"client_secret": cred.secret.client_secret, "secret_uuid": cred.secret.uuid}
            ),
        )
        self.out.line(
            f"created credential {cred.credential_id} (client id {cred.client_id}) with "
            f"secret {cred.secret.uuid}, and AWS secret {AWS_NAME} holding "
            f'{{"client_secret", "secret_uuid"}}'
        )
        # The audit chain's signing key, kept outside the database (here: a file of its
        # own), and the public keyring that verifies it. One key plays operator and daemon.
        from rotator.audit import keys

        public = keys.generate_signing_key(self.audit_key)
        self.keyring.write_text(
            keys.keyring_entry("demo-1", public, ("daemon", "operator")), "utf-8"
        )
        self.config_path.write_text(self._config_text(sandbox_url, aws_url, cred), "utf-8")
        settings = config.load(self.config_path)  # the demo runs on exactly the file it wrote
        app = app_mod.build(settings, upgrade=True)
        from rotator.adapters.identity import IdentityProbe

        probe = IdentityProbe("us-east-1", aws_url, session=app.aws.session)
        app.store.audit.identity = probe.result
        consumer = Consumer(
            ims_url=settings.adobe.ims_url,
            aws_endpoint=aws_url,
            secret_id=AWS_NAME,
            client_id=cred.client_id,
        )
        consumer.start()
        deadline = time.monotonic() + 10
        while consumer.tally("normal").minted == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.out.line(
            f"consumer started: reads AWSCURRENT whenever its token expires "
            f"(every {TOKEN_LIFETIME_S}s here, about 24h at Adobe) and mints a new one"
        )
        return app, consumer

    def _config_text(self, sandbox_url: str, aws_url: str, cred: Any) -> str:
        q = json.dumps  # a JSON string is a valid TOML basic string
        return f"""\
# Written by `rotator demo`. It points at the demo's own servers on 127.0.0.1, which stop
# when the demo exits (`rotator demo --keep-running` keeps them). Without them, the
# commands that only read the state database still work with this file: history, status
# and audit verify. See config.example.toml for every key.

[database]
url = {q(f"sqlite:///{self.db_path}")}

[adobe]  # the Adobe sandbox: IMS and the I/O Management API on one port
ims_url = {q(sandbox_url)}
api_url = {q(sandbox_url)}

[aws]  # moto's server standing in for AWS Secrets Manager
region = "us-east-1"
endpoint_url = {q(aws_url)}

[defaults]  # shortened for the demo; in production quiet_period is 25h, poll_interval 15m
quiet_period = {q(self.quiet)}
poll_interval = {q(POLL_INTERVAL)}
verify_timeout = {q(VERIFY_TIMEOUT)}
max_drain = {q(MAX_DRAIN)}

[daemon]
lease = "30s"

[audit]  # events are signed (Ed25519); checkpoints of the chain head go to a file as well
signing_key = {q(str(self.audit_key))}
keyring = {q(str(self.keyring))}
checkpoint_file = {q(str(self.checkpoints))}

[[credentials]]
name = {q(CREDENTIAL)}
org_id = {q(cred.org_id)}
credential_id = {q(cred.credential_id)}
client_id = {q(cred.client_id)}
secret_id = {q(AWS_NAME)}
"""

    # --- the rotations -------------------------------------------------------------------

    def _rotate_twice(
        self, app: App, consumer: Consumer, admin: SandboxAdmin, aws_url: str
    ) -> bool:
        from rotator.domain.model import State, Trigger

        normal_path: list[State] = [
            State.PLANNED,
            State.CREATING,
            State.STAGED,
            State.VERIFIED,
            State.PROMOTED,
            State.DRAINING,
            State.RETIRING,
            State.COMPLETED,
        ]
        emergency_path: list[State] = [s for s in normal_path if s is not State.DRAINING]

        self.out.line()
        normal = self._rotate(
            app,
            consumer,
            Trigger.MANUAL,
            "normal",
            normal_path,
            f"1. normal rotation (quiet period {self.quiet})",
        )
        ok = normal.state is State.COMPLETED
        if not ok:
            self.problems.append(f"the normal rotation ended {normal.state.value}")
        tally = consumer.tally("normal")
        if tally.invalid_client:
            self.problems.append(
                f"the consumer got invalid_client {tally.invalid_client} times in the normal "
                f"rotation"
            )
            ok = False
        if normal.state is State.COMPLETED:
            ok = self._check_world(app, admin, aws_url, normal) and ok

        self.out.line()
        consumer.phase = "emergency"
        emergency = self._rotate(
            app,
            consumer,
            Trigger.EMERGENCY,
            "emergency",
            emergency_path,
            "2. emergency rotation (the secret leaked: no quiet period)",
        )
        consumer.phase = "after"
        if emergency.state is not State.COMPLETED:
            self.problems.append(f"the emergency rotation ended {emergency.state.value}")
            ok = False
        else:
            listed = [s["uuid"] for s in admin.secrets(app.settings.credentials[0].credential_id)]
            self.out.line(f"   Adobe lists only {', '.join(listed)}: every other secret is gone")
        self.out.line(
            "   an emergency may fail a consumer still holding the leaked secret: "
            "that is its purpose"
        )
        return ok

    def _rotate(
        self,
        app: App,
        consumer: Consumer,
        trigger: Any,
        phase: str,
        path: list[State],
        title: str,
    ) -> Rotation:
        from rotator.cli import follow

        board = _Board(title, path, consumer, phase, self.quiet)
        if not self.out.live:
            self.out.line(title, style="bold")
        consumer.phase = phase
        rotation = app.engine.request(CREDENTIAL, trigger, actor="demo", reason="rotator demo")
        show: Callable[[Rotation], None] = board.update
        if not self.out.live:
            show = self._plain_step(board)
        with self.out.board(board):
            final = follow(
                app,
                rotation,
                wait=True,
                show=show,
                poll=0.1,
                deadline=time.monotonic()
                + SETTLE_TIMEOUT_S
                + app.settings.policy(app.settings.credentials[0]).quiet_period.total_seconds(),
            )
            board.update(final)
            if final.new_uuid:  # consumers move over at their next read: wait for ours to
                deadline = time.monotonic() + 3 * TOKEN_LIFETIME_S + 2
                while final.new_uuid not in consumer.last_used and time.monotonic() < deadline:
                    time.sleep(0.02)
        if not self.out.live:  # the live board's last frame already shows the tally
            self.out.line(f"   consumer: {consumer.describe(phase, board.uuids())}")
        if final.state.value != "completed":
            self.out.line(
                f"   rotation {final.id} ended {final.state.value}: {final.last_error or ''}",
                style="red",
            )
        return final

    def _plain_step(self, board: _Board) -> Callable[[Rotation], None]:
        def show(rotation: Rotation) -> None:
            board.update(rotation)
            state = rotation.state.value
            at = board.reached.get(state, 0.0)
            detail = board.detail(state) if state in _DOING else (rotation.last_error or "")
            if state == "retiring" and rotation.evidence is not None:
                used = rotation.evidence.old_last_used_at
                detail += f" (Adobe: last used {_utc(used)})" if used else " (Adobe: never used)"
            self.out.line(f"   +{at:6.2f}s  {state:<15} {detail}")

        return show

    def _check_world(self, app: App, admin: SandboxAdmin, aws_url: str, normal: Rotation) -> bool:
        """I4 after a normal rotation, from the outside: Adobe's list and every AWS label."""
        import boto3

        cfg = app.settings.credentials[0]
        sm = boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=aws_url)

        def uuid_at(stage: str) -> str | None:
            value = sm.get_secret_value(SecretId=AWS_NAME, VersionStage=stage)["SecretString"]
            found = json.loads(value).get("secret_uuid")
            return str(found) if found else None

        listed = [s["uuid"] for s in admin.secrets(cfg.credential_id)]
        stages = sm.describe_secret(SecretId=AWS_NAME)["VersionIdsToStages"]
        pending = any("AWSPENDING" in labels for labels in stages.values())
        current, previous = uuid_at("AWSCURRENT"), uuid_at("AWSPREVIOUS")
        checks = [
            (listed == [normal.new_uuid], f"Adobe lists exactly one secret, {normal.new_uuid}"),
            (current == normal.new_uuid, "AWSCURRENT holds the new secret"),
            (previous == normal.old_uuid, f"AWSPREVIOUS holds the old one, {normal.old_uuid}"),
            (not pending, "no version carries AWSPENDING"),
        ]
        for passed, text in checks:
            self.out.line(f"   {'✓' if passed else '✗'} {text}", style="green" if passed else "red")
            if not passed:
                self.problems.append(f"after the normal rotation, not true: {text}")
        return all(passed for passed, _ in checks)

    # --- the record ----------------------------------------------------------------------

    def _audit(self, app: App) -> bool:
        out = self.out
        out.line()
        out.line("3. the audit trail, folded (one block per rotation, oldest first)", style="bold")
        events = app.store.events(credential=CREDENTIAL, limit=None, ascending=True)
        for line in _folded_trail(events):
            out.line(line)
        requesters = sorted({e.actor for e in events if e.kind == "started"})
        workers = sorted({e.actor for e in events} - set(requesters))
        out.line(
            f"   actors: {', '.join(requesters)} asked for the rotations (at the CLI, `--actor` "
            f"or your OS user); {', '.join(workers) or 'none'} ran the steps: an engine worker, "
            f"named host:pid:random, one per process, the holder of the rotation's lease"
        )
        out.line(
            f"   every event, with its raw detail: "
            f"`{_program()} --config {self.config_path} history --all --json`"
        )
        from rotator.audit.chain import Checkpoint

        checkpoint = Checkpoint.parse(self.checkpoints.read_text("utf-8"))
        result = app.store.verify(checkpoint)
        if not result.ok:
            out.line(f"   ✗ audit chain broken: {result.problems[0]}", style="red")
            self.problems.append(f"audit chain broken: {result.problems[0]}")
            return False
        out.line(
            f"   ✓ audit chain verified: {result.checked} events, each signed and linked to the "
            f"one before it, {result.replayed} rows replayed; {result.scope}",
            style="green",
        )
        return True

    def _report(self, app: App) -> str:
        """The auditor's report of this run (HTML, and the same as JSON beside it)."""
        from rotator.audit.render import render
        from rotator.cli.report import build_report

        report = build_report(app.settings, app.store)
        html = render(report, "html")
        self.report_path.write_text(html, "utf-8")
        json_text = render(report, "json")
        self.report_path.with_suffix(".json").write_text(json_text, "utf-8")
        self.out.line()
        self.out.line("4. the auditor's report", style="bold")
        self.out.line(
            f"   {self.report_path.name} in the files folder, one self-contained HTML file (also "
            f"{self.report_path.with_suffix('.json').name}); "
            f"`{_program()} --config {self.config_path} report` writes it again"
        )
        return html + json_text

    def _leak_check(self, admin: SandboxAdmin, report: str = "") -> bool:
        """I5 on this very output and the report: no client secret or access token the
        sandbox issued, nor the audit key."""
        secrets = [*admin.secret_values(), _pem_body(self.audit_key.read_text("utf-8"))]
        tokens = admin.token_values()
        printed = self.out.printed() + report
        leaked = sum(1 for value in [*secrets, *tokens] if value and value in printed)
        if leaked:
            self.out.line(f"   ✗ {leaked} secret values appear in this output", style="red")
            self.problems.append(f"{leaked} secret values were printed")
            return False
        self.out.line(
            f"   ✓ none of the {len(secrets) - 1} client secrets and {len(tokens)} access "
            f"tokens the sandbox issued, nor the audit key, appears in this output or the report",
            style="green",
        )
        return True

    def _files(self) -> None:
        out = self.out
        out.line()
        out.line(f"files (kept) in {self.dir}:", style="bold")
        out.line(f"   {self.config_path.name:<19} the config this demo ran on")
        out.line(f"   {self.db_path.name:<19} the state database (SQLite): rotations, events")
        out.line(
            f"   {self.sandbox_state.name:<19} the fake Adobe's own database (mode 0600; its "
            f"sandbox secrets are worthless against real Adobe)"
        )
        out.line(f"   {self.audit_key.name:<19} the audit chain's signing key (mode 0600)")
        out.line(f"   {self.keyring.name:<19} the public keyring (all `audit verify` needs)")
        out.line(f"   {self.checkpoints.name:<19} checkpoints of the audit chain's head")
        out.line(f"   {self.report_path.name:<19} the auditor's report (and report.json)")
        out.line(f"   {_program()} --config {self.config_path} history")
        out.line(
            f"   {_program()} --config {self.config_path} audit verify --checkpoint "
            f"{self.checkpoints}"
        )
        if not self.keep_running:
            out.line(
                "the sandbox and the AWS stand-in stop when the demo exits (AWS's state was in "
                "memory): commands that call them (rotate, check, run) need --keep-running"
            )

    def _linger(self, consumer: Consumer) -> None:
        out = self.out
        out.line()
        out.line(
            "--keep-running: the servers and the consumer keep running; from another terminal:",
            style="bold",
        )
        prefix = "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
        out.line(f"   {prefix} {_program()} --config {self.config_path} rotate {CREDENTIAL} --wait")
        out.line(f"   {prefix} {_program()} --config {self.config_path} run")
        out.line("press Ctrl-C (or send SIGTERM) to stop")
        consumer.phase = "kept running"
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
        out.line()
        out.line(f"consumer while kept running: {consumer.describe('kept running', {})}")


def _program() -> str:
    """How the person ran rotator (e.g. `.venv/bin/rotator`), so the hints work as printed."""
    invoked = sys.argv[0] if sys.argv else ""
    return invoked if Path(invoked).name == "rotator" else "rotator"


# Routine steps: named in a rotation's one line of steps, not each on a line of its own.
_ROUTINE = frozenset(
    {"planned", "staged", "verified", "draining", "poll", "quiet", "gone", "retiring", "token"}
)


def _folded_trail(events: list[AuditEvent]) -> list[str]:
    """The audit trail as a person reads it: per rotation, its steps on one line and its
    telling events (requested, promoted, deleted, ended) each on one line with a summary."""
    from rotator.cli.inspect import summary

    lines: list[str] = []
    by_rotation: dict[int | None, list[AuditEvent]] = {}
    for e in events:
        by_rotation.setdefault(e.rotation_id, []).append(e)
    for rotation_id, group in by_rotation.items():
        if rotation_id is None:
            for e in group:
                lines.append(f"   #{e.id:<4} {e.kind} by {e.actor}  {summary(e.kind, e.detail)}")
            continue
        steps: list[str] = []
        for e in group:
            state = e.to_state or e.kind
            if e.kind == "poll":
                continue
            if not steps or steps[-1] != state:
                steps.append(state)
        polls = sum(1 for e in group if e.kind == "poll")
        if polls and "draining" in steps:
            steps[steps.index("draining")] = f"draining (polled {polls}x)"
        first, last = group[0], group[-1]
        lines.append(
            f"   rotation {rotation_id}, {_utc(first.at)} to {_utc(last.at)}: " + " -> ".join(steps)
        )
        for e in group:
            if e.kind in _ROUTINE:
                continue
            move = f"{e.from_state or '-'} -> {e.to_state or '-'}"
            lines.append(
                f"      #{e.id:<4} rotation {rotation_id}  {e.kind:<14} {move:<22} by {e.actor}  "
                f"{summary(e.kind, e.detail)}".rstrip()
            )
    return lines


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3] + "Z"


def _pem_body(pem: str) -> str:
    """The key material of a PEM file (its base64 lines), as it would leak if printed."""
    return "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
