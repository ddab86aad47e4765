"""IMS: access tokens for a client secret or a JWT, and tokens invalidated.

``POST /ims/token/v3`` (client credentials), ``POST /ims/exchange/jwt`` (the legacy
Service Account flow), ``POST /ims/revoke``, ``POST /ims/invalidate_token/v2`` and
``/ims/logout/v1/token``, each answering with the :class:`Reply` Adobe's IMS would.
"""

from __future__ import annotations

import hmac
import json
import secrets
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from typing import Any

from rotator.devkit.sandbox.model import (
    CLIENT_CREDENTIALS,
    INVALID_CLIENT_ID,
    INVALID_CLIENT_SECRET,
    JWT_BEARER,
    JWT_MAX_LIFETIME_MS,
    Credential,
    Reply,
    Secret,
    Token,
    ims_error,
)
from rotator.devkit.sandbox.oracle import UseSource
from rotator.devkit.sandbox.rs256 import JWTError, b64url_encode, load_public_key, verify_rs256
from rotator.devkit.sandbox.world import World

__all__ = ["Ims"]


class Ims:
    """Adobe IMS over the shared :class:`World`: who a client is, and the tokens it holds."""

    def __init__(self, world: World) -> None:
        self._world = world

    def _authenticate(
        self,
        client_id: str | None,
        client_secret: str | None,
        now: int,
        source: UseSource = "http",
    ) -> tuple[Credential, Secret] | Reply:
        credential = self._world.by_client_id.get(client_id or "")
        if credential is None:
            return INVALID_CLIENT_ID
        offered = (client_secret or "").encode()
        for secret in credential.secrets.values():
            if hmac.compare_digest(secret.value.encode(), offered):
                if secret.accepted_at <= now:
                    return credential, secret
                self._world.oracle.refused(secret.value, now, "not accepted yet", source)
                return INVALID_CLIENT_SECRET
        if client_secret:
            self._world.oracle.refused(client_secret, now, "no such secret", source)
        return INVALID_CLIENT_SECRET

    def _mint(
        self,
        credential: Credential,
        secret: Secret,
        grant_type: str,
        scopes: frozenset[str],
        now: int,
        source: UseSource = "http",
    ) -> Reply:
        lifetime_ms = self._world.settings.token_lifetime_s * 1000
        value = self._token_value(credential.client_id, scopes, now, lifetime_ms)
        self._world.tokens[value] = Token(
            client_id=credential.client_id,
            credential_id=credential.credential_id,
            secret_uuid=secret.uuid,
            grant_type=grant_type,
            scopes=scopes,
            issued_at=now,
            expires_at=now + lifetime_ms,
        )
        visible_at = now + self._world.faults.consistency.usage_lag_ms(credential.client_id)
        secret.pending.append((visible_at, now, grant_type))
        secret.history.append((visible_at, now, grant_type))
        secret.settle(now)
        self._world.oracle.used(credential.credential_id, secret.uuid, now, source)
        self._world.mints += 1
        if self._world.mints % 4096 == 0:
            self._prune_tokens(now)
        self._world.touch()
        return Reply(
            200,
            {
                "access_token": value,
                "token_type": "bearer",
                "expires_in": self._world.settings.token_lifetime_s,
            },
        )

    @staticmethod
    def _token_value(client_id: str, scopes: frozenset[str], now: int, lifetime_ms: int) -> str:
        # Shaped like Adobe's (a JWT whose payload carries these fields) so log redactors see
        # realistic input; the signature part is random, which also makes every value unique.
        header = b64url_encode(b'{"alg":"RS256","x5u":"ims_na1-key-at-1.cer","typ":"JWT"}')
        payload = json.dumps(
            {
                "id": uuidlib.uuid4().hex,
                "type": "access_token",
                "client_id": client_id,
                "as": "ims-na1",
                "created_at": str(now),
                "expires_in": str(lifetime_ms),
                "scope": ",".join(sorted(scopes)),
            },
            separators=(",", ":"),
        )
        return (
            f"{header}.{b64url_encode(payload.encode())}.{b64url_encode(secrets.token_bytes(32))}"
        )

    def _prune_tokens(self, now: int) -> None:
        # Long benchmarks mint many tokens; those expired a day ago can never matter again.
        cutoff = now - 86_400_000
        for value in [v for v, t in self._world.tokens.items() if t.expires_at < cutoff]:
            del self._world.tokens[value]

    @staticmethod
    def _parse_scopes(raw: str | None) -> frozenset[str]:
        if not raw:
            return frozenset()
        return frozenset(s for s in raw.replace(",", " ").split() if s)

    def mint_client_credentials(
        self,
        form: Mapping[str, str],
        basic: tuple[str, str] | None = None,
        *,
        source: UseSource = "http",
    ) -> Reply:
        """``POST /ims/token/v3``: client_secret_post (form) or client_secret_basic.

        ``source`` tells the oracle who asked (a test's consumer passes ``"consumer"``).
        """
        with self._world.lock:
            if form.get("grant_type") != CLIENT_CREDENTIALS:
                return ims_error("unsupported_grant_type", "unsupported grant_type parameter")
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            if basic is not None:
                if client_id is not None and client_id != basic[0]:
                    return ims_error("invalid_request", "client_id does not match authorization")
                client_id, client_secret = basic
            now = self._world.now_ms()
            found = self._authenticate(client_id, client_secret, now, source)
            if isinstance(found, Reply):
                return found
            credential, secret = found
            scopes = self._parse_scopes(form.get("scope"))
            unknown = sorted(scopes - set(credential.scopes))
            if unknown:
                return ims_error("invalid_scope", f"invalid scope parameter: {','.join(unknown)}")
            return self._mint(credential, secret, CLIENT_CREDENTIALS, scopes, now, source)

    def exchange_jwt(self, form: Mapping[str, str], ims_bases: Iterable[str]) -> Reply:
        """``POST /ims/exchange/jwt``: the legacy Service Account flow.

        ``ims_bases`` are the IMS URLs an ``aud`` may name: the one the client called (the
        sandbox's own URL) and production's, since integrations hard-code the latter.
        """
        with self._world.lock:
            now = self._world.now_ms()
            found = self._authenticate(form.get("client_id"), form.get("client_secret"), now)
            if isinstance(found, Reply):
                return found
            credential, secret = found
            jwt_token = form.get("jwt_token")
            if not jwt_token:
                return ims_error("bad_request", "missing jwt_token parameter")
            keys = [load_public_key(pem) for pem in credential.public_keys]
            try:
                _header, claims = verify_rs256(jwt_token, keys)
            except JWTError as exc:
                return ims_error(exc.error, exc.description)
            bases = [b.rstrip("/") for b in ims_bases]
            refused = self._check_jwt_claims(credential, claims, bases, now)
            if refused is not None:
                return refused
            return self._mint(credential, secret, JWT_BEARER, frozenset(credential.scopes), now)

    def _check_jwt_claims(
        self, credential: Credential, claims: Mapping[str, Any], bases: list[str], now: int
    ) -> Reply | None:
        exp = claims.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool):
            return ims_error("invalid_token", "JWT exp claim is missing or not a number")
        if exp * 1000 <= now:
            return ims_error("invalid_token", "JWT token is expired")
        if exp * 1000 > now + JWT_MAX_LIFETIME_MS:
            return ims_error("invalid_token", "JWT exp claim is more than 24 hours away")
        if claims.get("iss") != self._world.orgs[credential.org_id].ims_org_id:
            return ims_error("invalid_token", "JWT iss claim does not name the organization")
        if claims.get("sub") != credential.technical_account_id:
            return ims_error("invalid_token", "JWT sub claim does not name the technical account")
        if claims.get("aud") not in {f"{b}/c/{credential.client_id}" for b in bases}:
            return ims_error("invalid_token", "JWT aud claim does not name this client")
        granted = set()
        for claim, value in claims.items():
            for base in bases:
                prefix = f"{base}/s/"
                if claim.startswith(prefix) and value is True:
                    granted.add(claim.removeprefix(prefix))
        if not granted:
            return ims_error("invalid_scope", "JWT carries no metascope claim")
        refused = sorted(granted - set(credential.meta_scopes))
        if refused:
            return ims_error("invalid_scope", f"invalid metascope: {','.join(refused)}")
        return None

    def _client_auth(
        self, form: Mapping[str, str], basic: tuple[str, str] | None, now: int
    ) -> Credential | Reply:
        client_id, client_secret = basic or (form.get("client_id"), form.get("client_secret"))
        found = self._authenticate(client_id, client_secret, now)
        return found if isinstance(found, Reply) else found[0]

    def _invalidate(self, credential: Credential, value: str, now: int) -> Reply | None:
        token = self._world.tokens.get(value)
        if token is None:
            return None  # RFC 7009: an unknown token is not an error
        if token.client_id != credential.client_id:
            return ims_error("invalid_request", "token was not issued to this client")
        if token.revoked_at is None:
            token.revoked_at = now
            self._world.touch()
        return None

    def revoke(self, form: Mapping[str, str], basic: tuple[str, str] | None = None) -> Reply:
        """``POST /ims/revoke``: RFC 7009, the client authenticating itself (Basic)."""
        return self._client_invalidates(form, basic, typed=False)

    def invalidate_token(
        self, form: Mapping[str, str], basic: tuple[str, str] | None = None
    ) -> Reply:
        """``POST /ims/invalidate_token/v2`` as Adobe's aio-lib-ims calls it."""
        return self._client_invalidates(form, basic, typed=True)

    def _client_invalidates(
        self, form: Mapping[str, str], basic: tuple[str, str] | None, *, typed: bool
    ) -> Reply:
        """A client invalidating a token of its own; ``typed``: ``token_type`` is checked."""
        with self._world.lock:
            now = self._world.now_ms()
            credential = self._client_auth(form, basic, now)
            if isinstance(credential, Reply):
                return credential
            value = form.get("token")
            if not value:
                return ims_error("invalid_request", "missing token parameter")
            token_type = form.get("token_type", "access_token")
            if typed and token_type not in ("access_token", "refresh_token"):
                return ims_error("invalid_request", "invalid token_type parameter")
            return self._invalidate(credential, value, now) or Reply(200)

    def logout(self, params: Mapping[str, str]) -> Reply:
        """``GET|POST /ims/logout/v1/token``: the token itself is the credential."""
        with self._world.lock:
            value, client_id = params.get("access_token"), params.get("client_id")
            if not value or not client_id:
                return ims_error("invalid_request", "access_token and client_id are required")
            credential = self._world.by_client_id.get(client_id)
            if credential is None:
                return INVALID_CLIENT_ID
            return self._invalidate(credential, value, self._world.now_ms()) or Reply(200, {})
