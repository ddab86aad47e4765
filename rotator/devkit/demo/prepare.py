"""The demo's world before it rotates: a sandbox credential, its AWS secret, the audit key,
the config file the demo then runs on, the app, and the consumer started."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from rotator.devkit.demo.constants import (
    AWS_NAME,
    CREDENTIAL,
    MAX_DRAIN,
    POLL_INTERVAL,
    TOKEN_LIFETIME_S,
    VERIFY_TIMEOUT,
)
from rotator.devkit.demo.consumer import Consumer
from rotator.devkit.demo.context import DemoContext

if TYPE_CHECKING:
    from rotator.app import App
    from rotator.devkit.sandbox.client import SandboxAdmin

__all__ = ["set_up"]


def set_up(
    ctx: DemoContext, sandbox_url: str, aws_url: str, admin: SandboxAdmin
) -> tuple[App, Consumer]:
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
    ctx.out.line(
        f"created credential {cred.credential_id} (client id {cred.client_id}) with "
        f"secret {cred.secret.uuid}, and AWS secret {AWS_NAME} holding "
        f'{{"client_secret", "secret_uuid"}}'
    )
    # The audit chain's signing key, kept outside the database (here: a file of its
    # own), and the public keyring that verifies it. One key plays operator and daemon.
    from rotator.audit import keys

    public = keys.generate_signing_key(ctx.audit_key)
    ctx.keyring.write_text(keys.keyring_entry("demo-1", public, ("daemon", "operator")), "utf-8")
    ctx.config_path.write_text(_config_text(ctx, sandbox_url, aws_url, cred), "utf-8")
    settings = config.load(ctx.config_path)  # the demo runs on exactly the file it wrote
    app = app_mod.build(settings, upgrade=True, verified_identity=True)
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
    ctx.out.line(
        f"consumer started: reads AWSCURRENT whenever its token expires "
        f"(every {TOKEN_LIFETIME_S}s here, about 24h at Adobe) and mints a new one"
    )
    return app, consumer


def _config_text(ctx: DemoContext, sandbox_url: str, aws_url: str, cred: Any) -> str:
    q = json.dumps  # a JSON string is a valid TOML basic string
    return f"""\
# Written by `rotator demo`. It points at the demo's own servers on 127.0.0.1, which stop
# when the demo exits (`rotator demo --keep-running` keeps them). Without them, the
# commands that only read the state database still work with this file: history, status
# and audit verify. See config.example.toml for every key.

[database]
url = {q(f"sqlite:///{ctx.db_path}")}

[adobe]  # the Adobe sandbox: IMS and the I/O Management API on one port
ims_url = {q(sandbox_url)}
api_url = {q(sandbox_url)}

[aws]  # moto's server standing in for AWS Secrets Manager
region = "us-east-1"
endpoint_url = {q(aws_url)}

[defaults]  # shortened for the demo; in production quiet_period is 25h, poll_interval 15m
quiet_period = {q(ctx.quiet)}
poll_interval = {q(POLL_INTERVAL)}
verify_timeout = {q(VERIFY_TIMEOUT)}
max_drain = {q(MAX_DRAIN)}

[daemon]
lease = "30s"

[audit]  # events are signed (Ed25519); checkpoints of the chain head go to a file as well
signing_key = {q(str(ctx.audit_key))}
keyring = {q(str(ctx.keyring))}
checkpoint_file = {q(str(ctx.checkpoints))}

[[credentials]]
name = {q(CREDENTIAL)}
org_id = {q(cred.org_id)}
credential_id = {q(cred.credential_id)}
client_id = {q(cred.client_id)}
secret_id = {q(AWS_NAME)}
"""
