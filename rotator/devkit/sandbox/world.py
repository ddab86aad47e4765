"""The shared core of the sandbox's fake Adobe: its data, its lock and its clock.

IMS (``ims.py``), the I/O Management API (``secrets_api.py``) and the admin controls
(``admin.py``, ``admin_views.py``) are separate classes over one :class:`World`, so each
reads as one concern while all of them change the same orgs, credentials, secrets and
tokens under the same lock. One lock guards the model: handlers are short, and the same
object is read by tests from other threads (``SandboxServer.state``).
"""

from __future__ import annotations

import copy
import itertools
import secrets
import threading
import uuid as uuidlib
from collections.abc import Callable

from rotator.devkit.sandbox.faults import FaultPlan
from rotator.devkit.sandbox.model import Credential, Org, RetiredSecret, Secret, Settings, Token
from rotator.devkit.sandbox.oracle import Oracle

__all__ = ["World"]


class World:
    """Orgs, credentials, secrets and tokens behind one lock, with the run's :class:`FaultPlan`."""

    def __init__(self, settings: Settings | None = None, *, clock: Callable[[], float]) -> None:
        self.lock = threading.RLock()
        self._clock = clock
        self.defaults = copy.deepcopy(settings or Settings())
        self.defaults.validate()
        self.revision = 0
        #: Faults, holds and counters: about the test run, not about Adobe (``faults.py``).
        self.faults = FaultPlan()
        #: The truth behind the answers: every use and deletion (``oracle.py``).
        self.oracle = Oracle()
        self.clear()

    def clear(self) -> None:
        """Forget the world (settings back to the defaults); faults and oracle are kept."""
        self.settings = copy.deepcopy(self.defaults)
        self.clock_offset_s = 0.0
        self.orgs: dict[str, Org] = {}
        self.credentials: dict[str, Credential] = {}
        self.by_client_id: dict[str, Credential] = {}
        self.tokens: dict[str, Token] = {}
        self.retired: list[RetiredSecret] = []
        # Deleted secrets still listed (the ``lingering`` switch): credential -> [secret, n]
        self.lingering: dict[str, list[tuple[Secret, list[int]]]] = {}
        self.org_ids = itertools.count(100001)
        self.credential_ids = itertools.count(300001)
        self.mints = 0

    def touch(self) -> None:
        """Something durable changed: the autosave writes the state file again."""
        self.revision += 1

    def now_ms(self) -> int:
        """Sandbox time: wall clock plus the admin-set offset; all expiry uses it."""
        return int((self._clock() + self.clock_offset_s) * 1000)

    # ------------------------------------------------------------------ lookups

    def credential(self, credential_id: str) -> Credential:
        try:
            return self.credentials[credential_id]
        except KeyError:
            raise LookupError(f"no credential {credential_id}") from None

    @staticmethod
    def secret(credential: Credential, uuid: str) -> Secret:
        try:
            return credential.secrets[uuid]
        except KeyError:
            raise LookupError(
                f"no secret {uuid} on credential {credential.credential_id}"
            ) from None

    @staticmethod
    def ordered(credential: Credential) -> list[Secret]:
        """A credential's live secrets, oldest first (Adobe's list order)."""
        return sorted(credential.secrets.values(), key=lambda s: (s.created_at, s.uuid))

    # ------------------------------------------------------------------ secrets come and go

    def new_secret(self, credential: Credential, *, accept_delay_ms: int, by: str) -> Secret:
        """A fresh secret on ``credential`` (the API's add and the Console's share this)."""
        now = self.now_ms()
        secret = Secret(
            uuid=uuidlib.uuid4().hex,
            value="p8e-" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y"),
            created_at=now,
            accepted_at=now + accept_delay_ms,
        )
        credential.secrets[secret.uuid] = secret
        self.oracle.created(credential.credential_id, secret.uuid, secret.value, now, by=by)
        return secret

    def retire(self, credential: Credential, secret: Secret, *, by: str) -> None:
        """Delete ``secret``; an API delete may linger in later lists (``lingering``)."""
        del credential.secrets[secret.uuid]
        answers = self.faults.consistency.lingering_answers(credential.client_id)
        if answers and by == "api":
            ghosts = self.lingering.setdefault(credential.credential_id, [])
            ghosts.append((secret, [answers]))
        self.retired.append(RetiredSecret(credential.credential_id, secret.uuid, secret.value))
        self.oracle.deleted(
            credential.credential_id, secret.uuid, secret.value, self.now_ms(), by=by
        )
