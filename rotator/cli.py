"""The `rotator` command. Commands only parse, call the app, and print.

Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error (nothing
was changed), 3 needs attention (a person must look).

Every line printed passes the redactor. An error is one line on stderr: a RotatorError's
own text (written to be safe to show), or for anything unexpected only its type and first
line, redacted; `--log-level DEBUG` logs the traceback (without locals) as well.
"""

from __future__ import annotations

import getpass
import importlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import click

from rotator import redaction
from rotator.domain.errors import ConfigError, RotatorError
from rotator.domain.model import Rotation, State, Trigger

if TYPE_CHECKING:
    from rotator.adapters.db.store import Store
    from rotator.app import App
    from rotator.config import Settings
    from rotator.notify import Notifier

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ATTENTION = 0, 1, 2, 3


def say(text: str = "", *, err: bool = False) -> None:
    """Every line the CLI prints passes the redactor first."""
    click.echo(redaction.redact(text), err=err)


def die(message: str, code: int) -> NoReturn:
    say(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def _errors(interrupted: str = "interrupted") -> Iterator[None]:
    """One clear line and a documented exit code, never a traceback with values in it."""
    try:
        yield
    except RotatorError as exc:
        die(str(exc).replace("\n", "; "), exc.exit_code)
    except KeyboardInterrupt:
        die(interrupted, EXIT_FAILED)
    except Exception as exc:
        logging.getLogger("rotator.cli").debug("unexpected error", exc_info=True)
        first = (str(exc).splitlines() or [""])[0][:300]
        die(f"unexpected {type(exc).__name__}: {first}", EXIT_FAILED)


class Ctx:
    def __init__(self, config_path: str | None, log_level: str, log_format: str) -> None:
        self.config_path = config_path
        self.log_level = log_level
        self.log_format = log_format
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from rotator import config  # pydantic: loaded when a command needs it

            self._settings = config.load(self.config_path)
        return self._settings

    @contextmanager
    def app(self, *, notify: bool = False) -> Iterator[App]:
        """The composition root's App; with `notify`, webhooks fire on outcomes it drives
        (delivered before the command exits)."""
        from rotator import app as app_mod
        from rotator.notify import Notifier, once_each

        notifier: Notifier | None = None
        if notify and self.settings.notifications.webhooks:
            notifier = Notifier(self.settings.notifications.webhooks)
        listeners = [once_each([notifier])] if notifier else None
        try:
            built = app_mod.build(self.settings, listeners=listeners)
            try:
                yield built
            finally:
                built.close()
        finally:
            if notifier is not None:
                notifier.close()

    @contextmanager
    def store(self) -> Iterator[Store]:
        """The state database alone, for commands that only read it."""
        from rotator import app as app_mod

        opened = app_mod.open_store(self.settings)
        try:
            yield opened
        finally:
            opened.engine.dispose()


pass_ctx = click.make_pass_decorator(Ctx)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


class _Main(click.Group):
    """The command group; `sandbox` and `demo` load only when used (they import servers)."""

    lazy: ClassVar[dict[str, str]] = {
        "sandbox": "rotator.sandbox.cli:sandbox",
        "demo": "rotator.demo:demo",
    }
    # What `rotator --help` says of them, so listing commands imports no server.
    lazy_help: ClassVar[dict[str, str]] = {
        "sandbox": "Run the local Adobe stand-in (IMS and I/O Management API).",
        "demo": "A normal and an emergency rotation, end to end, on embedded defaults.",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            if name in self.lazy:
                rows.append((name, self.lazy_help[name]))
            elif (command := super().get_command(ctx, name)) is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, _, attr = self.lazy[cmd_name].partition(":")
            try:
                command = getattr(importlib.import_module(module), attr)
            except ImportError:  # an optional part that is not installed: no such command
                return None
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    envvar="ROTATOR_CONFIG",
    help="Config file (default: $ROTATOR_CONFIG, then ./rotator.toml).",
)
@click.option(
    "--log-level",
    default=None,
    envvar="ROTATOR_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Logs go to stderr. Default: INFO for `run`, WARNING for the other commands.",
)
@click.option(
    "--log-format",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "json", "console"]),
    help="auto: JSON lines unless stderr is a terminal.",
)
@click.version_option(package_name="rotator")
@click.pass_context
def main(
    ctx: click.Context, config_path: str | None, log_level: str | None, log_format: str
) -> None:
    """Rotate Adobe OAuth Server-to-Server client secrets through AWS Secrets Manager.

    \b
    Exit codes:
      0  success
      1  the operation failed (or a check, or the audit chain)
      2  usage or configuration error: nothing was changed
      3  needs attention: a person must look (rotate, status)
    """
    from rotator import logs

    level = log_level or ("INFO" if ctx.invoked_subcommand == "run" else "WARNING")
    logs.configure(level, json=None if log_format == "auto" else log_format == "json")
    ctx.obj = Ctx(config_path, level, log_format)


