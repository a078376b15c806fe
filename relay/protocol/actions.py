"""What the relay delivers: pydantic models of the gateway's /hooks/agent and /hooks/wake bodies, and of
its other doors (docs/gateways.md): the WebSocket RPC `send` params and the `POST /tools/invoke` body."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

WakeMode = Literal["now", "next-heartbeat"]
Thinking = Literal["off", "minimal", "low", "medium", "high"]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _no_control(value: str | None) -> str | None:
    if value is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError("must not contain control characters")
    return value


# A message or text of only whitespace is refused (400), as the gateway would; session keys name a
# session and are refused with control characters (a newline would split log lines and keys).
Text = Annotated[str, Field(min_length=1), AfterValidator(_not_blank)]
SessionKey = Annotated[str | None, Field(alias="sessionKey"), AfterValidator(_no_control)]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def body(self) -> dict[str, Any]:
        """The JSON body the gateway expects: camelCase names, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude={"kind"})


class AgentAction(_Action):
    """`POST /hooks/agent`: start an agent turn with `message`."""

    kind: Literal["agent"] = "agent"
    message: Text
    name: str | None = None
    agent_id: str | None = Field(default=None, alias="agentId")
    session_key: SessionKey = None
    wake_mode: WakeMode | None = Field(default=None, alias="wakeMode")
    deliver: bool | None = None
    channel: str | None = None
    to: str | None = None
    model: str | None = None
    thinking: Thinking | None = None
    timeout_seconds: int | None = Field(default=None, alias="timeoutSeconds", ge=0)


class WakeAction(_Action):
    """`POST /hooks/wake`: enqueue a system event with `text`."""

    kind: Literal["wake"] = "wake"
    text: Text
    mode: WakeMode = "now"

    @property
    def session_key(self) -> None:
        return None


class SendAction(_Action):
    """Gateway WebSocket RPC `send`: post `message` to `to` on a channel, without an agent turn.

    `body()` is the RPC params without `idempotencyKey`: the delivery job adds the action's key.
    """

    kind: Literal["send"] = "send"
    to: str = Field(min_length=1)
    message: str | None = Field(default=None, min_length=1)  # blank counts as absent: see below
    media_url: str | None = Field(default=None, alias="mediaUrl", min_length=1)
    media_urls: list[str] | None = Field(default=None, alias="mediaUrls")
    channel: str | None = None
    account_id: str | None = Field(default=None, alias="accountId")
    agent_id: str | None = Field(default=None, alias="agentId")
    reply_to_id: str | None = Field(default=None, alias="replyToId")
    thread_id: str | None = Field(default=None, alias="threadId")
    silent: bool | None = None
    session_key: SessionKey = None

    @model_validator(mode="after")
    def _text_or_media(self) -> SendAction:
        # The gateway's check: "invalid send params: text or media is required".
        if not (self.message and self.message.strip()) and not self.media_url and not self.media_urls:
            raise ValueError("a send needs a message or media")
        return self


class ToolAction(_Action):
    """`POST /tools/invoke`: run one gateway tool with `args`, without an agent turn."""

    kind: Literal["tool"] = "tool"
    tool: str = Field(min_length=1)
    action: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    session_key: SessionKey = None
    # Relay-only, stored with the body and removed before the POST (relay.delivery.send_and_tool):
    # retry a tool that threw (500 tool_error) instead of dead-lettering it. Off: a tool that ran
    # is not run again.
    retry_tool_errors: bool | None = Field(default=None, alias="retryToolErrors")


AnyAction = AgentAction | WakeAction | SendAction | ToolAction
Action = Annotated[AnyAction, Field(discriminator="kind")]
action_adapter: TypeAdapter[AnyAction] = TypeAdapter(Action)


def action_id(source: str, delivery_id: str, index: int) -> str:
    """A stable id per (source, delivery id, action index): the Idempotency-Key of every attempt."""
    digest = hashlib.sha256(f"{source}\x00{delivery_id}\x00{index}".encode()).hexdigest()
    return f"act_{digest[:32]}"
