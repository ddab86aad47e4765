"""The composition root: the one place that builds adapters and wires them to the engine.

Everything else (the CLI, the daemon, the pre-flight, observe/, audit/) asks a function of
this module for what it needs, already wired: the identity recorded on audit events is
given at build time, never set on a built store afterwards. An import-linter contract in
pyproject.toml keeps it so.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine as DbEngine
from sqlalchemy.engine import make_url

from rotator import preflight, redaction
from rotator.adapters.adobe import AdobeClient
from rotator.adapters.aws_secrets import AwsSecrets
from rotator.adapters.db import migrate, outbox
from rotator.adapters.db.audit import AuditLog
from rotator.adapters.db.connect import make_engine, safe_url
from rotator.adapters.db.fleet import Fleet, WriteBudget
from rotator.adapters.db.insights import InsightsDb
from rotator.adapters.db.outbox import Outbox
from rotator.adapters.db.store import Store
from rotator.adapters.identity import IdentityProbe, os_user
from rotator.audit.checkpoints import CheckpointSink, keyring_loader
from rotator.config import Settings
from rotator.domain.errors import ConfigError, RotatorError
from rotator.engine import Engine
from rotator.observe.insights import Insights

if TYPE_CHECKING:
    from rotator.observe.notify import Deliverer


@dataclass
class App:
    settings: Settings
    store: Store
    adobe: AdobeClient
    aws: AwsSecrets
    engine: Engine
    fleet: Fleet  # the replicas' heartbeats and claims, in the same database
    insights: Insights  # the one read service: status, plan, /metrics, the report
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


def open_database(settings: Settings, *, upgrade: bool = False) -> DbEngine:
    """The state database's engine; refuses an old schema unless asked to upgrade it.

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
    return engine


def open_store(
    settings: Settings,
    *,
    upgrade: bool = False,
    identity: Callable[[], str | None] | None = None,
) -> Store:
    """The store over the state database (see `open_database`); `identity` answers the
    verified identity recorded on the events it appends (none for commands that only read)."""
    return store_on(settings, open_database(settings, upgrade=upgrade), identity=identity)


def store_on(
    settings: Settings, engine: DbEngine, *, identity: Callable[[], str | None] | None = None
) -> Store:
    """The store over an opened engine: its webhooks' receivers, its audit log."""
    receivers = [
        outbox.Receiver(hook.receiver, frozenset(hook.events))
        for hook in settings.notifications.webhooks
    ]
    return Store(engine, receivers=receivers, audit=audit_log(settings, identity=identity))


def upgrade_database(settings: Settings) -> tuple[str | None, str | None]:
    """`rotator db upgrade`: create or migrate the schema; (revision before, after)."""
    require_driver(settings)
    require_folder(settings)
    engine = make_engine(settings.database.url)
    try:
        return migrate.upgrade(engine)
    except Exception as exc:
        raise database_failure(settings, exc, "migrate") from None
    finally:
        engine.dispose()


def database_name(settings: Settings) -> str:
    """The database URL without its password, for logs."""
    return safe_url(settings.database.url)


# --- the audit log and its checkpoint sinks ---------------------------------------------


def s3_client(settings: Settings | None) -> Any:
    """An S3 client for checkpoints (boto3's: Secrets Manager's botocore session knows
    only the services it serves)."""
    import boto3

    aws = settings.aws if settings else None
    return boto3.session.Session().client(
        "s3",
        region_name=aws.region if aws else None,
        endpoint_url=(aws.endpoint_url or None) if aws else None,
    )


def checkpoint_sink(settings: Settings, *, s3: bool = True) -> CheckpointSink:
    """Where checkpoints of the chain head go: the log, `[audit] checkpoint_file` and (with
    `s3`) `[audit] checkpoint_s3`, whose client is made on the first put, then reused."""
    client: list[Any] = []

    def made() -> Any:
        if not client:
            client.append(s3_client(settings))
        return client[0]

    uri = settings.audit.checkpoint_s3 if s3 else ""
    return CheckpointSink(settings.audit.checkpoint_file, uri, made)


def audit_log(settings: Settings, *, identity: Callable[[], str | None] | None = None) -> AuditLog:
    """The audit log a Store appends with: keys from [audit], checkpoints to its sinks,
    `identity` (the verified identity of whoever appends) on every event."""
    return AuditLog(keyring_loader(settings), identity=identity, publish=checkpoint_sink(settings))


