"""The sandbox's fake Adobe, as a plain in-memory model with no HTTP in it.

:class:`SandboxState` is a thin facade over one shared core and a class per concern:

* :class:`~rotator.devkit.sandbox.world.World`: the data, the lock and the clock;
* :class:`~rotator.devkit.sandbox.ims.Ims`: tokens, the JWT exchange, tokens invalidated;
* :class:`~rotator.devkit.sandbox.secrets_api.SecretsApi`: list, add and delete secrets
  (usages, the two-secret limit, the eventual-consistency switches);
* :class:`~rotator.devkit.sandbox.admin.Admin` and
  :class:`~rotator.devkit.sandbox.admin_views.AdminViews`: orgs, credentials, the clock and
  the other test controls, and what the admin API shows;
* ``model.py``: settings, records and the replies Adobe gives (the choices the sandbox
  makes where Adobe documents nothing are listed there); ``document.py``: save and load.

The facade keeps one flat API (``state.add_secret(...)``, ``state.create_credential(...)``)
for the HTTP layer and for tests; each concern is reachable as well (``state.ims``, ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rotator.devkit.sandbox.admin import Admin
from rotator.devkit.sandbox.admin_views import AdminViews
from rotator.devkit.sandbox.document import dump_world, load_world
from rotator.devkit.sandbox.faults import FaultPlan
from rotator.devkit.sandbox.ims import Ims
from rotator.devkit.sandbox.model import (
    CLIENT_CREDENTIALS,
    DEFAULT_META_SCOPES,
    JSON,
    JWT_BEARER,
    MANAGEMENT_SCOPES,
    PRODUCTION_IMS,
    Credential,
    Org,
    Reply,
    Secret,
    Settings,
    fault_reply,
    format_ms,
    gateway_error,
    ims_error,
)
from rotator.devkit.sandbox.oracle import Oracle, UseSource
from rotator.devkit.sandbox.secrets_api import SecretsApi
from rotator.devkit.sandbox.world import World

__all__ = [
    "CLIENT_CREDENTIALS",
    "DEFAULT_META_SCOPES",
    "JWT_BEARER",
    "MANAGEMENT_SCOPES",
    "PRODUCTION_IMS",
    "Reply",
    "SandboxState",
    "Settings",
    "fault_reply",
    "format_ms",
    "gateway_error",
    "ims_error",
]


class SandboxState:
    """Orgs, credentials, secrets and tokens behind one lock, with the run's :class:`FaultPlan`."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.world = World(settings, clock=clock)
        self.ims = Ims(self.world)
        self.secrets_api = SecretsApi(self.world)
        self.admin = Admin(self.world, self.ims)
        self.views = AdminViews(self.world)

    # ------------------------------------------------------------------ the core

    @property
    def faults(self) -> FaultPlan:
        """Faults, holds and counters: about the test run, not about Adobe (``faults.py``)."""
        return self.world.faults

    @property
    def oracle(self) -> Oracle:
        """The truth behind the answers: every use and deletion (``oracle.py``)."""
        return self.world.oracle

    @property
    def settings(self) -> Settings:
        return self.world.settings

    @property
    def revision(self) -> int:
        """Counts durable changes, so the autosave knows when to write."""
        return self.world.revision

    @property
    def clock_offset_s(self) -> float:
        return self.world.clock_offset_s

    def now_ms(self) -> int:
        return self.world.now_ms()

    # ------------------------------------------------------------------ IMS

    def mint_client_credentials(
        self,
        form: Mapping[str, str],
        basic: tuple[str, str] | None = None,
        *,
        source: UseSource = "http",
    ) -> Reply:
        return self.ims.mint_client_credentials(form, basic, source=source)

    def exchange_jwt(self, form: Mapping[str, str], ims_bases: Iterable[str]) -> Reply:
        return self.ims.exchange_jwt(form, ims_bases)

    def revoke(self, form: Mapping[str, str], basic: tuple[str, str] | None = None) -> Reply:
        return self.ims.revoke(form, basic)

    def invalidate_token(
        self, form: Mapping[str, str], basic: tuple[str, str] | None = None
    ) -> Reply:
        return self.ims.invalidate_token(form, basic)

    def logout(self, params: Mapping[str, str]) -> Reply:
        return self.ims.logout(params)

    # ------------------------------------------------------------------ I/O Management API

    def list_secrets(
        self, org_id: str, credential_id: str, api_key: str | None, authorization: str | None
    ) -> Reply:
        return self.secrets_api.list_secrets(org_id, credential_id, api_key, authorization)

    def add_secret(
        self, org_id: str, credential_id: str, api_key: str | None, authorization: str | None
    ) -> Reply:
        return self.secrets_api.add_secret(org_id, credential_id, api_key, authorization)

    def delete_secret(
        self,
        org_id: str,
        credential_id: str,
        uuid: str,
        api_key: str | None,
        authorization: str | None,
    ) -> Reply:
        return self.secrets_api.delete_secret(org_id, credential_id, uuid, api_key, authorization)

    # ------------------------------------------------------------------ admin: controls

    def reset(self) -> None:
        self.admin.reset()

    def configure(self, **changes: Any) -> Settings:
        return self.admin.configure(**changes)

    def set_clock_offset(self, offset_s: float) -> None:
        self.admin.set_clock_offset(offset_s)

    def advance_clock(self, seconds: float) -> None:
        self.admin.advance_clock(seconds)

    def create_org(self, org_id: str | None = None) -> Org:
        return self.admin.create_org(org_id)

    def create_credential(
        self,
        *,
        org_id: str | None = None,
        name: str | None = None,
        scopes: Iterable[str] | None = None,
        meta_scopes: Iterable[str] | None = None,
        public_keys: Iterable[str] = (),
        with_secret: bool = True,
    ) -> tuple[Credential, Secret | None]:
        return self.admin.create_credential(
            org_id=org_id,
            name=name,
            scopes=scopes,
            meta_scopes=meta_scopes,
            public_keys=public_keys,
            with_secret=with_secret,
        )

    def admin_add_secret(self, credential_id: str) -> Secret:
        return self.admin.admin_add_secret(credential_id)

    def admin_delete_secret(self, credential_id: str, uuid: str) -> None:
        self.admin.admin_delete_secret(credential_id, uuid)

    def add_public_key(self, credential_id: str, pem: str) -> None:
        self.admin.add_public_key(credential_id, pem)

    def set_secret_times(
        self,
        credential_id: str,
        uuid: str,
        *,
        created_at: int | None = None,
        last_used_at: int | None = None,
        never_used: bool = False,
        grant_type: str = CLIENT_CREDENTIALS,
    ) -> None:
        self.admin.set_secret_times(
            credential_id,
            uuid,
            created_at=created_at,
            last_used_at=last_used_at,
            never_used=never_used,
            grant_type=grant_type,
        )

    def consume(self, credential_id: str, uuid: str, scope: str | None = None) -> Reply:
        return self.admin.consume(credential_id, uuid, scope)

    # ------------------------------------------------------------------ admin: views

    def credential_view(self, credential_id: str) -> JSON:
        return self.views.credential_view(credential_id)

    def snapshot(self) -> JSON:
        return self.views.snapshot()

    def reveal_secrets(self, credential_id: str) -> dict[str, str]:
        return self.views.reveal_secrets(credential_id)

    def all_secret_values(self) -> list[JSON]:
        return self.views.all_secret_values()

    def all_token_values(self) -> list[str]:
        return self.views.all_token_values()

    def tokens(self, client_id: str | None = None) -> list[JSON]:
        return self.views.tokens(client_id)

    def introspect(self, value: str) -> JSON:
        return self.views.introspect(value)

    # ------------------------------------------------------------------ persistence

    def to_document(self) -> JSON:
        """The durable part of the world (secret values included) as JSON-ready data."""
        return dump_world(self.world)

    def load_document(self, document: Mapping[str, Any]) -> None:
        """Replace the world with a saved one (see :meth:`to_document`)."""
        load_world(self.world, document)
