"""``rotator sandbox``: run the fake Adobe in the foreground, and set up a staging world in it.

``rotator sandbox`` alone runs the server (as it always did). Its subcommands talk to a
running sandbox through its admin API (:class:`rotator.devkit.sandbox.client.SandboxAdmin`):
``create-credential`` makes a credential there and publishes its first secret to AWS
Secrets Manager (moto's server in staging), printing the ``[[credentials]]`` table for a
rotator config; ``list`` shows what the sandbox holds. Neither ever prints a secret value.

Heavy imports (uvicorn, Starlette, httpx, boto3) happen inside the commands so
``rotator --help`` stays fast for everyone who never runs the sandbox.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from rotator.devkit.sandbox.client import CreatedCredential, SecretValue

from rotator.devkit.console import EXIT_FAILED, EXIT_USAGE, die, say

__all__ = ["sandbox"]

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8765"

_HELP = """Run a local stand-in for Adobe IMS and the I/O Management API.

IMS (/ims/...) and the API (/console/...) answer on the same port, so point both
URLs of a rotator config at it:

\b
    [adobe]
    ims_url = "http://127.0.0.1:8765"
    api_url = "http://127.0.0.1:8765"

Create a credential, publish its first secret to AWS Secrets Manager (moto's
server in staging) and get the [[credentials]] table for a rotator config:

\b
    rotator sandbox create-credential --name analytics \\
        --aws-endpoint http://127.0.0.1:5000 >> rotator.toml
    rotator sandbox list

The steps of a whole staging run are in docs/operations.md ("Staging"). The
subcommands use the admin API under /sandbox (POST /sandbox/credentials). Other
admin calls: GET /sandbox/state, POST /sandbox/reset, PUT /sandbox/clock,
POST /sandbox/faults/rules, POST /sandbox/holds, GET /sandbox/counters (see
rotator.devkit.sandbox.client.SandboxAdmin). The admin API has no authentication: keep
the sandbox on 127.0.0.1.

With --state FILE the world is saved to FILE (JSON, mode 0600) and restored on
the next start. That file holds the sandbox's own client secrets and access
tokens in plaintext: they are fake Adobe's values, useless against real Adobe,
but do not commit the file. Nothing else is logged: the access log is off.
"""


@click.group(
    name="sandbox",
    help=_HELP,
    invoke_without_command=True,
    subcommand_metavar="[COMMAND [ARGS]...]",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option(
    "--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port."
)
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON file to restore from and save to (holds sandbox secret values).",
)
@click.option(
    "--add-status",
    type=click.Choice(["200", "201"]),
    default="201",
    show_default=True,
    help="Status of POST .../secrets (the guide says 201, the swagger 200).",
)
@click.option(
    "--delete-status",
    type=click.Choice(["200", "204"]),
    default="204",
    show_default=True,
    help="Status of DELETE .../secrets/{uuid} (the guide says 204, the swagger 200).",
)
@click.option(
    "--token-lifetime",
    type=click.IntRange(min=1),
    default=86399,
    show_default=True,
    help="Access token lifetime in seconds (expires_in).",
)
@click.pass_context
def sandbox(
    ctx: click.Context,
    host: str,
    port: int,
    state_file: Path | None,
    add_status: str,
    delete_status: str,
    token_lifetime: int,
) -> None:
    if ctx.invoked_subcommand is not None:
        return  # a subcommand talks to a sandbox that runs elsewhere
    import uvicorn

    from rotator.devkit.sandbox.app import create_app
    from rotator.devkit.sandbox.persistence import load_state
    from rotator.devkit.sandbox.server import uvicorn_config
    from rotator.devkit.sandbox.state import SandboxState, Settings

    settings = Settings(
        add_status=int(add_status),
        delete_status=int(delete_status),
        token_lifetime_s=token_lifetime,
    )
    state = SandboxState(settings)
    if state_file is not None and load_state(state, state_file):
        count = len(state.snapshot()["credentials"])
        click.echo(f"Restored {count} credential(s) from {state_file}", err=True)
    click.echo(f"Adobe sandbox (IMS and API) on http://{host}:{port}", err=True)
    config = uvicorn_config(
        create_app(state, state_file=state_file),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=3,
    )
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        # uvicorn re-raises Ctrl-C after its graceful shutdown (state already saved): that
        # is the normal way to stop the sandbox, not an error.
        click.echo("Adobe sandbox stopped", err=True)


_url_option = click.option(
    "--url",
    default=DEFAULT_URL,
    show_default=True,
    envvar="ROTATOR_SANDBOX_URL",
    help="The running sandbox (env ROTATOR_SANDBOX_URL).",
)
_wait_option = click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the sandbox (and AWS) to answer, e.g. right after starting them.",
)


def _patiently(
    what: str, wait: float, call: Callable[[], T], transient: tuple[type[Exception], ...]
) -> T:
    """`call()`, retried while it fails with a connection error, for up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return call()
        except transient as exc:
            if time.monotonic() >= deadline:
                die(f"{what} does not answer ({type(exc).__name__}); is it running?", EXIT_FAILED)
            time.sleep(0.2)


