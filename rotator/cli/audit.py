"""`rotator audit ...`: verify the audit chain, print its head as a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rotator.cli.context import Ctx, pass_ctx
from rotator.cli.output import EXIT_FAILED, EXIT_USAGE, die, errors, say

if TYPE_CHECKING:
    from rotator.audit.chain import Checkpoint
    from rotator.config import Settings


@click.group()
def audit() -> None:
    """Audit-trail tools."""


def read_checkpoint(given: str) -> Checkpoint:
    """A checkpoint from a file (JSON, or JSON lines: the newest wins) or inline JSON."""
    from rotator.audit.chain import Checkpoint

    text = given
    if not given.lstrip().startswith("{"):
        try:
            text = Path(given).read_text(encoding="utf-8")
        except OSError as exc:
            die(f"--checkpoint: cannot read {given}: {exc.strerror or exc}", EXIT_USAGE)
    try:
        return Checkpoint.parse(text)
    except ValueError as exc:
        die(f"--checkpoint: {exc}", EXIT_USAGE)


def latest_checkpoint(settings: Settings, given: str | None) -> tuple[Checkpoint | None, str]:
    """The checkpoint to verify against, and where it came from: --checkpoint, else the
    newest line of [audit] checkpoint_file, else none."""
    from rotator.audit.chain import Checkpoint

    if given:
        return read_checkpoint(given), "--checkpoint"
    path = settings.audit.checkpoint_file
    if path and not Path(path).exists():
        # Configured but gone (or never written): verifying "without a checkpoint" would
        # hide the removal of the newest events, which the checkpoint is there to show.
        return None, (
            f"file {path} does not exist (`rotator audit checkpoint` writes the first; "
            f"--checkpoint verifies against another)"
        )
    if path:
        try:
            return Checkpoint.parse(Path(path).read_text(encoding="utf-8")), f"file {path}"
        except (OSError, ValueError) as exc:
            return None, f"file {path} unreadable ({exc})"
    return None, "none"


@audit.command("verify")
@click.option(
    "--checkpoint",
    "checkpoint_arg",
    metavar="FILE|JSON",
    help="A checkpoint published earlier (the checkpoint file, a log excerpt with "
    "`audit checkpoint` lines, or one JSON object): proves nothing up to it was removed. "
    "Default: the newest in [audit] checkpoint_file, if set.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def audit_verify(ctx: Ctx, checkpoint_arg: str | None, as_json: bool) -> None:
    """Verify the audit chain: every link (keyed with the [audit] keys), the checkpoint if
    given, no event past the head, and every rotation and credential row against its
    newest event. Exit 1 naming each problem.

    Says what the result proves: unkeyed, it proves only accidental damage; keyed without
    a checkpoint, removal of the newest events cannot be seen. The first problem is the
    error line (stderr); any others, and what the result proves, go to standard output.
    """
    with errors():
        checkpoint, source = latest_checkpoint(ctx.settings, checkpoint_arg)
        if checkpoint is None and source != "none":
            die(f"[audit] checkpoint_file: {source}", EXIT_FAILED)  # damaged: not ignored
        with ctx.store() as store:
            result = store.verify(checkpoint)
    if as_json:
        say(json.dumps(result.as_dict(), indent=2))
    else:
        if result.ok:
            say(
                f"audit chain intact: {result.checked} events verified, "
                f"{result.replayed} rows replayed"
            )
        for problem in result.problems[1:]:
            say(f"also: {problem}")
        for incident in result.refused:
            say(f"refused by the engine (a row not backed by its events): {incident}")
        say(f"checkpoint: {source}")
        say(f"scope: {result.scope}")
    if not result.ok:
        die(
            f"audit verify failed: {result.problems[0]} "
            f"({result.checked} events verified before it)",
            EXIT_FAILED,
        )


@audit.command("checkpoint")
@pass_ctx
def audit_checkpoint(ctx: Ctx) -> None:
    """Print the chain head as a checkpoint (JSON), and publish it to the configured sinks.

    Keep the line somewhere the database's writers cannot change (a ticket, a log store):
    `rotator audit verify --checkpoint` checks against it later.
    """
    from rotator.app import checkpoint_sink

    with errors(), ctx.store() as store:
        head = store.checkpoint()
    if head is None:
        die("no audit events yet: nothing to checkpoint", EXIT_FAILED)
    checkpoint_sink(ctx.settings, s3=False)(head)
    say(json.dumps(head.as_dict()))


@audit.command("keygen")
@click.option(
    "--out",
    "out",
    required=True,
    metavar="FILE",
    help="Where to write the new private key (PEM, mode 0600; never over an existing file).",
)
@click.option(
    "--id",
    "key_id",
    required=True,
    metavar="ID",
    help="The key id its events are recorded under, e.g. daemon-prod-1 or ops-alice-2026.",
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(["operator", "daemon"]),
    help="What the key may sign (repeatable): an operator's CLI requests and drives; a "
    "daemon only steps rotations and starts scheduled ones. Default: operator.",
)
@click.option(
    "--keyring",
    "keyring_file",
    metavar="FILE",
    help="Append the public key's entry to this keyring file (created if missing).",
)
def audit_keygen(out: str, key_id: str, roles: tuple[str, ...], keyring_file: str | None) -> None:
    """Make an Ed25519 keypair for one writer (a daemon, an operator's CLI).

    The private key goes to --out (set it as [audit] signing_key on that writer only); the
    public key's keyring entry is printed (or appended to --keyring): every writer and
    every auditor lists it in the [audit] keyring file.
    """
    import re
    from datetime import UTC, datetime

    from rotator.audit import keys

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$", key_id):
        die(f"--id: {key_id!r} is not a valid key id (letters, digits, . _ : -)", EXIT_USAGE)
    with errors():
        public = keys.generate_signing_key(Path(out))
    since = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    entry = keys.keyring_entry(key_id, public, tuple(sorted(set(roles or ("operator",)))), since)
    if keyring_file:
        path = Path(keyring_file)
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        if f'[keys."{key_id}"]' in existing:
            die(f"--keyring: {path} already lists key {key_id!r}", EXIT_USAGE)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(("\n" if existing and not existing.endswith("\n\n") else "") + entry)
        say(f"private key: {out} (mode 0600); public key listed in {path} as {key_id!r}")
    else:
        say(entry.rstrip("\n"))
