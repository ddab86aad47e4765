"""Proving which Adobe secret AWSCURRENT's value is, before anything is deleted (I9).

A binding recorded for the exact AWS version (rotator promoted it, or an operator adopted
it) is proof at no cost. Otherwise rotator observes: it mints a token with AWSCURRENT's
value and looks for the one uuid whose `last_used_at` moved, then mints a second to see
that same uuid move again (one token's answers are one observation). Adobe may report a use
late, so the observation is kept in the rotation's detail and looked at again (a short
delay apart) until it decides or its bound runs out; then a person is asked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rotator.domain.evidence import confirm_delay, latest
from rotator.domain.identity import Identity, Probe, by_binding, judge_probe
from rotator.domain.model import AdobeSecret, Rotation
from rotator.engine.context import StepContext
from rotator.engine.deletes import used_by_uuid
from rotator.engine.outcome import Outcome


def prove_current(
    step: StepContext, rotation: Rotation, now: datetime, listed: list[AdobeSecret]
) -> Identity | Outcome:
    """The proven identity of AWSCURRENT, or an Outcome that waits for Adobe to show it
    (or, once the observation is out of time, asks a person and starts afresh next time)."""
    known = known_current(step, rotation, listed)
    if known is not None:
        return known
    version = step.current().version_id
    lag, pause = step.policy.lag, confirm_delay(step.policy.poll_interval)
    probe = Probe.from_dict(rotation.detail.get("identity_probe"))
    if probe is None or probe.version_id != version:
        probe = _mint(step, now, version, started=now, known=_known(rotation, listed))
    else:
        probe = probe.fold(used_by_uuid(listed))
        if now > probe.at + lag + 2 * pause:
            # Judged this late (the step failed, the daemon was down), every use since the
            # test token counts as a move, a consumer of another secret's included: never
            # decide on it (I9). A fresh token, from what is known now, must move the one
            # uuid this token moved, if it moved just one.
            probe = _mint_again(step, now, probe)
    verdict = judge_probe(
        probe,
        claimed=step.current_uuid(),
        now=now,
        lag=lag,
        bound=5 * (lag + pause),  # room for a disturbed pair of test tokens, then a pair
        secret_id=step.cfg.secret_id,
        name=step.cfg.name,
    )
    if verdict.identity is not None:
        return verdict.identity
    if verdict.attention:
        # Ask a person, and drop this observation: the retry starts a fresh one (Adobe may
        # have caught up, or a person fixed AWS), or a stale probe would refuse for ever.
        asked = Outcome.attention(
            verdict.attention,
            resume=rotation.resume_state or rotation.state,
            wait_until=now + step.policy.poll_interval,
        )
        asked.changes["detail"] = _without_probe(rotation.detail)
        return asked
    if verdict.reprobe and now >= probe.at + pause:
        # A fresh test token, a pause after the last (with no lag, one minted in the same
        # instant could not show a newer use): to confirm one moved uuid, or to try again.
        probe = _mint_again(step, now, probe)
    detail: dict[str, Any] = {**rotation.detail, "identity_probe": probe.as_dict()}
    return Outcome(
        rotation.state,
        kind="identity_probe",
        changes={"detail": detail},
        detail={
            "moved": probe.moved(),
            "confirming": probe.candidate,
            "since": probe.started.isoformat(),
        },
        wait_until=max(now + pause, probe.at + max(lag, pause)),
    )


def known_current(
    step: StepContext, rotation: Rotation, listed: list[AdobeSecret] | None = None
) -> Identity | None:
    """What is already proven about AWSCURRENT's version, at no cost: a binding recorded for
    it (promotion, adopt, an earlier observation) or this rotation's own proof. None when
    an observation never saw a secret `listed` shows now: it cannot tell that one apart."""
    version = step.current().version_id
    row = step.store.credential_rows().get(step.cfg.name)
    bound = by_binding(
        version, row.current_uuid if row else None, row.current_version if row else None
    )
    own = Identity.from_dict(rotation.detail.get("identity"))
    if own is not None and own.version_id != version:
        own = None
    if bound is not None and (own is None or own.uuid != bound.uuid):
        return bound
    known = own or bound  # this rotation's own proof says what it saw
    if known is not None and not all(known.covers(s.uuid) for s in listed or ()):
        return None
    return known


def recorded(rotation_detail: dict[str, Any], identity: Identity) -> dict[str, Any]:
    """The rotation's detail with the proof kept (and the finished observation dropped)."""
    return {**_without_probe(rotation_detail), "identity": identity.as_dict()}


def _without_probe(detail: dict[str, Any]) -> dict[str, Any]:
    """The detail with the observation under way dropped (finished, or out of time)."""
    return {k: v for k, v in detail.items() if k != "identity_probe"}


def _known(rotation: Rotation, listed: list[AdobeSecret]) -> dict[str, datetime | None]:
    """The latest use known per uuid before the test token: this answer and the evidence."""
    seen = rotation.evidence.strays if rotation.evidence else {}
    return {s.uuid: latest(s.last_used_at, seen.get(s.uuid)) for s in listed}


def _mint(
    step: StepContext,
    now: datetime,
    version: str,
    *,
    started: datetime,
    known: dict[str, datetime | None],
    candidate: str | None = None,
) -> Probe:
    """Use AWSCURRENT's value once (a token), then look at which last use moved."""
    secret = step.current_secret()
    step.adobe.verify(step.ref, secret)
    probe = Probe(version, started, now, known, dict(known), candidate)
    return probe.fold(used_by_uuid(step.adobe.list_secrets(step.ref, secret)))


def _mint_again(step: StepContext, now: datetime, probe: Probe) -> Probe:
    """A fresh test token within the same observation: its baseline is all seen so far, and
    it must move the one uuid the last token moved, if that moved just one."""
    return _mint(
        step,
        now,
        probe.version_id,
        started=probe.started,
        known=dict(probe.seen),
        candidate=probe.single(),
    )
