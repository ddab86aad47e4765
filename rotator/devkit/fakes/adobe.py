"""`FakeAdobe`: one credential's client secrets at Adobe, behind the `AdobeApi` port.

Strict where the real Adobe is strict: two secrets at most; a new secret may be accepted
only after `accept_delay`. Only a token mint is a use of a secret (`last_used_at`), as at
the real Adobe: the rotator's client (`rotator.adapters.adobe`) caches the management token
it mints with a secret for the token's life (`token_reuse`: 24 h less a 5 min margin), so a
list, add or delete made with a fresh cached token moves nothing; `verify` (a test token)
always mints. A mint with a deleted or not-yet-accepted secret is refused with
InvalidClient; a token minted before its secret was deleted keeps working (Adobe does not
invalidate them), until the process that cached it dies (`forget_tokens`) or
`invalidate_tokens` drops it. With `token_reuse` zero every management call mints (a
client without a token cache: every call is a use).

It records every deletion of the secret AWSCURRENT held at that instant (I2, through
`current_value`), and takes one-shot faults (`rotator.devkit.fakes.faults`).

Adobe is as hostile as the sandbox (the very same switches, `rotator.devkit.sandbox.consistency`,
aimed at client id `CLIENT_ID`): uses show in `last_used_at` late (`usage_lag` plus
jitter), a list answer may leave a secret out or show its usages as null or stale, a new
secret is accepted late, a deleted secret is still listed for a while, and its clock may
be off ours by `skew` (Adobe's own clock, `adobe_now()`: every time it reports follows
it, as its `Date` header would). Consumers of the *other* secret (`busy_other`: any live
secret a consumer could know that AWSCURRENT does not hold) mint with it at every call
the rotator makes and whenever the model lets time pass (`consumers_tick`), so an
observation never happens in a quiet world. And it keeps the
same oracle (`rotator.devkit.sandbox.oracle`): the true time of every use (the rotator's own,
tagged `rotator`, and consumers', tagged `consumer`), every refusal and every deletion, in
milliseconds of the fake clock.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rotator.devkit.fakes.faults import Faults
from rotator.devkit.sandbox.consistency import Consistency
from rotator.devkit.sandbox.oracle import Oracle, UseSource
from rotator.domain.errors import InvalidClient, SecretLimit
from rotator.domain.model import AdobeSecret
from rotator.ports import CredentialRef, NewSecret

CLIENT_ID, CREDENTIAL_ID = "client", "cred"


def ms(moment: datetime) -> int:
    """The oracle's unit: epoch milliseconds."""
    return int(moment.timestamp() * 1000)


@dataclass
class HeldSecret:
    """One secret as Adobe holds it, with the truth of its uses."""

    uuid: str
    value: str
    created_at: datetime
    accepted_at: datetime
    uses: list[tuple[datetime, datetime]] = field(default_factory=list)  # (visible_at, at)

    def shown_as_of(self, moment: datetime) -> datetime | None:
        """`last_used_at` as Adobe shows it at `moment`: the latest use visible by then."""
        visible = [at for visible_at, at in self.uses if visible_at <= moment]
        return max(visible) if visible else None

    @property
    def last_used_at(self) -> datetime | None:
        """The truth (what the oracle knows), not what Adobe shows."""
        return max((at for _v, at in self.uses), default=None)


#: The rotator's client reuses a management token this long (Adobe's `expires_in` 86399 s
#: less the client's default `token_margin` of 300 s).
TOKEN_REUSE = timedelta(seconds=86399 - 300)


