"""Fleet-wide figures read from the state database: one read service for /metrics, status
and `rotator plan` (with the daemon's tick, which judges due-ness through the same
`outlooks`: see rotator/domain/outlook.py).

Everything here comes from the database at the moment of asking (through the
`InsightsReader` port; its SQL is rotator/adapters/db/insights.py), never from what one
process happened to do, so every replica (and the CLI) tells the same truth: rotations run
by the CLI or by another replica are counted like this process's own. Times are judged by
the database's clock on PostgreSQL (where replicas meet) and the host clock on SQLite.
The rules are the domain's: due-ness is `outlook.judge`, a drain deadline is the engine's
`machine.drain_deadline`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from rotator.domain import outlook
from rotator.domain.machine import drain_deadline
from rotator.domain.model import Policy, Rotation, State
from rotator.ports import InsightsReader, OutboxBacklog, Snapshot

if TYPE_CHECKING:
    from rotator.audit.chain import Checkpoint
    from rotator.audit.trail import Event
    from rotator.config import Settings


@dataclass(frozen=True)
class CredentialFigures:
    name: str
    needs_attention: bool
    on_hold: bool
    secret_created_at: datetime | None
    max_age: timedelta | None  # None: the credential is not in this process's configuration
    draining: bool
    drain_deadline: datetime | None
    drain_old_last_used_at: datetime | None


@dataclass(frozen=True)
class Fleet:
    now: datetime
    ended: dict[tuple[str, str], int]  # (outcome, trigger) -> rotations ever
    unfinished: dict[str, int]  # state -> rotations not yet ended
    credentials: list[CredentialFigures]
    outbox: OutboxBacklog

    @property
    def needing_attention(self) -> int:
        return sum(1 for c in self.credentials if c.needs_attention)


@dataclass(frozen=True)
class CredentialStatus:
    """`rotator status` of one credential: its row and the tick's judgment, read together."""

    facts: outlook.Facts | None
    outlook: outlook.Outlook
    drain_deadline: datetime | None  # the engine's rule, while its rotation drains


class Insights:
    """The one read service: `rotator status` and `plan`, /metrics, the report, and the
    daemon's tick (which judges through `outlooks` too)."""

    def __init__(
        self, reader: InsightsReader, policies: Mapping[str, Policy] | None = None
    ) -> None:
        self.reader = reader
        self.policies = dict(policies or {})

    def outlooks(
        self, rules: Mapping[str, outlook.Rules], names: Iterable[str] | None = None
    ) -> list[outlook.Outlook]:
        """What the next tick does with each credential (of `rules`, or of `names`), judged
        on the database's clock. Reads only: no write, no call to Adobe or AWS."""
        seen = self.reader.snapshot()
        wanted = list(rules) if names is None else list(names)
        return [_judge(seen, name, rules[name]) for name in wanted]

    def status(
        self, rules: Mapping[str, outlook.Rules], names: Iterable[str] | None = None
    ) -> list[CredentialStatus]:
        """Each credential's row, the tick's judgment of it (as `outlooks`) and, while its
        rotation drains, when the old secret may be deleted: all from one read."""
        seen = self.reader.snapshot()
        wanted = list(rules) if names is None else list(names)
        result = []
        for name in wanted:
            judged = _judge(seen, name, rules[name])
            deadline = _drain_deadline(judged.rotation, rules[name].policy)
            result.append(CredentialStatus(seen.facts.get(name), judged, deadline))
        return result

    def fleet(self) -> Fleet:
        """The fleet's figures for /metrics: every credential the database knows."""
        seen = self.reader.snapshot()
        ended = self.reader.ended()
        unfinished: dict[str, int] = {}
        for rotation in seen.unfinished.values():
            unfinished[rotation.state.value] = unfinished.get(rotation.state.value, 0) + 1
        figures = [
            self._credential(name, known, seen.unfinished.get(name))
            for name, known in sorted(seen.facts.items())
        ]
        return Fleet(seen.now, ended, unfinished, figures, self.reader.backlog())

    def _credential(
        self, name: str, known: outlook.Facts, active: Rotation | None
    ) -> CredentialFigures:
        policy = self.policies.get(name)
        draining = active is not None and active.state is State.DRAINING
        deadline = last_used = None
        if draining and active is not None and active.promoted_at is not None:
            deadline = drain_deadline(active, active.evidence, policy or Policy())
            last_used = active.evidence.old_last_used_at if active.evidence else None
        return CredentialFigures(
            name=name,
            needs_attention=active is not None and active.state is State.NEEDS_ATTENTION,
            on_hold=known.held_at is not None,
            secret_created_at=known.secret_created_at,
            max_age=policy.max_age if policy else None,
            draining=draining,
            drain_deadline=deadline,
            drain_old_last_used_at=last_used,
        )

    def trail(self) -> list[Event]:
        """The report's events: the whole audit trail, oldest first (rotator/audit/trail.py
        assembles the report from them and from `verification`)."""
        return list(self.reader.events())

    def verification(self, checkpoint: Checkpoint | None) -> dict[str, Any]:
        """The chain verified (against `checkpoint`), as the report states it."""
        return self.reader.verify(checkpoint).as_dict()


def _judge(seen: Snapshot, name: str, rules: outlook.Rules) -> outlook.Outlook:
    return outlook.judge(
        name,
        seen.facts.get(name),
        seen.unfinished.get(name),
        rules,
        seen.now,
        lease_owner=seen.lease_owners.get(name),
    )


def _drain_deadline(active: Rotation | None, policy: Policy) -> datetime | None:
    """When the old secret may be deleted if no use shows up (the engine's rule)."""
    if active is None or active.promoted_at is None:
        return None
    if State.DRAINING not in {active.state, active.resume_state}:
        return None
    return drain_deadline(active, active.evidence, policy)


def credential_rules(settings: Settings) -> dict[str, outlook.Rules]:
    """Each configured credential's merged policy, window and cron schedule, once."""
    from apscheduler.triggers.cron import CronTrigger

    result = {}
    for cfg in settings.credentials:
        schedule = settings.schedule(cfg)
        next_fire = None
        if schedule:
            cron = CronTrigger.from_crontab(schedule, timezone="UTC")

            def next_fire(after: datetime, cron: CronTrigger = cron) -> datetime | None:
                fire: datetime | None = cron.get_next_fire_time(None, after)
                return fire

        result[cfg.name] = outlook.Rules(
            policy=settings.policy(cfg),
            window=settings.window(cfg),
            schedule=schedule,
            next_fire=next_fire,
        )
    return result
