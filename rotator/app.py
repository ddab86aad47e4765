"""The composition root: the one place that builds adapters and wires them to the engine."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine as DbEngine
from sqlalchemy.engine import make_url

from rotator import redaction
from rotator.adapters.adobe import AdobeClient
from rotator.adapters.aws_secrets import AwsSecrets
from rotator.adapters.db import migrate, outbox
from rotator.adapters.db.connect import make_engine, safe_url
from rotator.adapters.db.fleet import WriteBudget
from rotator.adapters.db.store import Store
from rotator.audit.checkpoints import audit_log
from rotator.config import Settings
from rotator.domain.errors import ConfigError, RotatorError
from rotator.engine import Engine


@dataclass
class App:
    settings: Settings
    store: Store
    adobe: AdobeClient
    aws: AwsSecrets
    engine: Engine
    closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        self.adobe.close()
        self.store.engine.dispose()


class DatabaseUnreachable(RotatorError):
    """The database did not answer (down, refusing, timing out): the operation failed
    (exit 1); the configuration may well be right."""


def database_failure(settings: Settings, exc: BaseException, doing: str) -> RotatorError:
    """What a failure to open or migrate the database means, in one line: an outage
    (exit 1) or a configuration error (exit 2)."""
    from sqlalchemy import exc as db_errors

    first = redaction.clip(str(exc), 200, first_line=True)
    url = settings.database.url
    remote = not url.startswith("sqlite")  # SQLite's operational errors are about the file
    if remote and isinstance(exc, db_errors.OperationalError | db_errors.InterfaceError):
        return DatabaseUnreachable(f"cannot reach the database {safe_url(url)}: {first}")
    return ConfigError(
        f"{settings.database_key()}: cannot {doing} the database: {type(exc).__name__}: {first}"
    )


def require_driver(settings: Settings) -> None:
    """A PostgreSQL URL needs psycopg, an optional extra: say how to install it."""
    try:
        url = make_url(settings.database.url)
    except Exception:
        return  # said by whoever opens it
    if url.get_backend_name() != "postgresql":
        return
    driver = url.get_driver_name()
    try:
        importlib.import_module(driver)
    except ImportError:
        raise ConfigError(
            f"{settings.database_key()}: PostgreSQL needs the {driver} driver, which "
            f"is not installed: pip install 'adobe-secret-rotator[postgres]'"
        ) from None


def require_folder(settings: Settings) -> None:
    """A SQLite file in a folder that does not exist: say so (SQLite's own words are
    "unable to open database file", and `db upgrade` cannot create folders)."""
    try:
        url = make_url(settings.database.url)
    except Exception:
        return  # said by whoever opens it
    path = url.database or ""
    if url.get_backend_name() != "sqlite" or path in ("", ":memory:") or path.startswith("file:"):
        return
    folder = Path(path).parent
    if not folder.is_dir():
        raise ConfigError(
            f"{settings.database_key()}: {path}: the folder {folder} does not exist "
            f"(create it, or point the URL at an existing folder)"
        )


def _keep_open(engine: DbEngine, path: str) -> None:
    """Hold one idle connection to a SQLite file until the engine is disposed.

    The store opens a connection per transaction (NullPool), and when the last connection
    to a WAL database closes, SQLite checkpoints the WAL into the file and syncs it: about
    20 ms on every transaction here (35 ms -> 13 ms each with this). An idle connection
    holds no lock, so other processes are not held up; the checkpoint happens once, when
    the engine is disposed (or at SQLite's usual 1,000-page auto-checkpoint).
    """
    import sqlite3

    from sqlalchemy import event

    keeper = sqlite3.connect(path, check_same_thread=False)
    keeper.execute("PRAGMA schema_version").fetchone()  # opens the file and its WAL index

    @event.listens_for(engine, "engine_disposed")
    def _close(_engine: DbEngine) -> None:
        keeper.close()


def open_store(settings: Settings, *, upgrade: bool = False) -> Store:
    """The state database; refuses to run on an old schema unless asked to upgrade it.

    Without `upgrade` nothing is created: a missing SQLite file is an error, not a new file.
    """
    try:
        url = make_url(settings.database.url)
    except Exception:
        raise ConfigError(
            f"{settings.database_key()}: not a database URL "
            f"(like sqlite:///rotator.db or postgresql://user@host/db)"
        ) from None
    redaction.register(url.password if isinstance(url.password, str) else None)
    require_driver(settings)
    require_folder(settings)
    if not upgrade and url.get_backend_name() == "sqlite":
        path = url.database or ""
        if path not in ("", ":memory:") and not Path(path).exists():
            raise ConfigError(
                f"{settings.database_key()}: {path} does not exist; "
                f"run `rotator db upgrade` (or `rotator run`, which migrates) first"
            )
    engine = make_engine(settings.database.url, settings.database)
    try:
        if upgrade:
            migrate.upgrade(engine)
        elif not migrate.is_current(engine):
            raise ConfigError(
                f"{settings.database_key()}: the schema is not at the current revision "
                f"({migrate.current(engine) or 'empty'} != {migrate.HEAD}); "
                f"run `rotator db upgrade`"
            )
    except ConfigError:
        raise
    except Exception as exc:
        raise database_failure(settings, exc, "open") from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        _keep_open(engine, str(url.database))
    receivers = [
        outbox.Receiver(hook.receiver, frozenset(hook.events))
        for hook in settings.notifications.webhooks
    ]
    return Store(engine, receivers=receivers, audit=audit_log(settings))


# Budgets are enforced by the provider per wall-clock second; requests paced exactly at the
# rate still arrive with network jitter, so pace a little below it (measured in bench/).
PACING_MARGIN = 0.95
# The fleet's writes come from several processes, each of which may wake a little late for
# its slot (a busy host): spaced at 0.9 of the budget, a write may arrive 10 % of a slot
# late and still leave every second within the budget (bench/budget.py).
FLEET_PACING_MARGIN = 0.9


def write_budget(settings: Settings, store: Store) -> WriteBudget:
    """The AWS write budget every process sharing this database draws on (per region and
    endpoint): `[aws] write_rate` for the fleet, not for each replica."""
    key = f"aws-writes:{settings.aws.region}:{settings.aws.endpoint_url}"
    return WriteBudget(store.engine, key, settings.aws.write_rate * FLEET_PACING_MARGIN)


def build(
    settings: Settings,
    *,
    upgrade: bool = False,
    owner: str | None = None,
) -> App:
    store = open_store(settings, upgrade=upgrade)
    adobe = AdobeClient(
        settings.adobe.ims_url,
        settings.adobe.api_url,
        timeout=settings.adobe.timeout.total_seconds(),
        retry_attempts=4,
        retry_max_wait=10.0,  # a longer Retry-After ends the step; the engine reschedules it
        max_connections=max(32, settings.daemon.workers * 2),
        token_rate=settings.adobe.token_rate * PACING_MARGIN or None,
    )
    aws = AwsSecrets(
        region=settings.aws.region,
        endpoint_url=settings.aws.endpoint_url,
        write_rate=settings.aws.write_rate * PACING_MARGIN,
        public_keys=frozenset(settings.uuid_key(c) for c in settings.credentials),
        # Bounded calls (issue 29): at most 3 x (3 s + 7 s) plus botocore's short backoff per
        # call (~30 s); 3 attempts ride out a brief throttling without failing the step
        # (a failed creating step costs an orphan secret at Adobe, deleted on resume).
        max_attempts=3,
        connect_timeout=3,
        read_timeout=7,
        writes=write_budget(settings, store),
    )
    engine = Engine(settings, store, adobe, aws, owner=owner)
    return App(settings, store, adobe, aws, engine)
