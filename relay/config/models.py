"""The sections of the settings: a gateway, a source, delivery, the console, metrics, durability."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from relay.config.secrets import Secret, SecretList, UnresolvedSecret


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = "http://127.0.0.1:18789"
    token: Secret | None = None
    # gateway.auth.token, for the `send` (WebSocket RPC) and `tool` (/tools/invoke) actions
    # (docs/gateways.md, "The gateway's other doors"); unset: `token` is used.
    auth_token: Secret | None = None
    hooks_path: str = "/hooks"
    timeout_seconds: float = Field(
        default=30.0, gt=15.0, description="must exceed the gateway's 15 s admission limit"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class SourceConfig(BaseModel):
    """One entry of `sources:`; which fields matter depends on its preset."""

    model_config = ConfigDict(extra="forbid")

    gateway: str | None = Field(default=None, description="a name from `gateways:`; default: `gateway:`")
    preset: str = "generic"
    secret: SecretList = Field(default_factory=list, description="HMAC secrets; two during a rotation")
    token: SecretList = Field(default_factory=list, description="bearer / x-openclaw-token values")
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    content: Literal["json", "raw"] = Field(
        default="json",
        description='generic: "raw" accepts any UTF-8 body as {"body": text, "contentType": ...}',
    )
    events: list[str] | None = Field(
        default=None, description="allow-list of event types (github, gitlab; stripe accepts patterns)"
    )
    allow_sha1: bool = False
    # Agent safety (docs/agent-safety.md): feedback-loop guard and agentId allow-list.
    allow_bots: bool | list[str] = Field(
        default=False, description="github/gitlab/linear: take events sent by bots (true, or these bot names)"
    )
    ignore_senders: list[str] = Field(
        default_factory=list,
        description="github/gitlab/linear: senders whose events are skipped (the agent's own)",
    )
    allowed_agent_ids: list[str] | None = Field(
        default=None, description="agentIds this source's actions may name ('*' any); default: any"
    )
    # HTTP basic auth (alertmanager), besides or instead of `token`.
    username: str | None = None
    password: Secret | None = None
    resolved: Literal["agent", "wake", "drop"] = Field(
        default="agent", description="what a resolved notification becomes (alertmanager)"
    )
    tolerance_seconds: int = Field(
        default=300, gt=0, description="accepted clock skew of signed timestamps (stripe, standard-webhooks)"
    )
    # Google OIDC tokens of Pub/Sub push subscriptions (gmail).
    audience: str | None = None
    service_account_email: str | None = None
    jwks: str | None = Field(default=None, description="JWKS file path or URL; default: Google's certs")
    allow_query_token: bool = Field(
        default=False,
        description="gmail: also take `token` from the URL's ?token= (Pub/Sub push without OIDC; "
        "the URL, secret included, can end up in proxy logs)",
    )
    # HMAC mode of the generic preset: the header carrying `prefix + hex(HMAC(secret, body))`.
    signature_header: str | None = None
    signature_prefix: str = ""
    algorithm: Literal["sha256", "sha1", "sha512"] = "sha256"


class DeliveryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=1000, ge=1)
    max_age_seconds: float = Field(default=24 * 3600, gt=0)
    backoff_base_seconds: float = Field(default=1.0, gt=0)
    backoff_max_seconds: float = Field(default=300.0, gt=0)
    heartbeat_grace_seconds: int = Field(
        default=60, ge=1, description="how long after its last heartbeat a dead worker's job is re-run"
    )
    in_flight: int = Field(default=16, ge=1, description="deliveries in flight per worker process")
    rate_limit_per_second: float = Field(
        default=0, ge=0, description="cap toward the gateway, all workers; 0: none"
    )
    rate_limit_burst: float = Field(default=10, ge=1)
    dead_letter_ttl_seconds: int = Field(
        default=30 * 24 * 3600, gt=0, description="how long dead letters are kept"
    )


class ConsoleConfig(BaseModel):
    """The delivery console (`/console`, docs/console.md): off unless enabled, behind its own token."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    token: Secret | None = None
    allow_remote: bool = Field(default=False, description="serve it to non-loopback clients too")
    rq_dashboard_url: str | None = None

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if (
            value is not None
            and not isinstance(value, UnresolvedSecret)
            and len(value.get_secret_value()) < 16
        ):
            raise ValueError("must be at least 16 characters")
        return value


class MetricsConfig(BaseModel):
    """/metrics on its own listener (loopback by default), never on the public hooks listener."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535, description="0: no metrics listener")


class DurabilityConfig(BaseModel):
    """How many replicas must hold a write before it is acknowledged (docs/high-availability.md)."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(
        default=0,
        ge=0,
        description="2xx only after WAIT confirms the write on this many replicas; 0: no wait",
    )
    replica_timeout_ms: int = Field(
        default=1000, ge=1, description="how long WAIT waits for the replicas before the ingress answers 503"
    )
