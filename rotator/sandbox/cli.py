"""``rotator sandbox``: run the fake Adobe in the foreground for demos and manual testing.

Heavy imports (uvicorn, Starlette) happen inside the command so ``rotator --help`` stays
fast for everyone who never runs the sandbox.
"""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["sandbox"]

_HELP = """Run a local stand-in for Adobe IMS and the I/O Management API.

IMS (/ims/...) and the API (/console/...) answer on the same port, so point both
URLs of a rotator config at it:

\b
    [adobe]
    ims_url = "http://127.0.0.1:8765"
    api_url = "http://127.0.0.1:8765"

Create a credential (and get its org id, credential id, client id and first
secret) through the admin API under /sandbox:

\b
    curl -s -X POST http://127.0.0.1:8765/sandbox/credentials \\
         -H 'content-type: application/json' -d '{}'

Other admin calls: GET /sandbox/state, POST /sandbox/reset, PUT /sandbox/clock,
POST /sandbox/faults/rules, POST /sandbox/holds, GET /sandbox/counters (see
rotator.sandbox.client.SandboxAdmin). The admin API has no authentication: keep
the sandbox on 127.0.0.1.

With --state FILE the world is saved to FILE (JSON, mode 0600) and restored on
the next start. That file holds the sandbox's own client secrets and access
tokens in plaintext: they are fake Adobe's values, useless against real Adobe,
but do not commit the file. Nothing else is logged: the access log is off.
"""


@click.command(name="sandbox", help=_HELP)
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
def sandbox(
    host: str,
    port: int,
    state_file: Path | None,
    add_status: str,
    delete_status: str,
    token_lifetime: int,
) -> None:
    import uvicorn

    from rotator.sandbox.app import create_app
    from rotator.sandbox.persistence import load_state
    from rotator.sandbox.server import uvicorn_config
    from rotator.sandbox.state import SandboxState, Settings

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
