"""What the admin API shows of the world: credentials, tokens, and values for leak scans.

No secret or token value appears in a view except through the calls named for it
(:meth:`AdminViews.reveal_secrets`, :meth:`AdminViews.all_secret_values`,
:meth:`AdminViews.all_token_values`).
"""

from __future__ import annotations

from dataclasses import asdict
from hashlib import sha256

from rotator.devkit.sandbox.model import JSON, Credential, Token
from rotator.devkit.sandbox.world import World

__all__ = ["AdminViews"]


class AdminViews:
    """Read-only pictures of the shared :class:`World`, each taken under its lock."""

    def __init__(self, world: World) -> None:
        self._world = world

    def credential_view(self, credential_id: str) -> JSON:
        """Everything about a credential except secret values and token values."""
        with self._world.lock:
            return self._credential_view(
                self._world.credential(credential_id), self._world.now_ms()
            )

    def _credential_view(self, credential: Credential, now: int) -> JSON:
        secrets_view = []
        for secret in self._world.ordered(credential):
            secret.settle(now)
            secrets_view.append(
                {
                    "uuid": secret.uuid,
                    "created_at": secret.created_at,
                    "accepted_at": secret.accepted_at,
                    "last_used_at": secret.last_used_at(),
                    "usages": dict(secret.usages),
                    "pending_uses": len(secret.pending),
                }
            )
        return {
            "credential_id": credential.credential_id,
            "org_id": credential.org_id,
            "ims_org_id": self._world.orgs[credential.org_id].ims_org_id,
            "client_id": credential.client_id,
            "name": credential.name,
            "technical_account_id": credential.technical_account_id,
            "scopes": list(credential.scopes),
            "meta_scopes": list(credential.meta_scopes),
            "public_keys": len(credential.public_keys),
            "secrets": secrets_view,
        }

    def snapshot(self) -> JSON:
        """The admin's picture of the world: no secret or token values in it."""
        with self._world.lock:
            now = self._world.now_ms()
            statuses: dict[str, int] = {"active": 0, "revoked": 0, "expired": 0}
            for token in self._world.tokens.values():
                statuses[token.status(now)] += 1
            return {
                "now": now,
                "clock_offset_s": self._world.clock_offset_s,
                "settings": asdict(self._world.settings),
                "orgs": [
                    {
                        "org_id": org.org_id,
                        "ims_org_id": org.ims_org_id,
                        "credentials": [
                            c.credential_id
                            for c in self._world.credentials.values()
                            if c.org_id == org.org_id
                        ],
                    }
                    for org in self._world.orgs.values()
                ],
                "credentials": [
                    self._credential_view(c, now) for c in self._world.credentials.values()
                ],
                "tokens": statuses,
            }

    def reveal_secrets(self, credential_id: str) -> dict[str, str]:
        """Plaintext of a credential's live secrets: only ever through this explicit call."""
        with self._world.lock:
            credential = self._world.credential(credential_id)
            return {s.uuid: s.value for s in self._world.ordered(credential)}

    def all_secret_values(self) -> list[JSON]:
        """Every secret value ever issued, deleted ones included, for leak scans."""
        with self._world.lock:
            live = [
                {
                    "credential_id": c.credential_id,
                    "uuid": s.uuid,
                    "client_secret": s.value,
                    "deleted": False,
                }
                for c in self._world.credentials.values()
                for s in c.secrets.values()
            ]
            gone = [
                {
                    "credential_id": r.credential_id,
                    "uuid": r.uuid,
                    "client_secret": r.value,
                    "deleted": True,
                }
                for r in self._world.retired
            ]
            return live + gone

    def all_token_values(self) -> list[str]:
        """Every access token minted since the last reset, for leak scans."""
        with self._world.lock:
            return list(self._world.tokens)

    def tokens(self, client_id: str | None = None) -> list[JSON]:
        """Token metadata (a fingerprint, never the value), e.g. to see which were revoked."""
        with self._world.lock:
            now = self._world.now_ms()
            return [
                self._token_view(value, token, now)
                for value, token in self._world.tokens.items()
                if client_id is None or token.client_id == client_id
            ]

    def introspect(self, value: str) -> JSON:
        """Status of one token: active, revoked, expired or unknown."""
        with self._world.lock:
            token = self._world.tokens.get(value)
            if token is None:
                return {"status": "unknown"}
            return self._token_view(value, token, self._world.now_ms())

    @staticmethod
    def _token_view(value: str, token: Token, now: int) -> JSON:
        return {
            "fingerprint": sha256(value.encode()).hexdigest()[:16],
            "status": token.status(now),
            "client_id": token.client_id,
            "credential_id": token.credential_id,
            "secret_uuid": token.secret_uuid,
            "grant_type": token.grant_type,
            "scopes": sorted(token.scopes),
            "issued_at": token.issued_at,
            "expires_at": token.expires_at,
            "revoked_at": token.revoked_at,
        }
