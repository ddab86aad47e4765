"""Which Adobe secret AWSCURRENT's value is: proven, never assumed (I9).

The uuid recorded next to the secret in the AWS value is only a claim: a hand edit can
put secret B beside the uuid of secret A, and deleting "every other secret" on that claim
deletes the live one. Proof is either a binding recorded for that exact AWS version id
(rotator wrote the version itself, or an operator adopted it), or an observation: a token
minted with AWSCURRENT's value moves exactly one uuid's `last_used_at`. Adobe may report
that use late, so an observation may take several answers; the answers are merged
grow-only, so a `null` or older answer cannot hide a move already seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rotator.domain.evidence import latest

BINDING = "binding"  # recorded for this exact AWS version id
OBSERVED = "observation"  # two test tokens in a row moved exactly this uuid's last_used_at
# How far Adobe's clock (last_used_at) may trail the store's clock (the probe's time).
CLOCK_SKEW = timedelta(minutes=2)


@dataclass(frozen=True)
class Identity:
    """AWSCURRENT version `version_id` holds Adobe secret `uuid`, and how that is known."""

    uuid: str
    version_id: str
    proof: str
    # An observation proves only against the secrets listed before its test token: one a
    # list left out could have moved unseen. Empty for a binding (proof by construction).
    witnessed: tuple[str, ...] = ()

    def covers(self, uuid: str) -> bool:
        """Whether this proof tells `uuid` apart from AWSCURRENT's secret."""
        return not self.witnessed or uuid in self.witnessed

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "uuid": self.uuid,
            "version_id": self.version_id,
            "proof": self.proof,
        }
        if self.witnessed:
            out["witnessed"] = list(self.witnessed)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Identity | None:
        if not isinstance(data, Mapping) or not all(
            isinstance(data.get(k), str) for k in ("uuid", "version_id", "proof")
        ):
            return None
        witnessed = tuple(str(u) for u in data.get("witnessed") or ())
        return cls(data["uuid"], data["version_id"], data["proof"], witnessed)


@dataclass(frozen=True)
class Probe:
    """An observation under way: a token was minted with AWSCURRENT's value at `at`.

    `baseline` is the latest `last_used_at` known per uuid before the mint; `seen` the
    latest reported since (grow-only over every answer); `started` the first probe's time,
    which bounds how long the observation may take; `candidate` the one uuid the previous
    test token moved, which this one must move again to be proof.
    """

    version_id: str
    started: datetime
    at: datetime
    baseline: Mapping[str, datetime | None]
    seen: Mapping[str, datetime | None]
    candidate: str | None = None

    def fold(self, listed: Mapping[str, datetime | None]) -> Probe:
        seen = dict(self.seen)
        for uuid, used in listed.items():
            seen[uuid] = latest(seen.get(uuid), used)
        return Probe(self.version_id, self.started, self.at, self.baseline, seen, self.candidate)

    def moved(self) -> list[str]:
        """The uuids whose latest reported use is newer than what was known before the mint.

        Only a uuid listed before the mint counts (a list that left a secret out, then
        shows it with an old use, proves nothing), and only a use from around the mint on.
        """
        out = []
        for uuid, used in sorted(self.seen.items()):
            if uuid not in self.baseline or used is None or used < self.at - CLOCK_SKEW:
                continue
            before = self.baseline[uuid]
            if before is None or used > before:
                out.append(uuid)
        return out

    def unseen(self) -> list[str]:
        """Secrets first listed after the test token: their move could not be seen."""
        return sorted(set(self.seen) - set(self.baseline))

    def single(self) -> str | None:
        """The one uuid this token's answers moved, with no secret it never saw listed:
        what the next test token must move again to be proof."""
        moved = self.moved()
        return moved[0] if len(moved) == 1 and not self.unseen() else None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version_id": self.version_id,
            "started": self.started.isoformat(),
            "at": self.at.isoformat(),
            "baseline": _times_out(self.baseline),
            "seen": _times_out(self.seen),
        }
        if self.candidate:
            out["candidate"] = self.candidate
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Probe | None:
        if not isinstance(data, Mapping) or not isinstance(data.get("version_id"), str):
            return None
        return cls(
            data["version_id"],
            datetime.fromisoformat(data["started"]),
            datetime.fromisoformat(data["at"]),
            _times_in(data.get("baseline") or {}),
            _times_in(data.get("seen") or {}),
            data["candidate"] if isinstance(data.get("candidate"), str) else None,
        )


