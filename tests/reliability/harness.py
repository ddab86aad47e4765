"""The reliability rig: the sandbox, moto behind the AWS proxy, databases, rotator processes,
and the invariants of docs/design (I1-I7) as functions that return what is wrong.

A `Case` is one credential with its own Adobe client id, its own AWS secret and its own
database, so many cases run side by side without seeing each other: sandbox holds and
faults are aimed by client id, proxy holds by secret id.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from rotator.adapters.db import migrate
from rotator.adapters.db.store import Store, make_engine
from rotator.devkit.sandbox.client import CreatedCredential
from rotator.devkit.sandbox.faults import Hold as SandboxHold
from rotator.devkit.sandbox.server import SandboxServer
from rotator.devkit.sandbox.state import SandboxState
from tests.reliability.awsproxy import AwsProxy
from tests.reliability.awsproxy import Hold as ProxyHold
from tests.reliability.invariants import Watcher
from tests.reliability.launcher import Launcher, Proc, base_env
from tests.reliability.truth import oracle_problems

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"
FAST_DEFAULTS = {
    "quiet_period": "1s",
    "poll_interval": "1s",
    "verify_timeout": "5s",
    "max_drain": "1h",
}


# --- config files ----------------------------------------------------------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table, e.g. a webhook's `secret = { id, file }`
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def toml(sections: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer: tables (nested too), scalars, and arrays of tables."""
    out: list[str] = []
    for name, body in sections.items():
        full = f"{prefix}{name}"
        if _tables(body):
            for item in body:
                out.append(f"[[{full}]]")
                out.extend(f"{k} = {toml_value(v)}" for k, v in item.items())
                out.append("")
        elif isinstance(body, dict):
            plain = {k: v for k, v in body.items() if not isinstance(v, dict) and not _tables(v)}
            nested = {k: v for k, v in body.items() if k not in plain}
            if plain or not nested:
                out.append(f"[{full}]")
                out.extend(f"{k} = {toml_value(v)}" for k, v in plain.items())
                out.append("")
            if nested:
                out.append(toml(nested, prefix=f"{full}."))
        else:
            raise ValueError(f"top-level key {full!r} must be a table")
    return "\n".join(out)


# --- databases -------------------------------------------------------------------------


class Databases:
    """Fresh, migrated databases in milliseconds: copies of a template migrated once."""

    def __init__(self, root: Path, pg_admin: str | None) -> None:
        self.root = root
        self.pg_admin = pg_admin
        self._lock = threading.Lock()
        self._sqlite_template: Path | None = None
        self._pg_template: str | None = None
        self._pg_made: list[str] = []
        self._shared: dict[str, str] = {}
        self._shared_lock = threading.Lock()
        self._admin: Engine | None = None

    def new(self, kind: str, *, shared: str | None = None) -> str:
        """A fresh database, or one `shared` by name between cases (as one rotator
        database serves many credentials), which also saves creating and dropping dozens
        of PostgreSQL databases."""
        if shared is None:
            return self.sqlite() if kind == "sqlite" else self.postgres()
        with self._shared_lock:
            key = f"{kind}:{shared}"
            if key not in self._shared:
                self._shared[key] = self.sqlite() if kind == "sqlite" else self.postgres()
            return self._shared[key]

    def sqlite(self) -> str:
        with self._lock:
            if self._sqlite_template is None:
                path = self.root / "template.db"
                engine = make_engine(f"sqlite:///{path}")
                migrate.upgrade(engine)
                engine.dispose()  # the last connection to close folds the WAL back in
                assert not Path(f"{path}-wal").exists()
                self._sqlite_template = path
        target = self.root / f"db-{uuid.uuid4().hex[:10]}.db"
        shutil.copyfile(self._sqlite_template, target)
        return f"sqlite:///{target}"

    def postgres(self) -> str:
        assert self.pg_admin, "PostgreSQL is required"
        with self._lock:
            if self._admin is None:
                self._admin = create_engine(
                    self.pg_admin, isolation_level="AUTOCOMMIT", poolclass=NullPool
                )
            if self._pg_template is None:
                name = f"rotator_rel_tmpl_{uuid.uuid4().hex[:8]}"
                with self._admin.connect() as conn:
                    conn.execute(text(f'CREATE DATABASE "{name}"'))
                self._pg_made.append(name)
                engine = make_engine(self._url(name))
                migrate.upgrade(engine)
                engine.dispose()
                self._pg_template = name
            name = f"rotator_rel_{uuid.uuid4().hex[:10]}"
            with self._admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self._pg_template}"'))
            self._pg_made.append(name)
        return self._url(name)

    def _url(self, name: str) -> str:
        assert self.pg_admin
        return self.pg_admin.rsplit("/", 1)[0] + f"/{name}"

    def close(self) -> None:
        if self._admin is None:
            return
        with self._admin.connect() as conn:
            for name in reversed(self._pg_made):
                try:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                except Exception as exc:  # leave it, say so; never fail the session here
                    print(f"reliability: could not drop database {name}: {exc}")
        self._admin.dispose()


