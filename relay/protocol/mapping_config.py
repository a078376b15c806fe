"""The `mappings:` entries as configured: what an entry matches, the action it describes, and its
gates (cooldown, batch, delay, cancel). Pure: pydantic models, no I/O.

The fields are OpenClaw's `hooks.mappings`, plus the relay's extensions noted below;
`relay.protocol.mapping` decides which entry an event meets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from relay.protocol.actions import WakeMode

# OpenClaw's `forEach` (one action per item of a list) is a transform's list return in the relay.
FOR_EACH_INSTEAD = (
    "to fan out, give the mapping a transform that returns a list: each item becomes one action "
    "(at most 20 per event)"
)
FOR_EACH_UNSUPPORTED = f"forEach is not supported by the relay: remove it; {FOR_EACH_INSTEAD}"


class MatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    source: str | None = None
    # Relay extension: payload fields that must equal these values (`{"status": "resolved"}`).
    payload: dict[str, Any] | None = None


class TransformRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    module: str
    export: str | None = None


def parse_duration(value: Any) -> Any:
    """`30s`, `2m`, `1h`, `500ms` or a number of seconds."""
    if isinstance(value, str):
        text = value.strip().lower()
        for suffix, scale in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
            if text.endswith(suffix) and text[: -len(suffix)].strip().replace(".", "", 1).isdigit():
                return float(text[: -len(suffix)]) * scale
        return text
    return value


class CooldownConfig(BaseModel):
    """At most one agent turn per rendered `key` per `window`: `drop` keeps the window's first
    event, `last` delivers its latest when the window closes (`relay.hold.cooldown`)."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1)
    window: Annotated[float, BeforeValidator(parse_duration)] = Field(gt=0, le=7 * 24 * 3600)
    mode: Literal["drop", "last"] = "drop"


class BatchConfig(BaseModel):
    """Gather the events of a rendered `key` for `window` and send one action listing them all
    (`relay.hold.batching`); `max` events flush the batch early."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1)
    window: Annotated[float, BeforeValidator(parse_duration)] = Field(gt=0, le=24 * 3600)
    max: int = Field(default=50, ge=1, le=1000)


def _delay_shorthand(value: Any) -> Any:
    return {"after": value} if isinstance(value, str | int | float) else value


class DelayConfig(BaseModel):
    """Send the actions `after` a delay (`relay.hold.delayed`), unless an event whose mapping has
    `cancel` with the same rendered `key` comes first. `delay: 10m` is short for `{after: 10m}`."""

    model_config = ConfigDict(extra="forbid")
    after: Annotated[float, BeforeValidator(parse_duration)] = Field(gt=0, le=7 * 24 * 3600)
    key: str | None = None


class CancelConfig(BaseModel):
    """Cancel the delayed actions of this rendered `key` (`relay.hold.delayed`)."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1)


class MappingConfig(BaseModel):
    """One entry of `mappings:`, the same fields as OpenClaw's `hooks.mappings`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str | None = None
    match: MatchConfig = Field(default_factory=MatchConfig)
    action: Literal["agent", "wake", "send", "tool"] = "agent"
    wake_mode: WakeMode = Field(default="now", alias="wakeMode")
    name: str | None = None
    agent_id: str | None = Field(default=None, alias="agentId")
    session_key: str | None = Field(default=None, alias="sessionKey")
    message_template: str | None = Field(default=None, alias="messageTemplate")
    text_template: str | None = Field(default=None, alias="textTemplate")
    deliver: bool | None = None
    allow_unsafe_external_content: bool | None = Field(default=None, alias="allowUnsafeExternalContent")
    channel: str | None = None
    to: str | None = None
    model: str | None = None
    thinking: str | None = None
    timeout_seconds: int | None = Field(default=None, alias="timeoutSeconds")
    # Relay extensions for the gateway's other doors (docs/gateways.md): `action: send` uses
    # messageTemplate, to, channel, accountId, threadId, agentId, sessionKey; `action: tool` uses
    # tool, toolAction, args (string values are templates) and sessionKey.
    account_id: str | None = Field(default=None, alias="accountId")
    thread_id: str | None = Field(default=None, alias="threadId")
    tool: str | None = None
    tool_action: str | None = Field(default=None, alias="toolAction")
    args: dict[str, Any] | None = None
    retry_tool_errors: bool | None = Field(
        default=None, alias="retryToolErrors"
    )  # `tool`: rerun one that threw
    transform: TransformRef | None = None
    # Relay extension: deliver to a gateway named in `gateways:` instead of the source's.
    gateway: str | None = None
    # Relay extensions (not in OpenClaw's hooks.mappings), see docs/agent-safety.md:
    fence: bool | list[str] = Field(
        default=True,
        description="fence untrusted fields rendered by messageTemplate/textTemplate: true = the "
        "preset's declared fields, a list = those and these expressions, false = none",
    )
    cooldown: CooldownConfig | None = None
    batch: BatchConfig | None = None
    delay: Annotated[DelayConfig | None, BeforeValidator(_delay_shorthand)] = None
    cancel: CancelConfig | None = None

    def fenced_fields(self, declared: Sequence[str]) -> tuple[str, ...]:
        if self.fence is False:
            return ()
        extra = self.fence if isinstance(self.fence, list) else []
        return (*declared, *extra)

    @field_validator("allow_unsafe_external_content")
    @classmethod
    def _never_unsafe(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError(
                "the relay never sends allowUnsafeExternalContent: true; sender text stays wrapped "
                "by the gateway (docs/security.md)"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _openclaw_only(cls, data: Any) -> Any:
        """OpenClaw keys the relay does not implement, refused with what to do instead (pydantic
        would only say "Extra inputs are not permitted")."""
        if isinstance(data, dict) and "forEach" in data:
            raise ValueError(FOR_EACH_UNSUPPORTED)
        return data

    @model_validator(mode="after")
    def _one_gate(self) -> MappingConfig:
        if sum(x is not None for x in (self.cooldown, self.batch, self.delay)) > 1:
            raise ValueError("a mapping has at most one of `cooldown`, `batch` and `delay`")
        return self
