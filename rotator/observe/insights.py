"""Fleet-wide figures read from the state database: one read service for /metrics, status
and `rotator plan` (with the daemon's tick, which judges due-ness through the same
`outlooks`: see rotator/domain/outlook.py).

Everything here comes from the database at the moment of asking, never from what one
process happened to do, so every replica (and the CLI) tells the same truth: rotations run
by the CLI or by another replica are counted like this process's own. Times are judged by
the database's clock on PostgreSQL (where replicas meet) and the host clock on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, select

from rotator.adapters.db.outbox import Backlog, Outbox
from rotator.adapters.db.rows import CredentialRow, credential_row, to_rotation
from rotator.adapters.db.tables import credentials, rotations
from rotator.domain import evidence as proof
from rotator.domain import outlook
from rotator.domain.evidence import Evidence
from rotator.domain.model import Policy, State

if TYPE_CHECKING:
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
    outbox: Backlog

    @property
    def needing_attention(self) -> int:
        return sum(1 for c in self.credentials if c.needs_attention)


class Insights:
    def __init__(self, engine: Engine, policies: Mapping[str, Policy] | None = None) -> None:
        self.engine = engine
        self.policies = dict(policies or {})
        self._pg = engine.dialect.name == "postgresql"

    def outlooks(
        self, rules: Mapping[str, outlook.Rules], names: Iterable[str] | None = None
    ) -> list[outlook.Outlook]:
        """What the next tick does with each credential (of `rules`, or of `names`), judged
        on the database's clock. Reads only: no write, no call to Adobe or AWS."""
        wanted = list(rules) if names is None else list(names)
        with self.engine.connect() as conn:
            now = self._now(conn)
            rows = {
                r["name"]: credential_row(r)
                for r in conn.execute(select(credentials)).mappings().all()
            }
            active = {}
            for r in (
                conn.execute(select(rotations).where(rotations.c.finished_at.is_(None)))
                .mappings()
                .all()
            ):
                live = r["lease_expires_at"] is not None and _aware(r["lease_expires_at"]) > now
                active[r["credential"]] = (to_rotation(r), r["lease_owner"] if live else None)
        result = []
        for name in wanted:
            rotation, owner = active.get(name, (None, None))
            result.append(
                outlook.judge(
                    name, facts(rows.get(name)), rotation, rules[name], now, lease_owner=owner
                )
            )
        return result

    def _now(self, conn: Any) -> datetime:
        """The store's clock (I10): PostgreSQL's where replicas meet, the host's on SQLite."""
        if self._pg:
            return _aware(conn.execute(select(func.now())).scalar_one())
        return datetime.now(UTC)

    def fleet(self) -> Fleet:
        with self.engine.connect() as conn:
            now = self._now(conn)
            ended = {
                (state, trigger): int(count)
                for state, trigger, count in conn.execute(
                    select(rotations.c.state, rotations.c.trigger, func.count())
                    .where(rotations.c.finished_at.is_not(None))
                    .group_by(rotations.c.state, rotations.c.trigger)
                ).all()
            }
            open_rows = (
                conn.execute(
                    select(
                        rotations.c.credential,
                        rotations.c.state,
                        rotations.c.promoted_at,
                        rotations.c.evidence,
                    ).where(rotations.c.finished_at.is_(None))
                )
                .mappings()
                .all()
            )
            rows = (
                conn.execute(
                    select(
                        credentials.c.name,
                        credentials.c.secret_created_at,
                        credentials.c.held_at.is_not(None).label("on_hold"),
                    ).order_by(credentials.c.name)
                )
                .mappings()
                .all()
            )
        unfinished: dict[str, int] = {}
        active: dict[str, Any] = {}
        for row in open_rows:
            unfinished[row["state"]] = unfinished.get(row["state"], 0) + 1
            active[row["credential"]] = row
        figures = [self._credential(row, active.get(row["name"])) for row in rows]
        return Fleet(now, ended, unfinished, figures, Outbox(self.engine).backlog())

    def _credential(self, row: Any, active: Any) -> CredentialFigures:
        name = row["name"]
        policy = self.policies.get(name)
        draining = active is not None and active["state"] == State.DRAINING.value
        deadline = last_used = None
        if draining and active["promoted_at"] is not None:
            # The engine's own quiet rule: quiet_period + usage_lag after the later of
            # promotion and the latest use ever seen (the grow-only evidence).
            rule = policy or Policy()
            last_used = Evidence.from_dict(active["evidence"] or {}).old_last_used_at
            last_used = _aware(last_used) if last_used else None
            deadline = proof.quiet_deadline(
                since=active["promoted_at"],
                last_used_at=last_used,
                quiet_period=rule.quiet_period,
                usage_lag=rule.lag,
            )
        return CredentialFigures(
            name=name,
            needs_attention=active is not None and active["state"] == State.NEEDS_ATTENTION.value,
            on_hold=bool(row["on_hold"]),
            secret_created_at=row["secret_created_at"],
            max_age=policy.max_age if policy else None,
            draining=draining,
            drain_deadline=deadline,
            drain_old_last_used_at=last_used,
        )


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def facts(row: CredentialRow | None) -> outlook.Facts | None:
    """A credential's row as the facts `outlook.judge` reasons about."""
    if row is None:
        return None
    return outlook.Facts(
        current_uuid=row.current_uuid,
        secret_created_at=row.secret_created_at,
        last_rotated_at=row.last_rotated_at,
        last_failed_at=row.last_failed_at,
        surveyed_at=row.surveyed_at,
        last_error=row.last_error,
        held_at=row.held_at,
        held_by=row.held_by,
        hold_reason=row.hold_reason,
    )


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