@sandbox.command(name="create-credential")
@_url_option
@click.option(
    "--name",
    required=True,
    help="rotator's name for it (the [[credentials]] name, and the credential's at Adobe).",
)
@click.option(
    "--secret-id",
    default=None,
    help="The AWS secret to create for it.  [default: adobe/NAME]",
)
@click.option(
    "--aws-endpoint",
    envvar="AWS_ENDPOINT_URL",
    default=None,
    help="AWS Secrets Manager endpoint, e.g. moto's server (env AWS_ENDPOINT_URL).",
)
@click.option(
    "--region",
    envvar=["AWS_REGION", "AWS_DEFAULT_REGION"],
    default="us-east-1",
    show_default=True,
    help="AWS region (env AWS_REGION, AWS_DEFAULT_REGION).",
)
@click.option(
    "--age",
    default=None,
    metavar="DURATION",
    help="Make the first secret this old (e.g. 91d), so max_age finds it due.",
)
@_wait_option
def create_credential(
    url: str,
    name: str,
    secret_id: str | None,
    aws_endpoint: str | None,
    region: str,
    age: str | None,
    wait: float,
) -> None:
    """Create a credential at the sandbox and publish its first secret to AWS.

    The secret goes to a new AWS secret as the JSON value rotator expects
    ({"client_secret": ..., "secret_uuid": ...}); the [[credentials]] table for
    a rotator config is printed on stdout (no secret in it). Nothing is created
    when the AWS secret already exists.
    """
    import httpx

    from rotator.devkit.sandbox.client import SandboxAdmin, SandboxAdminError

    secret_id = secret_id or f"adobe/{name}"
    backdate = _checked_arguments(name, age)
    aws = _AwsSecret(secret_id, region, aws_endpoint)
    with SandboxAdmin(url) as admin:
        _patiently(f"the sandbox at {url}", wait, admin.health, (httpx.TransportError,))
        aws.refuse_existing(wait)
        try:
            created = admin.create_credential(name=name)
        except SandboxAdminError as exc:
            die(str(exc), EXIT_FAILED)
        first = created.secret
        assert first is not None  # create_credential makes the first secret by default
        aws.publish(first)
        if backdate is not None:
            admin.set_secret_times(created.credential_id, first.uuid, created_ago_s=backdate)
    click.echo(_config_table(name, created, secret_id))
    say(
        f"created {name}: credential {created.credential_id} at {url}, its secret "
        f"{first.uuid} in AWS secret {secret_id}",
        err=True,
    )


def _checked_arguments(name: str, age: str | None) -> float | None:
    """Refuse a bad --name or --age (exit 2, nothing created); the age in seconds."""
    from rotator.config import parse_duration

    if not _valid_name(name):
        die(f"--name {name!r}: use letters, digits, '.', '_' and '-'", EXIT_USAGE)
    try:
        return None if age is None else parse_duration(age).total_seconds()
    except ValueError as exc:
        die(f"--age {age!r}: {exc}", EXIT_USAGE)


class _AwsSecret:
    """The AWS secret a new sandbox credential's first secret is published to."""

    def __init__(self, secret_id: str, region: str, endpoint: str | None) -> None:
        import boto3

        self.secret_id = secret_id
        self.name = endpoint or f"AWS Secrets Manager ({region})"
        self._sm: SecretsManagerClient = boto3.client(
            "secretsmanager", region_name=region, endpoint_url=endpoint or None
        )

    def refuse_existing(self, wait: float) -> None:
        """Exit (nothing created yet) if AWS does not answer or the secret already exists."""
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        try:
            exists = _patiently(self.name, wait, self._exists, (EndpointConnectionError,))
        except (BotoCoreError, ClientError) as exc:
            die(f"AWS secret {self.secret_id}: {type(exc).__name__}: {exc}", EXIT_FAILED)
        if exists:
            die(
                f"AWS secret {self.secret_id} already exists; pick another --secret-id",
                EXIT_FAILED,
            )

    def _exists(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._sm.describe_secret(SecretId=self.secret_id)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return False
            raise

    def publish(self, first: SecretValue) -> None:
        """The JSON value rotator reads: the secret and its Adobe uuid."""
        from botocore.exceptions import BotoCoreError, ClientError

        value = {"client_secret": first.client_secret, "secret_uuid": first.uuid}
        try:
            self._sm.create_secret(Name=self.secret_id, SecretString=json.dumps(value))
        except (BotoCoreError, ClientError) as exc:
            die(f"AWS secret {self.secret_id}: {type(exc).__name__}", EXIT_FAILED)


def _config_table(name: str, created: CreatedCredential, secret_id: str) -> str:
    """The [[credentials]] table for a rotator config (no secret in it)."""
    return "\n".join(
        [
            "",
            "[[credentials]]",
            f"name = {json.dumps(name)}",
            f"org_id = {json.dumps(created.org_id)}",
            f"credential_id = {json.dumps(created.credential_id)}",
            f"client_id = {json.dumps(created.client_id)}",
            f"secret_id = {json.dumps(secret_id)}",
        ]
    )


@sandbox.command(name="list")
@_url_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_wait_option
def list_credentials(url: str, as_json: bool, wait: float) -> None:
    """The sandbox's credentials and their secrets (uuids and times, never values)."""
    import httpx

    from rotator.devkit.sandbox.client import SandboxAdmin

    with SandboxAdmin(url) as admin:
        state: dict[str, Any] = _patiently(
            f"the sandbox at {url}", wait, admin.state, (httpx.TransportError,)
        )
    credentials = state["credentials"]
    if as_json:
        fields = ("credential_id", "org_id", "client_id", "name", "secrets")
        click.echo(json.dumps([{k: c[k] for k in fields} for c in credentials], indent=2))
        return
    if not credentials:
        click.echo("no credentials (create one: rotator sandbox create-credential --name NAME)")
    for credential in credentials:
        click.echo(
            f"{credential['name']}  credential {credential['credential_id']}  "
            f"org {credential['org_id']}  client {credential['client_id']}"
        )
        for secret in credential["secrets"]:
            used = secret["last_used_at"]
            click.echo(
                f"  secret {secret['uuid']}  created {_when(secret['created_at'])}  "
                f"last used {_when(used) if used else 'never'}"
            )


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _valid_name(name: str) -> bool:
    return bool(name) and all(ch.isalnum() or ch in "._-" for ch in name) and name.isascii()