# --- holds, one interface for both sides -----------------------------------------------


class AdobeHold:
    """A sandbox hold on one endpoint of one client id (the in-process FaultPlan)."""

    def __init__(self, state: SandboxState, endpoint: str, phase: str, client_id: str) -> None:
        self._faults = state.faults
        self.hold: SandboxHold = state.faults.arm_hold(
            endpoint,
            phase,  # type: ignore[arg-type]
            client_id=client_id,
            timeout_s=60,
        )
        self.name = f"adobe {endpoint} ({phase})"

    def wait(self, timeout: float = 20.0) -> None:
        if not self.hold.held_event.wait(timeout) or self.hold.status != "held":
            raise TimeoutError(f"no request reached the hold on {self.name}")

    def release(self, drop: bool = False) -> None:
        with suppress(LookupError):
            self._faults.release(self.hold.id, drop=drop)


class AwsHold:
    def __init__(self, proxy: AwsProxy, target: str, phase: str, secret_id: str, **match: Any):
        self._proxy = proxy
        self.hold: ProxyHold = proxy.arm_hold(
            target,
            phase,  # type: ignore[arg-type]
            secret_id=secret_id,
            timeout_s=60,
            **match,
        )
        self.name = f"aws {target} {match or ''} ({phase})".replace(" {}", "")

    def wait(self, timeout: float = 20.0) -> None:
        self._proxy.wait_held(self.hold, timeout)

    def release(self, drop: bool = False) -> None:
        self._proxy.release(self.hold, drop=drop)


Hold = AdobeHold | AwsHold


# --- one credential under test -----------------------------------------------------------


