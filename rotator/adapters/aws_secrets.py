"""AWS Secrets Manager through botocore, using the staging-label protocol and never RotateSecret.

moto (our test stand-in) is more lenient than AWS in places (see the reference doc), so
this adapter always asks for AWSCURRENT explicitly and the engine checks labels itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from rotator import redaction
from rotator.domain.errors import NotFound, PermanentError, StepError, TransientError
from rotator.domain.model import canonical_uuid
from rotator.ports import SecretVersion

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

_THROTTLING = {
    "ThrottlingException",
    "LimitExceededException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalServiceError",
    "ServiceUnavailable",
}


class Pacer(Protocol):
    """Waits until the next write fits the budget."""

    def acquire(self) -> None: ...


class RateLimiter:
    """A token bucket shared by threads: keeps writes under a per-second budget.

    AWS's 50 TPS write quota is per region and shared with every other writer, so the
    daemon paces itself instead of leaning on throttling errors and retries.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        # Burst 1: a budget is per second at AWS, so no second may hold more than `rate`.
        self.capacity = burst if burst is not None else 1.0
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if self.rate <= 0:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            time.sleep(wait)


class _ServicesRotatorUses(botocore.loaders.Loader):
    """botocore's data loader for the one session rotator keeps: Secrets Manager and STS.

    Before it loads a service's model, botocore checks the name against every service it
    ships, reading ~900 directories (~12 ms of each command's start-up here). This loader
    answers that question for the two services this session serves (the AWS secrets, and
    STS for the verified identity); a client for any other service from this session is
    refused by botocore's own UnknownServiceError. Loading the models is botocore's, as is.
    """

    SERVICES = ("secretsmanager", "sts")

    def list_available_services(self, type_name: str) -> list[str]:
        return [name for name in self.SERVICES if self.list_api_versions(name, type_name)]


def session() -> botocore.session.Session:
    """A botocore session whose data loader knows the services rotator uses."""
    made = botocore.session.get_session()
    usual = made.get_component("data_loader")  # AWS_DATA_PATH's folders, then botocore's
    made.register_component(
        "data_loader",
        _ServicesRotatorUses(
            extra_search_paths=list(usual.search_paths), include_default_search_paths=False
        ),
    )
    return made