class FakeAdobe:
    """One credential's secrets at Adobe, behind the `AdobeApi` port."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        limit: int = 2,
        token_reuse: timedelta = TOKEN_REUSE,
    ) -> None:
        self.clock = clock
        self.limit = limit
        #: How long the rotator's client reuses a management token (zero: never).
        self.token_reuse = token_reuse
        self.secrets: dict[str, HeldSecret] = {}
        self.accept_delay = timedelta(0)
        self.faults = Faults()
        #: The sandbox's switches (lag, omissions, usage regressions), for CLIENT_ID.
        self.consistency = Consistency()
        self.ghosts: list[tuple[HeldSecret, list[int]]] = []  # deleted, still listed (lingering)
        self.skew = timedelta(0)  # Adobe's clock minus ours, in every time it reports
        self.oracle = Oracle()
        self.oracle.watch_current(CREDENTIAL_ID, lambda: self.current_value())
        self.adds = 0
        self.deleted_values: list[str] = []
        self.current_value: Callable[[], str | None] = lambda: None  # AWSCURRENT, for I2
        self.i2_violations: list[str] = []
        #: Cached management tokens of the rotator's process: value -> reuse until.
        self.tokens: dict[str, datetime] = {}
        self.mints = {"rotator": 0, "cached": 0}
        #: Consumers busy on the other secret (see the module doc) and the values a
        #: consumer could hold (ever AWSCURRENT's, or made in the Console).
        self.busy_other = False
        self.known_to_consumers: set[str] = set()
        #: Rule ids (Consistency) of long contradictions: a null or stale usage only for a
        #: secret Adobe already showed with a use (a contradiction, not an invisible use).
        self.contradictions_only: set[str] = set()
        self._shown_used: set[str] = set()

    def adobe_now(self) -> datetime:
        """Adobe's clock (ours plus `skew`): its `Date` header and every time it reports."""
        return self.clock() + self.skew

    def forget_tokens(self) -> None:
        """The rotator's process died: its cached management tokens are gone with it."""
        self.tokens.clear()

    def consumers_tick(self) -> None:
        """Consumers busy on the other secret use it now (when `busy_other` is on)."""
        if not self.busy_other:
            return
        current = self.current_value()
        for secret in list(self.secrets.values()):
            if secret.value != current and secret.value in self.known_to_consumers:
                self.mint(secret.value, source="consumer")

    # --- the world ----------------------------------------------------------------------

    def seed(self, *, age: timedelta = timedelta(0)) -> HeldSecret:
        """A secret made in the Console (the first one, or an operator's by hand), `age`
        ago (created then; never used since)."""
        now = self.clock()
        made = now - age
        secret = HeldSecret(uuidlib.uuid4().hex, "s-" + uuidlib.uuid4().hex, made, made)
        self.secrets[secret.uuid] = secret
        self.known_to_consumers.add(secret.value)
        self.oracle.created(CREDENTIAL_ID, secret.uuid, secret.value, ms(made), by="console")
        return secret

    def by_value(self, value: str) -> HeldSecret | None:
        return next((s for s in self.secrets.values() if s.value == value), None)

    def mint(self, value: str, source: UseSource = "consumer") -> bool:
        """A token request: True if Adobe accepts the value (and notes the use, shown late
        by the usage lag); the oracle records the use or the refusal."""
        now = self.clock()
        secret = self.by_value(value)
        if secret is None or now < secret.accepted_at:
            reason = "no such secret" if secret is None else "not accepted yet"
            self.oracle.refused(value, ms(now), reason, source)
            return False
        lag = timedelta(milliseconds=self.consistency.usage_lag_ms(CLIENT_ID))
        secret.uses.append((now + lag, now))
        self.oracle.used(CREDENTIAL_ID, secret.uuid, ms(now), source)
        return True

    def _auth(self, secret: str) -> None:
        """A management call: the cached token if fresh (no use), else a mint (a use)."""
        self.consumers_tick()
        until = self.tokens.get(secret)
        if until is not None and self.clock() < until:
            self.mints["cached"] += 1
            return
        self._mint_token(secret)

    def _mint_token(self, secret: str) -> None:
        self.mints["rotator"] += 1
        if not self.mint(secret, source="rotator"):
            self.tokens.pop(secret, None)
            raise InvalidClient("HTTP 400 (invalid_client): Adobe refused this client id / secret")
        self.tokens[secret] = self.clock() + self.token_reuse

    def _listed(self) -> list[AdobeSecret]:
        """One list answer, through the consistency switches; the oracle notes what it hid."""
        now = self.clock()
        ghosts = [secret for secret, _left in self.ghosts]
        for secret, left in self.ghosts:
            left[0] -= 1
            self.oracle.hidden(CREDENTIAL_ID, secret.uuid, "lingering")
        self.ghosts = [(secret, left) for secret, left in self.ghosts if left[0] > 0]
        ordered = sorted([*self.secrets.values(), *ghosts], key=lambda s: s.created_at)
        left_out = self.consistency.omissions(CLIENT_ID, [s.uuid for s in ordered])
        answer = []
        for secret in ordered:
            if secret.uuid in left_out:
                self.oracle.hidden(CREDENTIAL_ID, secret.uuid, "omitted")
                continue
            visible = secret.shown_as_of(now)
            shown = visible
            rule = self.consistency.distortion(CLIENT_ID, secret.uuid)
            only_contradicts = rule is not None and rule.id in self.contradictions_only
            if only_contradicts and secret.uuid not in self._shown_used:
                rule = None  # never shown with a use: hiding it would be lag, not this
            if rule is not None:
                shown = (
                    None
                    if rule.mode == "null"
                    else secret.shown_as_of(now - timedelta(milliseconds=rule.stale_ms))
                )
                if shown != visible:
                    how = "null" if shown is None else "stale"
                    self.oracle.hidden(CREDENTIAL_ID, secret.uuid, how)
            self.oracle.reported(CREDENTIAL_ID, secret.uuid, None if shown is None else ms(shown))
            if shown is not None:
                self._shown_used.add(secret.uuid)
            reported = None if shown is None else shown + self.skew
            answer.append(AdobeSecret(secret.uuid, secret.created_at + self.skew, reported))
        return answer

    # --- the port -----------------------------------------------------------------------

    def list_secrets(self, cred: CredentialRef, secret: str) -> list[AdobeSecret]:
        self.faults.check("list", "before")
        self._auth(secret)
        answer = self._listed()
        self.faults.check("list", "after")
        return answer

    def add_secret(self, cred: CredentialRef, secret: str) -> NewSecret:
        self.faults.check("add", "before")
        self._auth(secret)
        if len(self.secrets) >= self.limit:
            raise SecretLimit("the credential already has two client secrets")
        now = self.clock()
        made = HeldSecret(
            uuidlib.uuid4().hex, "s-" + uuidlib.uuid4().hex, now, now + self.accept_delay
        )
        self.secrets[made.uuid] = made
        self.oracle.created(CREDENTIAL_ID, made.uuid, made.value, ms(now), by="api")
        self.adds += 1
        self.faults.check("add", "after")
        return NewSecret(made.uuid, made.created_at + self.skew, made.value)

    def delete_secret(self, cred: CredentialRef, secret: str, uuid: str) -> None:
        self.faults.check("delete", "before")
        self._auth(secret)
        gone = self.secrets.pop(uuid, None)
        if gone is not None:
            if gone.value == self.current_value():
                self.i2_violations.append(f"deleted {uuid}, the secret AWSCURRENT holds")
            self.deleted_values.append(gone.value)
            self.oracle.deleted(CREDENTIAL_ID, uuid, gone.value, ms(self.clock()), by="api")
            answers = self.consistency.lingering_answers(CLIENT_ID)
            if answers:
                self.ghosts.append((gone, [answers]))
        self.faults.check("delete", "after")

    def verify(self, cred: CredentialRef, secret: str) -> None:
        """A test token: always a fresh mint (a use), kept as the management token."""
        self.faults.check("verify", "before")
        self.consumers_tick()
        self._mint_token(secret)

    def invalidate_tokens(self, cred: CredentialRef, secret: str) -> int:
        self.faults.check("invalidate", "before")
        return 1 if self.tokens.pop(secret, None) is not None else 0