# --- rotate ------------------------------------------------------------------------------


def _describe(rotation: Rotation) -> str:
    parts = [
        f"rotation {rotation.id} ({rotation.trigger.value}) of {rotation.credential}: "
        f"{rotation.state.value}"
    ]
    if rotation.new_uuid and rotation.state in {State.STAGED, State.VERIFIED, State.PROMOTED}:
        parts.append(f"new secret {rotation.new_uuid}")
    if rotation.state is State.DRAINING and rotation.evidence:
        ev = rotation.evidence
        parts.append(
            f"old last used {_ts(ev.old_last_used_at)}, "
            f"new last used {_ts(ev.new_last_used_at)}, "
            f"next check {_ts(rotation.next_attempt_at)}"
        )
    if rotation.last_error:
        if rotation.state in {State.NEEDS_ATTENTION, State.FAILED, State.CANCELLED}:
            parts.append(rotation.last_error)
        elif not rotation.state.terminal:  # a step failed and is retried when due
            parts.append(f"retry at {_ts(rotation.next_attempt_at)}: {rotation.last_error}")
    return " — ".join(parts)


def _ts(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "never"


def _exit_for(rotation: Rotation) -> int:
    if rotation.state is State.NEEDS_ATTENTION:
        return EXIT_ATTENTION
    if rotation.state in {State.FAILED, State.CANCELLED}:
        return EXIT_FAILED
    return EXIT_OK


def _drains(rotation: Rotation) -> bool:
    """Draining with nothing asked of it: a rotate without --wait may leave it here."""
    return rotation.state is State.DRAINING and not (
        rotation.emergency_requested or rotation.cancel_requested
    )


def follow(
    app: App,
    rotation: Rotation,
    *,
    wait: bool,
    show: Callable[[Rotation], None],
    poll: float = 1.0,
    deadline: float | None = None,
) -> Rotation:
    """Work on (or watch) a credential's rotation until it drains or ends.

    Whoever holds the lease does the work: if a daemon has it, this says so once and
    watches, taking over only if the lease is let go (the daemon waits between draining
    polls, or it died and its lease ran out). When an emergency pre-empts a normal
    rotation, the emergency rotation that follows is followed.
    """
    store, engine = app.store, app.engine
    last_seen: tuple[int, State, int, str | None] | None = None
    watched_owner: str | None = None

    def report(current: Rotation) -> None:
        nonlocal last_seen
        seen = (current.id, current.state, current.attempts, current.last_error)
        if seen != last_seen:
            last_seen = seen
            show(current)

    report(rotation)
    asked_now = True  # the operator asked for this step now; later ones wait until due
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return rotation
        claim = engine.claim(rotation.id, due_only=not asked_now)
        asked_now = False
        if claim is not None:
            watched_owner = None
            rotation = engine.drive(claim, on_step=report, stop=lambda r: not wait and _drains(r))
            report(rotation)
        else:
            lease = store.lease(rotation.id)
            rotation = store.get(rotation.id)
            if lease.owner and lease.owner not in {engine.owner, watched_owner}:
                watched_owner = lease.owner
                say(f"rotation {rotation.id} is being worked on by {lease.owner}; watching")
            report(rotation)
        if rotation.state.terminal:
            successor = store.active(rotation.credential)
            if successor is not None and successor.detail.get("follows") == rotation.id:
                rotation = successor
                report(rotation)
                asked_now = True
                continue
            return rotation
        if rotation.state is State.NEEDS_ATTENTION:
            return rotation
        if not wait and _drains(rotation):
            return rotation
        pause = poll  # watching another worker: look again soon
        if watched_owner is None and rotation.next_attempt_at is not None:
            pause = (rotation.next_attempt_at - datetime.now(UTC)).total_seconds()
            pause = min(max(pause, 0.05), 30.0)  # our own: come back when it is due
        time.sleep(pause)


@main.command()
@click.argument("name")
@click.option(
    "--emergency",
    is_flag=True,
    help="The secret leaked: promote a fresh one, then delete every other at once.",
)
@click.option("--reason", default="", help="Recorded in the audit trail.")
@click.option(
    "--wait",
    is_flag=True,
    help="Keep watching through draining until completed or needs attention.",
)
@pass_ctx
def rotate(ctx: Ctx, name: str, emergency: bool, reason: str, wait: bool) -> None:
    """Start (or resume) a rotation of NAME now, showing each step.

    Returns when the rotation reaches draining or an end state (with --wait: when it
    completes or needs attention). Works with or without a daemon running: whoever holds
    the rotation's lease does the work, and the other watches. Exit 0 at draining or
    completed, 1 failed or cancelled, 3 needs attention.
    """
    interrupted = (
        f"interrupted; {name}'s rotation resumes from its last saved step "
        f"(`rotator rotate {name}` or the daemon)"
    )
    with _errors(interrupted):
        ctx.settings.credential(name)  # an unknown name: exit 2 before anything is opened
        final = _rotate(ctx, name, emergency=emergency, reason=reason, wait=wait)
    sys.exit(_exit_for(final))


def _rotate(ctx: Ctx, name: str, *, emergency: bool, reason: str, wait: bool) -> Rotation:
    with ctx.app(notify=True) as app:
        trigger = Trigger.EMERGENCY if emergency else Trigger.MANUAL
        before = app.store.active(name)
        if before is None:
            # Read-only first: a credential that cannot rotate leaves no rotation behind.
            from structlog.contextvars import bound_contextvars

            from rotator.preflight import check_one

            with bound_contextvars(credential=name):
                ready = check_one(
                    app.settings, name, app.adobe, app.aws, app.store.credential_rows().get(name)
                )
            if not ready.ok and ready.blocks_rotation:
                die(f"{name}: cannot rotate: {ready.detail}", EXIT_FAILED)
        rotation = app.engine.request(name, trigger, actor=_actor(), reason=reason)
        if emergency and not rotation.emergency:
            say(
                f"rotation {rotation.id} of {name} is {rotation.state.value}: it ends "
                f"first (safely), then the emergency rotation starts"
            )
        elif before is not None and before.id == rotation.id:
            say(f"{name} already has rotation {rotation.id} ({rotation.state.value}); following it")
        return follow(app, rotation, wait=wait, show=lambda r: say(_describe(r)))


@main.command()
@click.argument("name")
@click.option("--reason", default="", help="Recorded in the audit trail.")
@pass_ctx
def cancel(ctx: Ctx, name: str, reason: str) -> None:
    """Cancel NAME's unfinished rotation, safely at any state.

    Before promotion the new secret is deleted and AWSPENDING dropped; after promotion
    draining stops and both secrets stay valid. Exit 0 once cancelled, 3 if it needs a
    person, else 1: it ended otherwise, or was still on its way after two minutes (the
    request stands, and whoever holds the rotation carries it out).
    """
    with _errors():
        ctx.settings.credential(name)
        with ctx.app(notify=True) as app:
            rotation = app.store.request_cancel(name, actor=_actor(), reason=reason)
            if rotation is None:
                say(f"{name} has no unfinished rotation; nothing to cancel")
                return
            final = follow(
                app,
                rotation,
                wait=True,
                show=lambda r: say(_describe(r)),
                deadline=time.monotonic() + 120,
            )
    if final.state is State.CANCELLED:
        sys.exit(EXIT_OK)
    if not final.state.terminal:
        say(f"cancel requested; rotation {final.id} is still {final.state.value}", err=True)
    sys.exit(EXIT_ATTENTION if final.state is State.NEEDS_ATTENTION else EXIT_FAILED)


@main.command()
@click.argument("name")
@click.option("--uuid", "uuid", required=True, help="The Adobe secret uuid AWSCURRENT holds.")
@pass_ctx
def adopt(ctx: Ctx, name: str, uuid: str) -> None:
    """Tell rotator which Adobe secret uuid NAME's AWSCURRENT holds (when it cannot tell)."""
    with _errors():
        ctx.settings.credential(name)
        with ctx.app() as app:
            app.engine.adopt(name, uuid, actor=_actor())
    say(f"{name}: AWSCURRENT recorded as Adobe secret {uuid}")


# --- reading -----------------------------------------------------------------------------


def _status_rows(app: App) -> list[dict[str, Any]]:
    settings = app.settings
    rows = app.store.credential_rows()
    now = datetime.now(UTC)
    result = []
    for cfg in settings.credentials:
        row = rows.get(cfg.name)
        policy = settings.policy(cfg)
        created = row.secret_created_at if row else None
        active = app.store.active(cfg.name)
        entry: dict[str, Any] = {
            "name": cfg.name,
            "current_uuid": row.current_uuid if row else None,
            "secret_created_at": created.isoformat() if created else None,
            "secret_age_days": round((now - created).total_seconds() / 86400, 2)
            if created
            else None,
            "due_at": (created + policy.max_age).isoformat() if created else None,
            "last_rotated_at": row.last_rotated_at.isoformat()
            if row and row.last_rotated_at
            else None,
            "last_error": row.last_error if row else None,
            "rotation": None,
        }
        if active is not None:
            entry["rotation"] = {
                "id": active.id,
                "trigger": active.trigger.value,
                "state": active.state.value,
                "resume_state": active.resume_state.value if active.resume_state else None,
                "old_uuid": active.old_uuid,
                "new_uuid": active.new_uuid,
                "evidence": active.evidence.as_dict() if active.evidence else None,
                "next_attempt_at": active.next_attempt_at.isoformat()
                if active.next_attempt_at
                else None,
                "last_error": active.last_error,
            }
        result.append(entry)
    return result


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def status(ctx: Ctx, as_json: bool) -> None:
    """Every credential: current uuid, secret age, due date, any unfinished rotation."""
    with _errors(), ctx.app() as app:
        rows = _status_rows(app)
    attention = any(r["rotation"] and r["rotation"]["state"] == "needs_attention" for r in rows)
    if as_json:
        say(json.dumps(rows, indent=2))
        sys.exit(EXIT_ATTENTION if attention else EXIT_OK)
    for r in rows:
        age = f"{r['secret_age_days']}d" if r["secret_age_days"] is not None else "unknown"
        line = (
            f"{r['name']}: secret {r['current_uuid'] or 'unknown'}, age {age}, "
            f"due {r['due_at'] or 'unknown'}"
        )
        rot = r["rotation"]
        if rot:
            line += f"; rotation {rot['id']} {rot['state']}"
            if rot["evidence"]:
                ev = rot["evidence"]
                line += (
                    f" (old last used {ev['old_last_used_at'] or 'never'}, "
                    f"new last used {ev['new_last_used_at'] or 'never'})"
                )
            if rot["last_error"]:
                line += f"; {rot['last_error']}"
        elif r["last_error"]:
            line += f"; {r['last_error']}"
        say(line)
    if not rows:
        say("no credentials configured")
    sys.exit(EXIT_ATTENTION if attention else EXIT_OK)


@main.command()
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@pass_ctx
def history(ctx: Ctx, name: str | None, as_json: bool, limit: int) -> None:
    """The audit trail, newest first (of NAME, or of every credential)."""
    with _errors():
        if name:
            ctx.settings.credential(name)
        with ctx.store() as store:
            events = store.events(credential=name, limit=limit)
    if as_json:
        say(json.dumps([e.as_dict() for e in events], indent=2))
        return
    if not events:
        say("no audit events yet")
    for e in events:
        move = f"{e.from_state or '-'} -> {e.to_state or '-'}"
        detail = json.dumps(e.detail, sort_keys=True) if e.detail else ""
        rid = f"rotation {e.rotation_id}" if e.rotation_id else "credential"
        say(
            f"{_ts(e.at)}  #{e.id}  {e.credential}  {rid}  {e.kind}  {move}  by {e.actor}  "
            f"{detail}".rstrip()
        )


@main.group()
def audit() -> None:
    """Audit-trail tools."""


@audit.command("verify")
@pass_ctx
def audit_verify(ctx: Ctx) -> None:
    """Check the hash chain of the audit events; exit 1 naming the first changed row."""
    with _errors(), ctx.store() as store:
        checked, problem = store.verify_chain()
    if problem:
        die(f"audit chain broken at {problem} ({checked} events verified before it)", EXIT_FAILED)
    say(f"audit chain intact: {checked} events verified")


@main.group()
def db() -> None:
    """State database tools."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Ctx) -> None:
    """Create or migrate the state database to the current schema (idempotent)."""
    with _errors():
        from rotator.adapters.db import migrate
        from rotator.adapters.db.store import make_engine

        engine = make_engine(ctx.settings.database.url)
        try:
            before, after = migrate.upgrade(engine)
        except Exception as exc:
            raise ConfigError(
                f"database.url: cannot migrate: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200]}"
            ) from None
        finally:
            engine.dispose()
    say(
        f"database at revision {after}" + ("" if before == after else f" (was {before or 'empty'})")
    )


@main.command()
@pass_ctx
def check(ctx: Ctx) -> None:
    """Read-only pre-flight: the database, then every credential; exit 1 if any fails.

    For each credential: AWSCURRENT is readable and has the secret key, it mints a
    management token, Adobe lists its secrets, and rotator can tell which one AWSCURRENT
    holds. Nothing is written anywhere (minting a token does move the current secret's
    last-used time at Adobe).
    """
    with _errors():
        from rotator.preflight import run_checks

        results = run_checks(ctx.settings)
    width = max(len(r.name) for r in results)
    say(f"{'check':<{width}}  verdict  detail")
    for r in results:
        say(f"{r.name:<{width}}  {'ok' if r.ok else 'FAIL':<7}  {r.detail}")
    if len(results) == 1:
        say("no credentials configured")
    sys.exit(EXIT_OK if all(r.ok for r in results) else EXIT_FAILED)


@main.command()
@pass_ctx
def run(ctx: Ctx) -> None:
    """Run the daemon: migrate, then rotate on schedule and serve /healthz, /readyz, /metrics.

    SIGTERM or SIGINT stops it at the next step boundary (exit 0); a second one exits at
    once (exit 128+signal) and the next start resumes from the last saved step.
    """
    with _errors():
        from rotator.daemon import Daemon

        code = Daemon(ctx.settings).run()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