@dataclass(frozen=True)
class IdentityVerdict:
    """Proven (`identity`), not yet known (`wait`; `reprobe` asks for a fresh test token,
    which must move the probe's `single()` uuid again when it has one), or impossible to
    prove safely (`attention`, a sentence for a person)."""

    identity: Identity | None = None
    wait: bool = False
    reprobe: bool = False
    attention: str | None = None


def by_binding(
    version_id: str, bound_uuid: str | None, bound_version: str | None
) -> Identity | None:
    """A binding counts only for the exact version it was recorded for: AWS versions are
    immutable, so a hand edit (a new version) voids it."""
    if bound_uuid and bound_version == version_id:
        return Identity(bound_uuid, version_id, BINDING)
    return None


def judge_probe(
    probe: Probe,
    *,
    claimed: str | None,
    now: datetime,
    lag: timedelta,
    bound: timedelta,
    secret_id: str,
    name: str,
) -> IdentityVerdict:
    """Decide once `lag` has passed since the test token, then: exactly one uuid used from
    around the mint on, the same one the previous test token moved, is proof (unless the
    AWS value claims another: a person looks).

    Not before: a use of another secret from just before the mint, reported late, would
    look like the test token's (and the test token's own use may not show yet). One moved
    uuid the previous token did not confirm, none, or several: look again with a fresh
    token (a consumer of another secret was busy, or a list left a secret out or hid a use)
    until `bound` after the first probe, then ask a person rather than guess.
    """
    if now < probe.at + lag:
        return IdentityVerdict(wait=True)
    moved = probe.moved()
    # A secret first listed after the test token was left out of the baseline: its move
    # could not be seen, so one moved uuid proves nothing (I9).
    unseen = probe.unseen()
    single = probe.single()
    if single is not None and single == probe.candidate:
        if claimed and claimed != single:
            return IdentityVerdict(
                attention=(
                    f"AWSCURRENT of {secret_id!r} records uuid {claimed}, but test tokens "
                    f"minted with its value moved the last use of {single} instead: the value "
                    f"was edited by hand or its uuid is stale; refusing to delete anything. "
                    f"Fix the uuid in AWS, or run `rotator adopt {name} --uuid {single}`"
                )
            )
        witnessed = tuple(sorted(probe.baseline))
        return IdentityVerdict(identity=Identity(single, probe.version_id, OBSERVED, witnessed))
    if now - probe.started < bound:
        return IdentityVerdict(wait=True, reprobe=True)
    if single is not None:
        what = f"only {single}, which no second test token confirmed"
    else:
        what = "none" if not moved else f"{len(moved)} of them ({', '.join(moved)})"
    if unseen:
        what += f", while lists left out {', '.join(unseen)} before the test token"
    return IdentityVerdict(
        attention=(
            f"cannot prove which Adobe secret AWSCURRENT of {secret_id!r} holds: test tokens "
            f"minted with its value since {probe.started.isoformat()} moved the last use of "
            f"{what}; refusing to delete on a guess. Run `rotator adopt {name} --uuid <uuid>`"
        )
    )


def _times_out(times: Mapping[str, datetime | None]) -> dict[str, str | None]:
    return {u: t.isoformat() if t else None for u, t in sorted(times.items())}


def _times_in(data: Mapping[str, Any]) -> dict[str, datetime | None]:
    return {u: datetime.fromisoformat(t) if t else None for u, t in data.items()}
