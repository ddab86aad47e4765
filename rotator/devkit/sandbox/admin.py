"""The sandbox's admin controls: the world a test sets up, and the knobs it turns.

Orgs and credentials made as the Developer Console makes them, secrets added or deleted
without auth, history rewritten ("last used 30 hours ago"), a consumer's use, settings and
the sandbox clock. None of this is Adobe's API: it is what a test or a demo needs around it.
"""

from __future__ import annotations

import copy
import secrets
from collections import deque
from collections.abc import Iterable
from typing import Any

from rotator.devkit.sandbox.ims import Ims
from rotator.devkit.sandbox.model import (
    CLIENT_CREDENTIALS,
    DEFAULT_META_SCOPES,
    HISTORY,
    MANAGEMENT_SCOPES,
    Credential,
    Org,
    Reply,
    Secret,
    Settings,
)
from rotator.devkit.sandbox.rs256 import load_public_key
from rotator.devkit.sandbox.world import World

__all__ = ["Admin"]


class Admin:
    """Lifecycle, world building and test controls over the shared :class:`World`."""

    def __init__(self, world: World, ims: Ims) -> None:
        self._world = world
        self._ims = ims

    def reset(self) -> None:
        """Forget everything (settings back to the server's defaults); free held requests."""
        with self._world.lock:
            self._world.faults.reset()
            self._world.oracle.clear()
            self._world.clear()
            self._world.touch()

    def configure(self, **changes: Any) -> Settings:
        """Change settings for this run; :meth:`reset` returns to the server's defaults."""
        with self._world.lock:
            self._world.settings = self._world.settings.replace(changes)
            return copy.deepcopy(self._world.settings)

    def set_clock_offset(self, offset_s: float) -> None:
        """Shift sandbox time, so a test can expire tokens or age secrets without sleeping."""
        with self._world.lock:
            self._world.clock_offset_s = float(offset_s)
            self._world.touch()

    def advance_clock(self, seconds: float) -> None:
        with self._world.lock:
            self._world.clock_offset_s += float(seconds)
            self._world.touch()

    def create_org(self, org_id: str | None = None) -> Org:
        """The numeric Console org id (given, or the next free one) with an IMS org id."""
        with self._world.lock:
            if org_id is None:
                org_id = str(next(self._world.org_ids))
            elif org_id in self._world.orgs:
                return self._world.orgs[org_id]
            org = Org(org_id, f"{secrets.token_hex(12).upper()}@AdobeOrg")
            self._world.orgs[org_id] = org
            self._world.touch()
            return org

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
        """A new OAuth Server-to-Server credential, with its first secret as the Console makes.

        The first secret is accepted at once (it was not created through the API, so the
        ``accept_delay`` fault does not apply to it).
        """
        keys = list(public_keys)
        for pem in keys:
            load_public_key(pem)  # refuse a bad binding now, not at exchange time
        with self._world.lock:
            org = self.create_org(org_id)
            credential_id = str(next(self._world.credential_ids))
            while credential_id in self._world.credentials:
                credential_id = str(next(self._world.credential_ids))
            credential = Credential(
                credential_id=credential_id,
                org_id=org.org_id,
                client_id=secrets.token_hex(16),
                name=name or f"sandbox-credential-{credential_id}",
                technical_account_id=f"{secrets.token_hex(12).upper()}@techacct.adobe.com",
                scopes=tuple(MANAGEMENT_SCOPES if scopes is None else scopes),
                meta_scopes=tuple(DEFAULT_META_SCOPES if meta_scopes is None else meta_scopes),
                public_keys=keys,
            )
            self._world.credentials[credential_id] = credential
            self._world.by_client_id[credential.client_id] = credential
            first = (
                self._world.new_secret(credential, accept_delay_ms=0, by="console")
                if with_secret
                else None
            )
            self._world.touch()
            return credential, first

    def admin_add_secret(self, credential_id: str) -> Secret:
        """Add a secret as a person in the Console would: no auth, limit still enforced."""
        with self._world.lock:
            credential = self._world.credential(credential_id)
            if len(credential.secrets) >= self._world.settings.secret_limit:
                raise OverflowError("the credential already has the maximum number of secrets")
            secret = self._world.new_secret(credential, accept_delay_ms=0, by="console")
            self._world.touch()
            return secret

    def admin_delete_secret(self, credential_id: str, uuid: str) -> None:
        with self._world.lock:
            credential = self._world.credential(credential_id)
            self._world.retire(credential, self._world.secret(credential, uuid), by="admin")
            self._world.touch()

    def add_public_key(self, credential_id: str, pem: str) -> None:
        load_public_key(pem)
        with self._world.lock:
            self._world.credential(credential_id).public_keys.append(pem)
            self._world.touch()

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
        """Rewrite history ("last used 30 hours ago"); pending lagged uses are discarded."""
        with self._world.lock:
            secret = self._world.secret(self._world.credential(credential_id), uuid)
            if created_at is not None:
                secret.created_at = created_at
                secret.accepted_at = min(secret.accepted_at, created_at)
            if never_used:
                secret.usages.clear()
                secret.pending.clear()
                secret.history.clear()
            if last_used_at is not None:
                secret.pending.clear()
                secret.usages = {grant_type: last_used_at}
                secret.history = deque([(last_used_at, last_used_at, grant_type)], maxlen=HISTORY)
            self._world.touch()

    def consume(self, credential_id: str, uuid: str, scope: str | None = None) -> Reply:
        """Mint a token with one secret, as a consumer would, without knowing its value.

        The oracle records the use (or the refusal) as a consumer's.
        """
        with self._world.lock:
            credential = self._world.credential(credential_id)
            secret = self._world.secret(credential, uuid)
            form = {
                "grant_type": CLIENT_CREDENTIALS,
                "client_id": credential.client_id,
                "client_secret": secret.value,
            }
            if scope is not None:
                form["scope"] = scope
            return self._ims.mint_client_credentials(form, source="consumer")
