"""Submitting an action durably: one action recorded as an event of its own, as the ingress
records a webhook (dedupe key, event, event-log entry and inbox entry in one script call).

What `relay.client`, the CLI's `relay agent`/`wake`/`send`/`tool` and the schedules' ticker
(`relay.worker.ticker`) share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis

from relay.config import Settings
from relay.protocol.actions import AgentAction, AnyAction, SendAction, WakeAction, action_id
from relay.protocol.compose import cut_text
from relay.store.events import Recorded, encode_actions, record_event, session_lanes


@dataclass(frozen=True, slots=True)
class Submitted:
    """What recording an action gave: its id (the Idempotency-Key), its event, and whether the
    delivery id had been recorded before (then nothing new was recorded)."""

    action_id: str
    event_id: str
    duplicate: bool


def text_map(raw: Any) -> dict[str, str]:
    """A Redis hash (bytes or str keys and values) as str → str."""
    return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def cut(action: AnyAction, max_bytes: int) -> AnyAction:
    """Long messages are cut as the ingress cuts them (the gateway refuses bodies over 256 KiB)."""
    if isinstance(action, AgentAction):
        return action.model_copy(update={"message": cut_text(action.message, max_bytes)})
    if isinstance(action, WakeAction):
        return action.model_copy(update={"text": cut_text(action.text, max_bytes)})
    if isinstance(action, SendAction) and action.message:
        return action.model_copy(update={"message": cut_text(action.message, max_bytes)})
    return action  # a tool's arguments are passed as they are


def event_fields(source: str, delivery_id: str, action: AnyAction) -> dict[str, Any]:
    """The fields of the event that carries one submitted action."""
    return {
        "source": source,
        "delivery_id": delivery_id,
        "headers": {},
        "body": orjson.dumps(action.body()),
        "actions": encode_actions(source, delivery_id, [action]),
        "action_count": 1,
        "lanes": session_lanes(source, delivery_id, [action]),
    }


def submitted(source: str, delivery_id: str, recorded: Recorded) -> Submitted:
    return Submitted(action_id(source, delivery_id, 0), recorded.event_id, recorded.duplicate)


def record_action(
    redis: Redis, settings: Settings, action: AnyAction, *, source: str, delivery_id: str
) -> Submitted:
    """Record one action as an event of `source` (what the CLI, the client and schedules share)."""
    recorded = record_event(
        redis,
        **event_fields(source, delivery_id, cut(action, settings.max_message_bytes)),
        dedupe_ttl=settings.dedupe_ttl_seconds,
        event_ttl=settings.event_ttl_seconds,
    )
    return submitted(source, delivery_id, recorded)
