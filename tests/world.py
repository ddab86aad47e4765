"""A rotator wired to the real sandbox, moto's server and a real database, for one test.

Integration, reliability and benchmark code share it, so a scenario reads as a story:
make a credential, rotate it, look at Adobe's list and every AWS label.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3

from rotator import app as app_mod
from rotator import config
from rotator.app import App
from rotator.cli import follow
from rotator.devkit.localaws import LocalAws
from rotator.devkit.sandbox.client import CreatedCredential, SandboxAdmin
from rotator.devkit.sandbox.server import SandboxServer
from rotator.domain.model import Rotation, Trigger

FAST = {"quiet_period": "1s", "poll_interval": "200ms", "verify_timeout": "3s", "max_drain": "1h"}


@dataclass
class World:
    sandbox: SandboxServer
    aws: LocalAws
    db_url: str
    defaults: dict[str, Any] = field(default_factory=lambda: dict(FAST))
    creds: dict[str, CreatedCredential] = field(default_factory=dict)
    secret_ids: dict[str, str] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)  # [audit] (signing_key, keyring)
    notifications: dict[str, Any] = field(default_factory=dict)
    _app: App | None = None

    @property
    def admin(self) -> SandboxAdmin:
        return self.sandbox.admin

    @property
    def sm(self) -> Any:
        return boto3.client(
            "secretsmanager", region_name="us-east-1", endpoint_url=self.aws.endpoint_url
        )

    def credential(
        self,
        name: str = "analytics",
        *,
        record_uuid: bool = True,
        aws_value: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> CreatedCredential:
        """A sandbox credential with its first secret, published to a fresh AWS secret."""
        cred = self.admin.create_credential()
        assert cred.secret is not None
        secret_id = f"adobe/{name}-{uuid.uuid4().hex[:8]}"
        value = (
            aws_value
            if aws_value is not None
            else {"client_secret": cred.secret.client_secret, "consumer_setting": "kept"}
        )
        if record_uuid and aws_value is None:
            value["secret_uuid"] = cred.secret.uuid
        self.sm.create_secret(Name=secret_id, SecretString=json.dumps(value))
        self.creds[name], self.secret_ids[name] = cred, secret_id
        self.extra[name] = overrides
        self._app = None
        return cred

    def settings(self) -> config.Settings:
        return config.from_mapping(
            {
                "database": {"url": self.db_url},
                "adobe": {"ims_url": self.sandbox.url, "api_url": self.sandbox.url},
                "aws": {"endpoint_url": self.aws.endpoint_url, "region": "us-east-1"},
                "defaults": self.defaults,
                "daemon": {"lease": "30s"},
                "audit": self.audit,
                "notifications": self.notifications,
                "credentials": [
                    {
                        "name": n,
                        "org_id": c.org_id,
                        "credential_id": c.credential_id,
                        "client_id": c.client_id,
                        "secret_id": self.secret_ids[n],
                        **self.extra[n],
                    }
                    for n, c in self.creds.items()
                ],
            },
            source="test.toml",
        )

    @property
    def app(self) -> App:
        if self._app is None:
            self._app = app_mod.build(self.settings(), upgrade=True)
        return self._app

    def fresh_app(self, **kwargs: Any) -> App:
        """A second process's view: new adapters, new token cache, same database."""
        return app_mod.build(self.settings(), upgrade=True, **kwargs)

    def rotate(
        self,
        name: str = "analytics",
        *,
        emergency: bool = False,
        wait: bool = True,
        app: App | None = None,
        timeout: float = 30,
    ) -> Rotation:
        import time

        app = app or self.app
        trigger = Trigger.EMERGENCY if emergency else Trigger.MANUAL
        rotation = app.engine.request(name, trigger, actor="test")
        return follow(
            app,
            rotation,
            wait=wait,
            show=lambda r: None,
            poll=0.05,
            deadline=time.monotonic() + timeout,
        )

    def adopt(self, name: str = "analytics") -> None:
        """`rotator adopt`: record the credential's first secret as AWSCURRENT's (as after
        its first rotation), so a delete that needs to know it (an orphan) may happen."""
        cred = self.creds[name]
        assert cred.secret is not None
        app = self.fresh_app()
        try:
            app.engine.adopt(name, cred.secret.uuid, actor="test")
        finally:
            app.close()

    # --- what the world looks like -----------------------------------------------------

    def adobe_uuids(self, name: str = "analytics") -> list[str]:
        return [s["uuid"] for s in self.admin.secrets(self.creds[name].credential_id)]

    def labels(self, name: str = "analytics") -> dict[str, list[str]]:
        """version id -> labels, for versions that have any."""
        stages = self.sm.describe_secret(SecretId=self.secret_ids[name])["VersionIdsToStages"]
        return {v: sorted(labels) for v, labels in stages.items() if labels}

    def value(self, name: str = "analytics", stage: str = "AWSCURRENT") -> dict[str, Any]:
        answer = self.sm.get_secret_value(SecretId=self.secret_ids[name], VersionStage=stage)
        return dict(json.loads(answer["SecretString"]))

    def works(self, name: str = "analytics", stage: str = "AWSCURRENT") -> bool:
        """I1: does the value under `stage` mint a token at Adobe (as a consumer would)?"""
        uuid_ = self.value(name, stage).get("secret_uuid") or self.current_uuid_by_value(
            name, stage
        )
        response = self.admin.consume(self.creds[name].credential_id, uuid_)
        return response.status_code == 200

    def current_uuid_by_value(self, name: str, stage: str) -> str:
        secret = self.value(name, stage)["client_secret"]
        values = self.admin.reveal_secrets(self.creds[name].credential_id)
        return next(u for u, v in values.items() if v == secret)

    def assert_i4(self, name: str = "analytics") -> None:
        """After a completed normal rotation: one secret at Adobe, AWSCURRENT holds it,
        AWSPREVIOUS holds the old value, and nothing carries AWSPENDING."""
        uuids = self.adobe_uuids(name)
        assert len(uuids) == 1, uuids
        current = self.value(name)
        assert current["secret_uuid"] == uuids[0]
        assert (
            self.admin.reveal_secrets(self.creds[name].credential_id)[uuids[0]]
            == current["client_secret"]
        )
        labels = self.labels(name)
        assert not any("AWSPENDING" in ls for ls in labels.values()), labels
        assert sorted(ls[0] for ls in labels.values() if len(ls) == 1) == [
            "AWSCURRENT",
            "AWSPREVIOUS",
        ], labels
        assert current.get("consumer_setting", "kept") == "kept"  # unknown keys are kept

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
