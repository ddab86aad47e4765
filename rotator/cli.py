"""The `rotator` command. Commands only parse, call the app, and print.

Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error,
3 needs attention (a person must look).
"""

from __future__ import annotations

import getpass
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import click

from rotator import config as config_mod
from rotator import redaction
from rotator.domain.errors import ConfigError, RotatorError
from rotator.domain.model import Rotation, State, Trigger

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ATTENTION = 0, 1, 2, 3


def say(text: str = "", *, err: bool = False) -> None:
    """Every line the CLI prints passes the redactor first."""
    click.echo(redaction.redact(text), err=err)


def die(message: str, code: int) -> NoReturn:
    say(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """One clear line and a documented exit code, never a traceback with values in it."""
    try:
        yield
    except RotatorError as exc:
        die(str(exc).replace("\n", "; "), exc.exit_code)
    except KeyboardInterrupt:
        die("interrupted", EXIT_FAILED)


class Ctx:
    def __init__(self, config_path: str | None, log_level: str, log_format: str) -> None:
        self.config_path = config_path
        self.log_level = log_level
        self.log_format = log_format
        self._settings: config_mod.Settings | None = None

    @property
    def settings(self) -> config_mod.Settings:
        if self._settings is None:
            self._settings = config_mod.load(self.config_path)
        return self._settings

    def build(self, **kwargs: Any) -> Any:
        from rotator import app

        return app.build(self.settings, **kwargs)


pass_ctx = click.make_pass_decorator(Ctx)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    envvar="ROTATOR_CONFIG",
    help="Config file (default: $ROTATOR_CONFIG, then ./rotator.toml).",
)
@click.option(
    "--log-level",
    default="WARNING",
    show_default=True,
    envvar="ROTATOR_LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
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
def main(ctx: click.Context, config_path: str | None, log_level: str, log_format: str) -> None:
    """Rotate Adobe OAuth Server-to-Server client secrets through AWS Secrets Manager.

    Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error,
    3 needs attention.
    """
    from rotator import logs

    logs.configure(log_level, json=None if log_format == "auto" else log_format == "json")
    ctx.obj = Ctx(config_path, log_level, log_format)


# --- rotate ------------------------------------------------------------------------------

DONE_WITHOUT_WAIT = {
    State.DRAINING,
    State.COMPLETED,
    State.FAILED,
    State.CANCELLED,
    State.NEEDS_ATTENTION,
}


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
    if rotation.state in {State.NEEDS_ATTENTION, State.FAILED} and rotation.last_error:
        parts.append(rotation.last_error)
    return " — ".join(parts)


def _ts(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "never"


def _exit_for(rotation: Rotation) -> int:
    if rotation.state is State.NEEDS_ATTENTION:
        return EXIT_ATTENTION
    if rotation.state in {State.FAILED, State.CANCELLED}:
        return EXIT_FAILED
    return EXIT_OK


def follow(
    app: Any,
    rotation: Rotation,
    *,
    wait: bool,
    show: Callable[[Rotation], None],
    poll: float = 1.0,
    deadline: float | None = None,
) -> Rotation:
    """Work on (or watch) a credential's rotation until it drains or ends.

    Whoever holds the lease does the work: if a daemon has it, this only watches. When an
    emergency pre-empts a normal rotation, the emergency rotation that follows is followed.
    """
    store, engine = app.store, app.engine
    last_seen: tuple[int, State] | None = None
    watching_note = False

    def report(current: Rotation) -> None:
        nonlocal last_seen
        if (current.id, current.state) != last_seen:
            last_seen = (current.id, current.state)
            show(current)

    report(rotation)
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return rotation
        claim = engine.claim(rotation.id)
        if claim is not None:
            rotation = engine.drive(
                claim, on_step=report, stop=lambda r: r.state is State.DRAINING and not wait
            )
        else:
            lease = store.lease(rotation.id)
            rotation = store.get(rotation.id)
            if not watching_note and lease.owner and lease.owner != engine.owner:
                say(f"rotation {rotation.id} is being worked on by {lease.owner}; watching")
                watching_note = True
            report(rotation)
        if rotation.state.terminal:
            successor = store.active(rotation.credential)
            if successor is not None and successor.detail.get("follows") == rotation.id:
                rotation = successor
                report(rotation)
                continue
            return rotation
        if rotation.state is State.NEEDS_ATTENTION:
            return rotation
        if rotation.state is State.DRAINING and not wait:
            return rotation
        pause = poll
        if claim is not None and rotation.next_attempt_at is not None:
            pause = (rotation.next_attempt_at - datetime.now(UTC)).total_seconds()
            pause = min(max(pause, 0.05), 30.0)
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
    completes or needs attention). Works with or without a daemon running.
    """
    with _errors():
        ctx.settings.credential(name)
        app = ctx.build()
        try:
            trigger = Trigger.EMERGENCY if emergency else Trigger.MANUAL
            rotation = app.engine.request(name, trigger, actor=_actor(), reason=reason)
            if emergency and not rotation.emergency:
                say(
                    f"rotation {rotation.id} of {name} is {rotation.state.value}: it ends "
                    f"first (safely), then the emergency rotation starts"
                )
            final = follow(app, rotation, wait=wait, show=lambda r: say(_describe(r)))
        finally:
            app.close()
    sys.exit(_exit_for(final))


@main.command()
@click.argument("name")
@click.option("--reason", default="", help="Recorded in the audit trail.")
@pass_ctx
def cancel(ctx: Ctx, name: str, reason: str) -> None:
    """Cancel NAME's unfinished rotation, safely at any state.

    Before promotion the new secret is deleted and AWSPENDING dropped; after promotion
    draining stops and both secrets stay valid.
    """
    with _errors():
        ctx.settings.credential(name)
        app = ctx.build()
        try:
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
        finally:
            app.close()
    sys.exit(EXIT_OK if final.state is State.CANCELLED else _exit_for(final))


@main.command()
@click.argument("name")
@click.option("--uuid", "uuid", required=True, help="The Adobe secret uuid AWSCURRENT holds.")
@pass_ctx
def adopt(ctx: Ctx, name: str, uuid: str) -> None:
    """Tell rotator which Adobe secret uuid NAME's AWSCURRENT holds (when it cannot tell)."""
    with _errors():
        cfg = ctx.settings.credential(name)
        app = ctx.build()
        try:
            listed = [s.uuid for s in app.engine.adobe_secrets(cfg.name)]
            if uuid not in listed:
                raise ConfigError(
                    f"--uuid: Adobe lists no secret {uuid} for {name} "
                    f"(it has: {', '.join(listed) or 'none'})"
                )
            app.engine.sync()
            app.store.adopt(name, uuid, actor=_actor())
            say(f"{name}: AWSCURRENT recorded as Adobe secret {uuid}")
        finally:
            app.close()


# --- reading -----------------------------------------------------------------------------


def _status_rows(app: Any) -> list[dict[str, Any]]:
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
    with _errors():
        app = ctx.build()
        try:
            rows = _status_rows(app)
        finally:
            app.close()
    if as_json:
        say(json.dumps(rows, indent=2))
        return
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
    if any(r["rotation"] and r["rotation"]["state"] == "needs_attention" for r in rows):
        sys.exit(EXIT_ATTENTION)


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
        from rotator import app as app_mod

        store = app_mod.open_store(ctx.settings)
        try:
            events = store.events(credential=name, limit=limit)
        finally:
            store.engine.dispose()
    if as_json:
        say(json.dumps([e.as_dict() for e in events], indent=2))
        return
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
    with _errors():
        from rotator import app as app_mod

        store = app_mod.open_store(ctx.settings)
        try:
            checked, problem = store.verify_chain()
        finally:
            store.engine.dispose()
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
    """Read-only pre-flight of every credential; exit 1 if any fails."""
    with _errors():
        from rotator.preflight import run_checks

        results = run_checks(ctx.settings)
    width = max([len(r.name) for r in results] + [10])
    say(f"{'credential':<{width}}  verdict  detail")
    for r in results:
        say(f"{r.name:<{width}}  {'ok' if r.ok else 'FAIL':<7}  {r.detail}")
    if not results:
        say("no credentials configured")
    sys.exit(EXIT_OK if all(r.ok for r in results) else EXIT_FAILED)


@main.command()
@pass_ctx
def run(ctx: Ctx) -> None:
    """Run the daemon: migrate, then rotate on schedule and serve /healthz, /readyz, /metrics."""
    with _errors():
        from rotator.daemon import Daemon

        Daemon(ctx.settings).run()


def _register_optional() -> None:
    try:
        from rotator.sandbox.cli import sandbox
    except ImportError:  # pragma: no cover - the sandbox ships with rotator
        return
    main.add_command(sandbox)


_register_optional()


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


if __name__ == "__main__":  # pragma: no cover
    main()
