"""The admin API's request bodies (pydantic): unknown keys are refused, so a typo fails loudly."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rotator.devkit.sandbox.model import CLIENT_CREDENTIALS


class AdminIn(BaseModel):
    """Admin request bodies: unknown keys are refused so a typo fails loudly (422)."""

    model_config = ConfigDict(extra="forbid")


class CredentialIn(AdminIn):
    org_id: str | None = None
    name: str | None = None
    scopes: list[str] | None = None
    meta_scopes: list[str] | None = None
    public_keys: list[str] = Field(default_factory=list)
    with_secret: bool = True


class BulkCredentialsIn(CredentialIn):
    count: int = Field(ge=1, le=100_000)


class SecretTimesIn(AdminIn):
    created_at: int | None = None
    last_used_at: int | None = None
    created_ago_s: float | None = None
    last_used_ago_s: float | None = None
    never_used: bool = False
    grant_type: str = CLIENT_CREDENTIALS


class ConsumeIn(AdminIn):
    uuid: str
    scope: str | None = None


class PublicKeyIn(AdminIn):
    pem: str


class TokenIn(AdminIn):
    token: str


class ClockIn(AdminIn):
    offset_s: float


class AdvanceIn(AdminIn):
    seconds: float


class FaultIn(AdminIn):
    endpoint: str
    action: Literal["error", "drop"] = "error"
    status: int = 503
    count: int | None = None
    rate: float = 1.0
    seed: int | None = None
    phase: Literal["before", "after"] = "before"
    client_id: str | None = None
    retry_after_s: float | None = None


class LatencyIn(AdminIn):
    endpoint: str = "*"
    ms: float = Field(ge=0)
    jitter_ms: float = Field(default=0, ge=0)
    seed: int | None = None


class TimingIn(AdminIn):
    usage_lag_ms: int | None = Field(default=None, ge=0)
    usage_lag_jitter_ms: int | None = Field(default=None, ge=0)
    accept_delay_ms: int | None = Field(default=None, ge=0)
    client_id: str | None = None
    seed: int | None = None


class AddStatusIn(AdminIn):
    status: int | None
    client_id: str | None = None


class OmissionIn(AdminIn):
    client_id: str | None = None
    uuid: str | None = None
    count: int | None = Field(default=None, ge=1)
    rate: float = Field(default=1.0, ge=0, le=1)
    seed: int | None = None


class LingeringIn(AdminIn):
    answers: int = Field(default=1, ge=1)
    client_id: str | None = None
    count: int | None = Field(default=None, ge=1)
    rate: float = Field(default=1.0, ge=0, le=1)
    seed: int | None = None


class UsagesIn(OmissionIn):
    mode: Literal["null", "stale"] = "null"
    stale_ms: int = Field(default=0, ge=0)


class HoldIn(AdminIn):
    endpoint: str
    phase: Literal["before", "after"] = "before"
    client_id: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)


class WaitIn(AdminIn):
    timeout_s: float = Field(default=10.0, ge=0)


class ReleaseIn(AdminIn):
    drop: bool = False
