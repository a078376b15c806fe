"""The two things the relay delivers: pydantic models of the gateway's /hooks/agent and /hooks/wake bodies."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

WakeMode = Literal["now", "next-heartbeat"]
Thinking = Literal["off", "minimal", "low", "medium", "high"]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def body(self) -> dict[str, Any]:
        """The JSON body the gateway expects: camelCase names, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude={"kind"})


class AgentAction(_Action):
    """`POST /hooks/agent`: start an agent turn with `message`."""

    kind: Literal["agent"] = "agent"
    message: str = Field(min_length=1)
    name: str | None = None
    agent_id: str | None = Field(default=None, alias="agentId")
    session_key: str | None = Field(default=None, alias="sessionKey")
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
    text: str = Field(min_length=1)
    mode: WakeMode = "now"

    @property
    def session_key(self) -> None:
        return None


Action = Annotated[AgentAction | WakeAction, Field(discriminator="kind")]
action_adapter: TypeAdapter[AgentAction | WakeAction] = TypeAdapter(Action)


def action_id(source: str, delivery_id: str, index: int) -> str:
    """A stable id per (source, delivery id, action index): the Idempotency-Key of every attempt."""
    digest = hashlib.sha256(f"{source}\x00{delivery_id}\x00{index}".encode()).hexdigest()
    return f"act_{digest[:32]}"
