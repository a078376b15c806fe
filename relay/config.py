"""Settings: `relay.yaml` (path from RELAY_CONFIG) with every value overridable from the environment.

Built once at start-up and passed in; nothing else reads the environment. Secrets may be written
as `env:NAME` or `file:/path`; they are resolved here, held as `SecretStr` and never printed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError
from .mapping import MappingConfig
from .schedules import ScheduleConfig, ScheduleName

DEFAULT_CONFIG = "relay.yaml"


def resolve_secret(value: Any) -> Any:
    """`env:NAME` → that variable, `file:PATH` → the file's content (trailing newline dropped)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        return value
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ValueError(f"environment variable {name} is not set")
        return os.environ[name]
    if value.startswith("file:"):
        path = Path(value[5:]).expanduser()
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    return value


def _not_empty(value: SecretStr) -> SecretStr:
    if not value.get_secret_value():
        raise ValueError("secret is empty")
    return value


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret), AfterValidator(_not_empty)]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str | SecretStr) else value


SecretList = Annotated[list[Secret], BeforeValidator(_as_list)]


class GatewayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = "http://127.0.0.1:18789"
    token: Secret | None = None
    # gateway.auth.token, for the `send` (WebSocket RPC) and `tool` (/tools/invoke) actions
    # (README, "The gateway's other doors"); unset: `token` is used.
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
    # Agent safety (README, "Running an AI agent on webhooks safely"): feedback-loop guard and agentId allow-list.
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
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RELAY_", env_nested_delimiter="_", env_nested_max_split=1, extra="forbid"
    )

    config_path: Path | None = Field(default=None, exclude=True)
    redis_url: str | None = Field(
        default=None, description="redis://, rediss://, unix:// or redis+sentinel://hosts/<master>/<db>"
    )
    redis_password: Secret | None = Field(default=None, description="the Redis nodes' password")
    redis_sentinel_password: Secret | None = Field(default=None, description="the Sentinels' own password")
    data_dir: Path = Path(".relay")
    queue: str = "relay"
    host: str = "127.0.0.1"
    port: int = 8080
    ingress_token: SecretList = Field(
        default_factory=list, description="token for /hooks/agent and /hooks/wake; default: the gateway token"
    )
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    gateways: dict[str, GatewayConfig] = Field(
        default_factory=dict,
        description="more gateways by name, chosen per source or mapping with `gateway:`",
    )
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    durability: DurabilityConfig = Field(default_factory=DurabilityConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    mappings: list[MappingConfig] = Field(default_factory=list)
    schedules: dict[ScheduleName, ScheduleConfig] = Field(
        default_factory=dict, description="agent turns and wakes on a cron, interval or one-off time"
    )
    event_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    dedupe_ttl_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    body_timeout_seconds: float = Field(
        default=10.0, gt=0, description="a request body not fully received in this time is refused (408)"
    )
    max_headers: int = Field(default=100, ge=10, description="requests with more headers are refused (431)")
    auth_failures_max: int = Field(
        default=20, ge=1, description="failed authentications per client address or source before 429"
    )
    auth_failures_window_seconds: int = Field(default=60, ge=1, description="the window of auth_failures_max")
    transform_timeout_seconds: float = Field(
        default=2.0, gt=0, description="time budget of one user transform call; past it the event is parked"
    )
    transform_max_threads: int = Field(
        default=8,
        ge=1,
        description="threads stuck in transforms past their budget before all transforms are refused",
    )
    max_message_bytes: int = Field(
        default=200_000, ge=1024, le=250_000,
        description="agent messages / wake texts longer than this (UTF-8 JSON bytes) are cut with a marker; "
        "the gateway refuses bodies over 256 KiB",
    )  # fmt: skip
    events_max: int = Field(default=100_000, gt=0, description="the event log keeps at most this many events")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first, then the values read from relay.yaml (passed as init kwargs).
        return env_settings, init_settings

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        from .redisconn import is_sentinel, parse_sentinel_url

        if value is not None and is_sentinel(value):
            parse_sentinel_url(value)  # a ValueError names the problem
        return value

    @model_validator(mode="after")
    def _known_gateways(self) -> Settings:
        for where, name in [*((f"sources.{s}.gateway", c.gateway) for s, c in self.sources.items()),
                            *((f"mappings.{i}.gateway", m.gateway) for i, m in enumerate(self.mappings))]:  # fmt: skip
            if name is not None and name not in self.gateways:
                known = ", ".join(sorted(self.gateways)) or "none"
                raise ValueError(f"{where}: no gateway {name!r} in `gateways:` (have: {known})")
        return self

    def gateway_config(self, name: str | None) -> GatewayConfig:
        """The gateway an action goes to: a named one from `gateways:`, or the default `gateway:`."""
        return self.gateways[name] if name else self.gateway

    def gateway_names(self) -> list[str | None]:
        """Every gateway, None standing for the default one."""
        return [None, *self.gateways]

    @property
    def base_dir(self) -> Path:
        return self.config_path.parent if self.config_path else Path.cwd()

    def ingress_tokens(self) -> list[bytes]:
        tokens = self.ingress_token or ([self.gateway.token] if self.gateway.token else [])
        return [t.get_secret_value().encode() for t in tokens]


def _format_errors(exc: ValidationError, where: str) -> str:
    lines = [f"{where}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read relay.yaml (if it exists), apply the environment, validate; raise ConfigError naming file and key."""
    explicit = path or os.environ.get("RELAY_CONFIG")
    config_path = Path(explicit or DEFAULT_CONFIG)
    data: dict[str, Any] = {}
    if config_path.exists():
        try:
            loaded = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_path}: the top level must be a mapping")
        data = loaded
    elif explicit:
        raise ConfigError(f"{config_path}: no such file")
    data.update(overrides)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(config_path))) from None
    settings.config_path = config_path.resolve() if config_path.exists() else None
    return settings