# Budgets are enforced by the provider per wall-clock second; requests paced exactly at the
# rate still arrive with network jitter, so pace a little below it (measured in bench/).
PACING_MARGIN = 0.95
# The fleet's writes come from several processes, each of which may wake a little late for
# its slot (a busy host): spaced at 0.9 of the budget, a write may arrive 10 % of a slot
# late and still leave every second within the budget (bench/budget.py).
FLEET_PACING_MARGIN = 0.9


def write_budget(settings: Settings, database: DbEngine) -> WriteBudget:
    """The AWS write budget every process sharing this database draws on (per region and
    endpoint): `[aws] write_rate` for the fleet, not for each replica."""
    key = f"aws-writes:{settings.aws.region}:{settings.aws.endpoint_url}"
    return WriteBudget(database, key, settings.aws.write_rate * FLEET_PACING_MARGIN)


def build(
    settings: Settings,
    *,
    upgrade: bool = False,
    owner: str | None = None,
    verified_identity: bool = False,
) -> App:
    """The app: store, Adobe and AWS clients, the engine over them. With
    `verified_identity`, the AWS caller and OS user are asked for now (in the background,
    through the AWS client's session) and recorded on every audit event the store appends."""
    database = open_database(settings, upgrade=upgrade)
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
        writes=write_budget(settings, database),
    )
    identity = identity_probe(settings, aws.session).result if verified_identity else None
    store = store_on(settings, database, identity=identity)
    adobe = AdobeClient(
        settings.adobe.ims_url,
        settings.adobe.api_url,
        timeout=settings.adobe.timeout.total_seconds(),
        retry_attempts=4,
        retry_max_wait=10.0,  # a longer Retry-After ends the step; the engine reschedules it
        max_connections=max(32, settings.daemon.workers * 2),
        token_rate=settings.adobe.token_rate * PACING_MARGIN or None,
    )
    engine = Engine(settings, store, adobe, aws, owner=owner)
    return App(settings, store, adobe, aws, engine, Fleet(database), insights(settings, store))


def identity_probe(settings: Settings, session: Any = None) -> IdentityProbe:
    """The verified identity (AWS caller ARN, OS user), asked for now in the background
    (through `session`, the AWS client's botocore session, when given)."""
    return IdentityProbe(settings.aws.region, settings.aws.endpoint_url, session=session)


def local_user() -> str:
    """The OS user of this process, as the audit trail spells it (`os:name(uid)`)."""
    return os_user()


def insights(settings: Settings, store: Store) -> Insights:
    """The one read service (status, plan, /metrics, the report) over the state database."""
    policies = {c.name: settings.policy(c) for c in settings.credentials}
    return Insights(InsightsDb(store.engine, store.audit), policies)


def read_store(settings: Settings) -> Store:
    """The state database alone, for commands that only read it (no identity: they append
    nothing)."""
    return open_store(settings)


def deliverer(settings: Settings, database: DbEngine, *, owner: str | None = None) -> Deliverer:
    """The webhook sender over the outbox in `database`, its signing secrets read now."""
    from rotator.observe.notify import Deliverer, load_keys

    return Deliverer(Outbox(database), settings, load_keys(settings), owner=owner)


def check(settings: Settings) -> list[preflight.CheckResult]:
    """`rotator check`: the pre-flight with clients that give up sooner than a rotation's."""
    adobe = AdobeClient(
        settings.adobe.ims_url,
        settings.adobe.api_url,
        timeout=settings.adobe.timeout.total_seconds(),
        retry_attempts=2,
    )
    aws = AwsSecrets(
        region=settings.aws.region,
        endpoint_url=settings.aws.endpoint_url,
        max_attempts=2,
        public_keys=frozenset(settings.uuid_key(c) for c in settings.credentials),
    )
    try:
        return preflight.run_checks(settings, _inspect_database, adobe, aws)
    finally:
        adobe.close()


def _inspect_database(settings: Settings) -> preflight.DatabaseState:
    """The schema's revision and, when it is current, the credential rows; writes nothing."""
    engine = make_engine(settings.database.url)
    try:
        current = migrate.current(engine)
        rows = Store(engine).credential_rows() if current == migrate.HEAD else {}
        return preflight.DatabaseState(current, migrate.HEAD, rows)
    finally:
        engine.dispose()