class AwsSecrets:
    """The SecretsStore port over one shared, thread-safe botocore client.

    botocore's own session, not boto3's: boto3 adds resources and s3transfer (imported with
    it: ~100 ms of a CLI command's start-up) and nothing this adapter uses.
    """

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str = "",
        write_rate: float = 50,
        max_attempts: int = 4,
        connect_timeout: float = 5,
        read_timeout: float = 15,
        writes: Pacer | None = None,
        client: SecretsManagerClient | None = None,
        public_keys: frozenset[str] = frozenset({"secret_uuid"}),
    ) -> None:
        # Kept so that other AWS clients (STS for the verified identity) share its loaded
        # service data: a client from a fresh session costs ~90 ms of CPU, from this one ~5.
        self.session = session()
        self._client: SecretsManagerClient = client or self.session.create_client(  # type: ignore[assignment]
            "secretsmanager",
            region_name=region,
            endpoint_url=endpoint_url or None,
            config=Config(
                retries={"mode": "standard", "total_max_attempts": max_attempts},
                max_pool_connections=64,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            ),
        )
        # The write budget: the fleet's (through the database) when given, else this process's.
        # It is drawn on right before each write goes on the wire (botocore's before-send,
        # after the request was built and signed, retries included), so the spacing the
        # budget gives is the spacing AWS sees, not that of the calls into this adapter.
        self._writes: Pacer = writes if writes is not None else RateLimiter(write_rate)
        events = getattr(getattr(self._client, "meta", None), "events", None)
        for operation in ("PutSecretValue", "UpdateSecretVersionStage"):
            if events is None:  # a stand-in client in a test: writes go unpaced
                break
            events.register(f"before-send.secrets-manager.{operation}", self._pace)
        # Every other string in a secret's JSON is treated as secret and masked in output.
        self._public_keys = public_keys
        self.stats: dict[str, int] = {"get": 0, "describe": 0, "put": 0, "stage": 0}
        # Calls by (operation, "ok" | "error"); /metrics reads it.
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self._outcomes_lock = threading.Lock()

    def read(
        self, secret_id: str, *, stage: str = "AWSCURRENT", version_id: str | None = None
    ) -> SecretVersion | None:
        args: dict[str, Any] = {"SecretId": secret_id}
        if version_id:
            args["VersionId"] = version_id
        else:
            args["VersionStage"] = stage  # explicit: moto may answer an older version otherwise
        try:
            answer = self._call(
                "get",
                secret_id,
                f"read {version_id or stage}",
                self._client.get_secret_value,
                **args,
            )
        except NotFound:
            if _secret_exists(self, secret_id):
                return None  # the secret is there, the version or label is not
            raise
        text = answer.get("SecretString")
        if text is None:
            raise PermanentError(
                f"secret {secret_id!r} holds binary data, not a JSON object", step="read AWSCURRENT"
            )
        try:
            value = json.loads(text)
        except ValueError:
            raise PermanentError(
                f"secret {secret_id!r} is not a JSON object", step="read AWSCURRENT"
            ) from None
        if not isinstance(value, dict):
            raise PermanentError(
                f"secret {secret_id!r} is JSON but not an object", step="read AWSCURRENT"
            )
        redaction.register(
            *(v for k, v in value.items() if isinstance(v, str) and k not in self._public_keys),
            scope=f"aws:{secret_id}",  # a secret's last few versions (rotator.redaction)
        )
        for key in self._public_keys & value.keys():  # a uuid a person typed: one spelling
            if isinstance(value[key], str):
                value[key] = canonical_uuid(value[key])
        return SecretVersion(answer["VersionId"], tuple(answer.get("VersionStages", ())), value)

    def stages(self, secret_id: str) -> dict[str, tuple[str, ...]]:
        answer = self._call(
            "describe", secret_id, "describe", self._client.describe_secret, SecretId=secret_id
        )
        return {vid: tuple(labels) for vid, labels in answer.get("VersionIdsToStages", {}).items()}

    def _pace(self, **_: Any) -> None:
        """botocore's before-send hook for writes: wait for this write's slot (None: send)."""
        self._writes.acquire()

    def put_pending(self, secret_id: str, token: str, value: dict[str, Any]) -> None:
        self._call(
            "put",
            secret_id,
            "put AWSPENDING",
            self._client.put_secret_value,
            SecretId=secret_id,
            ClientRequestToken=token,
            SecretString=json.dumps(value),
            VersionStages=["AWSPENDING"],
        )

    def move_stage(
        self, secret_id: str, stage: str, *, to_version: str | None, from_version: str | None
    ) -> None:
        args: dict[str, Any] = {"SecretId": secret_id, "VersionStage": stage}
        if to_version:
            args["MoveToVersionId"] = to_version
        if from_version:
            args["RemoveFromVersionId"] = from_version
        self._call(
            "stage", secret_id, f"move {stage}", self._client.update_secret_version_stage, **args
        )

    def _call(
        self, stat: str, secret_id: str, step: str, method: Callable[..., Any], **args: Any
    ) -> Any:
        """One SDK call (botocore retries inside), its failure told as a typed StepError."""
        self.stats[stat] += 1
        outcome = "error"
        try:
            answer = method(**args)
            outcome = "ok"
            return answer
        except ClientError as exc:
            raise _error(exc, secret_id, step) from None
        except NoCredentialsError:
            raise PermanentError(
                "no AWS credentials found (environment, shared config/profile, or an "
                "instance/IRSA role)",
                step=f"{step} of {secret_id}",
            ) from None
        except BotoCoreError as exc:
            where = getattr(exc, "kwargs", {}).get("endpoint_url") or self._client.meta.endpoint_url
            raise TransientError(
                f"AWS unreachable at {where}: {type(exc).__name__}", step=f"{step} of {secret_id}"
            ) from None
        finally:
            with self._outcomes_lock:
                self.outcomes[stat, outcome] += 1


def _secret_exists(store: AwsSecrets, secret_id: str) -> bool:
    try:
        store.stages(secret_id)
    except NotFound:
        return False
    return True


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _error(exc: ClientError, secret_id: str, step: str) -> StepError:
    code = _code(exc)
    message = redaction.clip(str(exc.response.get("Error", {}).get("Message", "")), 200)
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    text = f"AWS {code or status}: {message}" if message else f"AWS {code or status}"
    where = f"{step} of {secret_id}"
    if code == "ResourceNotFoundException":
        return NotFound(f"secret {secret_id!r} not found ({text})", step=where)
    if code in _THROTTLING or (isinstance(status, int) and status >= 500):
        return TransientError(text, step=where)
    return PermanentError(text, step=where)
