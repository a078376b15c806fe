"""Settings: `relay.yaml` (path from RELAY_CONFIG) with every value overridable from the environment.

Built once at start-up and passed in; nothing else reads the environment. Secrets may be written
as `env:NAME` or `file:/path`; they are resolved here, held as `SecretStr` and never printed.
"""

from __future__ import annotations

import json
import os
from contextvars import ContextVar
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

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
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from relay.errors import ConfigError
from relay.protocol.mapping_config import MappingConfig
from relay.protocol.schedules import ScheduleConfig, ScheduleName

DEFAULT_CONFIG = "relay.yaml"


# While settings are loaded: whether an unresolvable secret fails the load (the serving processes)
# or is kept as an UnresolvedSecret (every other command), and the `.env` next to relay.yaml.
_LENIENT: ContextVar[bool] = ContextVar("relay_lenient_secrets", default=False)
_DOTENV: ContextVar[dict[str, str]] = ContextVar("relay_dotenv", default={})  # noqa: B039 - never mutated


class UnresolvedSecret(SecretStr):
    """A secret whose `env:`/`file:` source is missing, kept so that commands that never use it run.

    Using it raises ConfigError naming the key and the variable or file.
    """

    def __init__(self, reference: str, problem: str) -> None:
        super().__init__("")
        self.reference = reference
        self.problem = problem
        self.where = ""  # the key, set once the settings are built

    def get_secret_value(self) -> str:
        where = f"{self.where}: " if self.where else ""
        raise ConfigError(f"{where}{self.problem} (the configuration says {self.reference})")

    def _display(self) -> str:
        return "<unresolved>"


def resolve_secret(value: Any) -> Any:
    """`env:NAME` → that variable (else the `.env` beside relay.yaml), `file:PATH` → the file's content (trailing newline dropped)."""
    if isinstance(value, UnresolvedSecret):
        return value
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        return value
    try:
        return _resolve(value)
    except ValueError as exc:
        if _LENIENT.get():
            return UnresolvedSecret(value, str(exc))
        raise


def _resolve(value: str) -> str:
    if value.startswith("env:"):
        name = value[4:]
        if name in os.environ:
            return os.environ[name]
        if name in _DOTENV.get():
            return _DOTENV.get()[name]
        raise ValueError(f"environment variable {name} is not set")
    if value.startswith("file:"):
        path = Path(value[5:]).expanduser()
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    return value


def read_dotenv(path: Path) -> dict[str, str]:
    """`NAME=value` lines (`#` comments, optional `export `, optional quotes), as `relay init` writes them."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def _not_empty(value: SecretStr) -> SecretStr:
    if not isinstance(value, UnresolvedSecret) and not value.get_secret_value():
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


class _Environment(EnvSettingsSource):
    """RELAY_* variables; a list may also be given plainly, comma-separated (`RELAY_INGRESS_TOKEN=a,b`)."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return json.loads(value)
        except ValueError:
            if isinstance(value, str) and _is_list(field.annotation):
                return [item.strip() for item in value.split(",") if item.strip()]
            raise ValueError(f"not valid JSON: {value[:40]!r}") from None


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return _is_list(get_args(annotation)[0])
    if get_origin(annotation) in (list, tuple, set):
        return True
    return any(_is_list(arg) for arg in get_args(annotation) if get_origin(annotation) in (Union, UnionType))


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
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses/CIDRs of reverse proxies whose X-Forwarded-For/-Proto are believed",
    )
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
        default=200_000,
        ge=1024,
        le=250_000,
        description="agent messages / wake texts longer than this (UTF-8 JSON bytes) are cut with a marker; "
        "the gateway refuses bodies over 256 KiB",
    )
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
        return _Environment(settings_cls), init_settings

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        from relay.ingress.proxies import parse_networks

        parse_networks(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        from relay.store.connection import is_sentinel, parse_sentinel_url

        if value is not None and is_sentinel(value):
            parse_sentinel_url(value)  # a ValueError names the problem
        return value

    @model_validator(mode="after")
    def _known_gateways(self) -> Settings:
        for where, name in [
            *((f"sources.{s}.gateway", c.gateway) for s, c in self.sources.items()),
            *((f"mappings.{i}.gateway", m.gateway) for i, m in enumerate(self.mappings)),
        ]:
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
        lines.append(f"  {key}: {msg}{_from_environment(err['loc'])}")
    return "\n".join(lines)


def _from_environment(loc: tuple[Any, ...]) -> str:
    """` (from RELAY_X)` when the invalid value came from the environment."""
    for depth in (2, 1):
        name = "RELAY_" + "_".join(str(p) for p in loc[:depth]).upper()
        if len(loc) >= depth and name in os.environ:
            return f" (from {name})"
    return ""


def _mark_unresolved(value: Any, where: str) -> None:
    """Give each UnresolvedSecret the key it sits at, for the error that names it when it is used."""
    if isinstance(value, UnresolvedSecret):
        value.where = where
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _mark_unresolved(getattr(value, name), f"{where}.{name}" if where else name)
    elif isinstance(value, dict):
        for name, item in value.items():
            _mark_unresolved(item, f"{where}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _mark_unresolved(item, f"{where}.{index}")


def unresolved_secrets(settings: Settings) -> list[UnresolvedSecret]:
    """The secrets a lenient load could not resolve (`relay check` lists them)."""
    found: list[UnresolvedSecret] = []

    def walk(value: Any) -> None:
        if isinstance(value, UnresolvedSecret):
            found.append(value)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict | list):
            for item in value.values() if isinstance(value, dict) else value:
                walk(item)

    walk(settings)
    return found


def load_settings(
    path: str | Path | None = None, *, lenient_secrets: bool = False, **overrides: Any
) -> Settings:
    """Read relay.yaml (if it exists), apply the environment, validate; raise ConfigError naming file and key.

    `env:NAME` secrets are looked up in the environment, then in a `.env` file beside relay.yaml.
    With lenient_secrets, a secret that cannot be resolved is kept as an UnresolvedSecret that
    fails only when used: commands resolve only the secrets they need.
    """
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
    dotenv_path = config_path.parent / ".env"
    try:
        dotenv = read_dotenv(dotenv_path) if dotenv_path.is_file() else {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{dotenv_path}: cannot read: {exc}") from None
    lenient_token, dotenv_token = _LENIENT.set(lenient_secrets), _DOTENV.set(dotenv)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(config_path))) from None
    except SettingsError as exc:  # a RELAY_* variable that is not valid JSON where JSON is needed
        raise ConfigError(f"environment: {_settings_error(exc)}") from None
    finally:
        _LENIENT.reset(lenient_token)
        _DOTENV.reset(dotenv_token)
    settings.config_path = config_path.resolve() if config_path.exists() else None
    _mark_unresolved(settings, "")
    return settings


def _settings_error(exc: SettingsError) -> str:
    # pydantic-settings: 'error parsing value for field "x" from source "EnvSettingsSource"'
    text = str(exc)
    field = text.split('"')[1] if text.count('"') >= 2 else ""
    cause = exc.__cause__
    return f"RELAY_{field.upper()}: {cause or text}" if field else text
