"""The settings object: every key of relay.yaml, each overridable by a RELAY_* environment variable."""

from __future__ import annotations

import json
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from relay.config.models import (
    ConsoleConfig,
    DeliveryConfig,
    DurabilityConfig,
    GatewayConfig,
    MetricsConfig,
    SourceConfig,
)
from relay.config.redis_url import is_sentinel, parse_sentinel_url
from relay.config.secrets import Secret, SecretList
from relay.protocol.mapping_config import MappingConfig
from relay.protocol.schedules import ScheduleConfig, ScheduleName


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