@dataclass
class Case:
    rig: ServicesRig
    name: str
    cred: CreatedCredential
    secret_id: str
    db_url: str
    config: Path
    initial_value: str
    violations: list[str] = field(default_factory=list)
    _engine: Engine | None = None

    def adopt_initial(self) -> None:
        """`rotator adopt` with the first secret: AWSCURRENT known by construction, as after
        a first rotation (an orphan's delete needs it, I12)."""
        from rotator import app as app_mod
        from rotator import config

        app = app_mod.build(config.load(self.config))
        try:
            assert self.cred.secret is not None
            app.engine.adopt(self.name, self.cred.secret.uuid, actor="test")
        finally:
            app.close()

    # --- what the world looks like --------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            if self.db_url.startswith("sqlite"):
                self._engine = make_engine(self.db_url)
            else:
                self._engine = create_engine(
                    self.db_url.replace("postgresql://", "postgresql+psycopg://"),
                    poolclass=NullPool,
                )
        return self._engine

    def store(self) -> Store:
        return Store(make_engine(self.db_url))

    def aws_value(self, stage: str = CURRENT) -> dict[str, Any]:
        answer = self.rig.sm.get_secret_value(SecretId=self.secret_id, VersionStage=stage)
        return dict(json.loads(answer["SecretString"]))

    def current_secret_fast(self) -> str | None:
        """AWSCURRENT's client_secret read from moto's memory (same process): no HTTP, so a
        watcher can sample often without loading the server the rotator talks to."""
        secret = _moto_secret(self.secret_id)
        if secret is None:
            return self.aws_value().get("client_secret")
        for version in list(secret.versions.values()):
            if CURRENT in (version.get("version_stages") or ()):
                value = json.loads(version.get("secret_string") or "{}")
                return value.get("client_secret")
        return None

    def labels(self) -> dict[str, list[str]]:
        stages = self.rig.sm.describe_secret(SecretId=self.secret_id)["VersionIdsToStages"]
        return {v: sorted(ls) for v, ls in stages.items() if ls}

    def adobe(self) -> dict[str, str]:
        """uuid -> value of the credential's live secrets at Adobe."""
        return self.rig.state.reveal_secrets(self.cred.credential_id)

    def issued(self) -> int:
        """Secrets Adobe ever created for this credential (the first one included)."""
        return sum(
            1
            for row in self.rig.state.all_secret_values()
            if row["credential_id"] == self.cred.credential_id
        )

    def adds(self) -> int:
        return self.issued() - 1

    def mint(self, value: str) -> tuple[int, str]:
        """A consumer's token request with `value`: (status, error code or ''); the oracle
        records it as a consumer's use (or refusal)."""
        reply = self.rig.state.mint_client_credentials(
            {
                "grant_type": "client_credentials",
                "client_id": self.cred.client_id,
                "client_secret": value,
            },
            source="consumer",
        )
        error = (reply.body or {}).get("error", "") if reply.status != 200 else ""
        return reply.status, str(error)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).mappings().all())

    def oracle_problems(self, quiet_period_s: float, slack_s: float = 0.05) -> list[str]:
        """The oracle checks (truth.py) on this credential: no deletion of AWSCURRENT's
        value, none under a consumer still using a secret (outside an emergency)."""
        truths = self.rig.state.oracle.secrets(self.cred.credential_id)
        return oracle_problems(
            truths,
            self.rotations(),
            int(quiet_period_s * 1000),
            slack_ms=int(slack_s * 1000),
        )

    def hostile(self, rng: Any, *, lag_ms: int = 150, rate: float = 0.2, omit: bool = True) -> None:
        """Adobe as an eventually consistent service, for this credential only: uses shown
        up to `lag_ms` late (within the rotator's usage_lag), list answers that leave a
        secret out or still list a deleted one (with `omit`), or show usages as null or
        stale, at `rate`; adds answered 200/201/202; new secrets accepted up to 300 ms
        late."""
        faults, client = self.rig.state.faults, self.cred.client_id
        seed = rng.randrange(10**6)
        faults.set_timing(
            client_id=client,
            usage_lag_ms=lag_ms // 3,
            usage_lag_jitter_ms=lag_ms - lag_ms // 3,
            accept_delay_ms=rng.choice([0, 100, 300]),
            seed=seed,
        )
        consistency = faults.consistency
        consistency.set_add_status(rng.choice([200, 201, 202]), client_id=client)
        if omit:
            consistency.omit(client_id=client, rate=rate / 2, seed=seed + 1)
            consistency.linger(client_id=client, answers=2, rate=rate, seed=seed + 4)
        consistency.distort_usages(mode="null", client_id=client, rate=rate / 2, seed=seed + 2)
        consistency.distort_usages(
            mode="stale", stale_ms=lag_ms // 2, client_id=client, rate=rate / 2, seed=seed + 3
        )

    def hidden_answers(self) -> int:
        """List answers that hid the truth (omitted, null, stale, lingering)."""
        return sum(
            sum(t.hidden.values()) for t in self.rig.state.oracle.secrets(self.cred.credential_id)
        )

    def rotations(self) -> list[Any]:
        return self.rows("SELECT * FROM rotations WHERE credential = :n ORDER BY id", n=self.name)

    def latest(self) -> Any | None:
        rows = self.rotations()
        return rows[-1] if rows else None

    def db_state(self) -> str | None:
        row = self.latest()
        return None if row is None else str(row["state"])

    def wait_lease_expired(self, timeout: float = 10.0) -> None:
        """What a restarted worker needs: the dead owner's lease ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.rows(
                "SELECT lease_expires_at FROM rotations WHERE credential = :n "
                "AND finished_at IS NULL",
                n=self.name,
            )
            expiry = rows[0]["lease_expires_at"] if rows else None
            if expiry is None:
                return
            if isinstance(expiry, str):
                expiry = datetime.fromisoformat(expiry)
            if expiry.tzinfo is None:
                expiry = expiry.replace(tzinfo=UTC)
            left = (expiry - datetime.now(UTC)).total_seconds()
            if left < -0.05:
                return
            time.sleep(min(max(left + 0.06, 0.01), 0.5))
        raise TimeoutError("the lease did not expire")

    # --- holds ------------------------------------------------------------------------

    def adobe_hold(self, endpoint: str, phase: str = "before") -> AdobeHold:
        return AdobeHold(self.rig.state, endpoint, phase, self.cred.client_id)

    def aws_hold(self, target: str, phase: str = "before", **match: Any) -> AwsHold:
        return AwsHold(self.rig.proxy, target, phase, self.secret_id, **match)

    def hold_until_state(
        self, first: Hold, make: Callable[[], Hold], state: str, timeout: float = 25.0
    ) -> list[Hold]:
        """Hold successive matching requests until one is made while the DB shows `state`.

        `first` is armed before the process starts; the last hold returned is still held,
        and every hold in the list is released (dropped) by the caller after the kill.
        """
        deadline = time.monotonic() + timeout
        armed = [first]
        while True:
            current = armed[-1]
            current.wait(max(0.5, deadline - time.monotonic()))
            if self.db_state() == state:
                return armed
            if time.monotonic() > deadline:
                raise TimeoutError(f"never held a request in state {state}")
            armed.append(make())  # armed before the release: the next request is caught
            current.release()

    # --- running rotator --------------------------------------------------------------

    def argv(self, *command: str) -> list[str]:
        return ["--config", str(self.config), *command]

    def start(self, *command: str, env: dict[str, str] | None = None) -> Proc:
        return self.rig.launcher.start(
            self.argv(*command), env=env or base_env(), cwd=self.rig.root
        )

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _moto_secret(secret_id: str) -> Any:
    try:
        from moto.secretsmanager.models import secretsmanager_backends
    except ImportError:
        return None
    for account in list(secretsmanager_backends.keys()):
        regions = secretsmanager_backends[account]
        if "us-east-1" in regions:
            secret = regions["us-east-1"].secrets.get(secret_id)
            if secret is not None:
                return secret
    return None


# --- the rig -----------------------------------------------------------------------------


class ServicesRig:
    """The services a rotator runs against, on 127.0.0.1: the sandbox over HTTP, moto
    (behind the AWS proxy), the databases and the launcher of rotator processes; each
    `new_case` is one credential among them."""

    def __init__(
        self,
        sandbox: SandboxServer,
        moto_url: str,
        proxy: AwsProxy,
        dbs: Databases,
        launcher: Launcher,
        root: Path,
    ) -> None:
        self.sandbox = sandbox
        self.state = sandbox.state
        self.moto_url = moto_url
        self.proxy = proxy
        self.dbs = dbs
        self.launcher = launcher
        self.root = root
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        # Straight to moto, not through the proxy: what the world really looks like.
        self.sm = boto3.client(
            "secretsmanager",
            region_name="us-east-1",
            endpoint_url=moto_url,
            config=Config(retries={"mode": "standard", "total_max_attempts": 5}),
        )
        self.watcher = Watcher()

    def new_case(
        self,
        db: str,
        *,
        name: str | None = None,
        defaults: dict[str, Any] | None = None,
        daemon: dict[str, Any] | None = None,
        credential: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        adobe: dict[str, Any] | None = None,
        aws_endpoint: str | None = None,
        shared_db: str | None = None,
    ) -> Case:
        name = name or f"cred-{uuid.uuid4().hex[:8]}"
        cred = self.sandbox.admin.create_credential()
        assert cred.secret is not None
        secret_id = f"adobe/{name}-{uuid.uuid4().hex[:6]}"
        self.sm.create_secret(
            Name=secret_id,
            SecretString=json.dumps(
                {
                    "client_secret": cred.secret.client_secret,
                    "secret_uuid": cred.secret.uuid,
                    "consumer_setting": "kept",
                }
            ),
        )
        db_url = self.dbs.new(db, shared=shared_db)
        config = self.root / f"{name}.toml"
        sections: dict[str, Any] = {
            "database": {"url": db_url},
            "adobe": {"ims_url": self.sandbox.url, "api_url": self.sandbox.url, **(adobe or {})},
            "aws": {"endpoint_url": aws_endpoint or self.proxy.url, "region": "us-east-1"},
            "defaults": {**FAST_DEFAULTS, **(defaults or {})},
            "daemon": {"lease": "1s", **(daemon or {})},
            **(extra or {}),
            "credentials": [
                {
                    "name": name,
                    "org_id": cred.org_id,
                    "credential_id": cred.credential_id,
                    "client_id": cred.client_id,
                    "secret_id": secret_id,
                    **(credential or {}),
                }
            ],
        }
        config.write_text(toml(sections))
        case = Case(self, name, cred, secret_id, db_url, config, cred.secret.client_secret)
        # The oracle asks, inside every deletion, what AWSCURRENT holds at that instant.
        self.state.oracle.watch_current(cred.credential_id, case.current_secret_fast)
        return case

    @contextmanager
    def watching(self, case: Case) -> Iterator[None]:
        self.watcher.add(case)
        try:
            yield
        finally:
            self.watcher.remove(case)


# --- the engine in this process (fault tests) --------------------------------------------


@dataclass
class InProcess:
    """One in-process rotation's result, with the adapters' counters."""

    rotation: Any
    adobe_stats: dict[str, int]
    aws_stats: dict[str, int]
    seconds: float


def rotate_in_process(
    case: Case, *, emergency: bool = False, timeout: float = 40.0, settings: Any = None
) -> InProcess:
    """`rotator rotate NAME --wait`, but in this process: the engine, its real adapters
    (httpx to the sandbox, boto3 through the AWS proxy), and the case's database."""
    from rotator import app as app_mod
    from rotator import config
    from rotator.cli import follow
    from rotator.domain.model import Trigger

    started = time.monotonic()
    app = app_mod.build(settings or config.load(case.config))
    try:
        trigger = Trigger.EMERGENCY if emergency else Trigger.MANUAL
        rotation = app.engine.request(case.name, trigger, actor="test")
        final = follow(
            app,
            rotation,
            wait=True,
            show=lambda r: None,
            poll=0.05,
            deadline=time.monotonic() + timeout,
        )
        return InProcess(
            final, dict(app.adobe.stats), dict(app.aws.stats), time.monotonic() - started
        )
    finally:
        app.close()
