"""The I/O Management API: list, add and delete a credential's client secrets.

``GET|POST /console/organizations/{org}/credentials/{credential}/secrets`` and ``DELETE
.../secrets/{uuid}``, behind the gateway's checks (API key, bearer token, scope), with the
two-secret limit and the eventual-consistency switches (``consistency.py``) applied to the
answers while the oracle notes what each answer showed and what it hid.
"""

from __future__ import annotations

from collections.abc import Mapping

from rotator.devkit.sandbox.model import (
    API_KEY_INVALID,
    API_KEY_REQUIRED,
    CREDENTIAL_NOT_FOUND,
    JSON,
    MANAGE_SCOPE,
    READ_SCOPE,
    SCOPE_MISSING,
    SECRET_NOT_FOUND,
    TOKEN_INVALID,
    Credential,
    Reply,
    Secret,
    format_ms,
    gateway_error,
)
from rotator.devkit.sandbox.world import World

__all__ = ["SecretsApi"]


class SecretsApi:
    """The secrets endpoints over the shared :class:`World`."""

    def __init__(self, world: World) -> None:
        self._world = world

    def _gate(
        self,
        org_id: str,
        credential_id: str,
        api_key: str | None,
        authorization: str | None,
        scope: str,
    ) -> Credential | Reply:
        """The gateway's checks, then the service's, in the order Adobe's stack makes them."""
        if not api_key:
            return API_KEY_REQUIRED
        if api_key not in self._world.by_client_id:
            return API_KEY_INVALID
        scheme, _, value = (authorization or "").partition(" ")
        token = self._world.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None or token.status(self._world.now_ms()) != "active":
            return TOKEN_INVALID
        if token.client_id != api_key:
            return API_KEY_INVALID
        credential = self._world.credentials.get(credential_id)
        if credential is None or credential.org_id != org_id:
            return CREDENTIAL_NOT_FOUND
        if credential.client_id != api_key:
            return API_KEY_INVALID
        if scope not in token.scopes:
            return SCOPE_MISSING
        return credential

    @staticmethod
    def _entry(secret: Secret, shown: Mapping[str, int] | None = None) -> JSON:
        """A list entry; ``shown`` replaces the usages Adobe would show (a distorted answer)."""
        usages_by_grant = secret.usages if shown is None else shown
        usages = (
            [
                {"last_used_at": str(at), "grant_type": g}
                for g, at in sorted(usages_by_grant.items())
            ]
            if usages_by_grant
            else None
        )
        return {
            "uuid": secret.uuid,
            "created_at": str(secret.created_at),
            "created_at_str": format_ms(secret.created_at),
            "expires_at": "PERMANENT",
            "expires_at_str": "PERMANENT",
            "secret_usages": usages,
        }

    def list_secrets(
        self, org_id: str, credential_id: str, api_key: str | None, authorization: str | None
    ) -> Reply:
        """``GET .../secrets``: oldest first, no values, usages only once visible.

        The consistency switches may leave a secret out or show its usages as null or
        stale; the oracle notes what each answer showed and what it hid.
        """
        with self._world.lock:
            credential = self._gate(org_id, credential_id, api_key, authorization, READ_SCOPE)
            if isinstance(credential, Reply):
                return credential
            now = self._world.now_ms()
            switches = self._world.faults.consistency
            ordered = sorted(
                self._world.ordered(credential) + self._ghosts(credential),
                key=lambda s: (s.created_at, s.uuid),
            )
            left_out = switches.omissions(credential.client_id, [s.uuid for s in ordered])
            entries = []
            for secret in ordered:
                secret.settle(now)
                if secret.uuid in left_out:
                    self._world.oracle.hidden(credential.credential_id, secret.uuid, "omitted")
                    continue
                shown = self._shown_usages(credential, secret, now)
                entries.append(self._entry(secret, shown))
                last = max(shown.values()) if shown else None
                self._world.oracle.reported(credential.credential_id, secret.uuid, last)
            return Reply(200, {"client_id": credential.client_id, "client_secrets": entries})

    def _ghosts(self, credential: Credential) -> list[Secret]:
        """Deleted secrets this answer still lists (each answer counts one down)."""
        ghosts = self._world.lingering.get(credential.credential_id, [])
        listed = []
        for secret, left in ghosts:
            left[0] -= 1
            listed.append(secret)
            self._world.oracle.hidden(credential.credential_id, secret.uuid, "lingering")
        self._world.lingering[credential.credential_id] = [(s, n) for s, n in ghosts if n[0] > 0]
        return listed

    def _shown_usages(self, credential: Credential, secret: Secret, now: int) -> dict[str, int]:
        """The usages this answer shows: the visible ones, unless a regression fires."""
        rule = self._world.faults.consistency.distortion(credential.client_id, secret.uuid)
        if rule is None:
            return dict(secret.usages)
        shown = {} if rule.mode == "null" else secret.usages_as_of(now - rule.stale_ms)
        if shown != secret.usages:
            how = "null" if not shown and secret.usages else "stale"
            self._world.oracle.hidden(credential.credential_id, secret.uuid, how)
        return shown

    def add_secret(
        self, org_id: str, credential_id: str, api_key: str | None, authorization: str | None
    ) -> Reply:
        """``POST .../secrets``: the only answer that ever carries the plaintext."""
        with self._world.lock:
            credential = self._gate(org_id, credential_id, api_key, authorization, MANAGE_SCOPE)
            if isinstance(credential, Reply):
                return credential
            limit = self._world.settings.secret_limit
            if len(credential.secrets) >= limit:
                return gateway_error(
                    self._world.settings.secret_limit_status,
                    "400003",
                    f"Maximum number of client secrets ({limit}) reached for this credential",
                )
            switches = self._world.faults.consistency
            delay = switches.accept_delay_ms(credential.client_id) or 0
            secret = self._world.new_secret(credential, accept_delay_ms=delay, by="api")
            self._world.touch()
            status = switches.add_status(credential.client_id) or self._world.settings.add_status
            return Reply(status, {**self._entry(secret), "client_secret": secret.value})

    def delete_secret(
        self,
        org_id: str,
        credential_id: str,
        uuid: str,
        api_key: str | None,
        authorization: str | None,
    ) -> Reply:
        """``DELETE .../secrets/{uuid}``: tokens minted with the secret stay valid."""
        with self._world.lock:
            credential = self._gate(org_id, credential_id, api_key, authorization, MANAGE_SCOPE)
            if isinstance(credential, Reply):
                return credential
            secret = credential.secrets.get(uuid)
            if secret is None:
                return SECRET_NOT_FOUND
            if len(credential.secrets) == 1 and not self._world.settings.allow_delete_last_secret:
                return gateway_error(400, "400004", "The last client secret cannot be deleted")
            self._world.retire(credential, secret, by="api")
            self._world.touch()
            return Reply(self._world.settings.delete_status)
