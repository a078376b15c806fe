"""The relay's records in Redis: events (deduplicated, with their actions) and per-action state.

The ingress records an event, its dedupe key and its inbox entry with one script call, so a
202 always means all three are in Redis. The router (`relay.router`) turns inbox entries into
RQ jobs; the delivery job updates the action's record.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from . import keys
from .actions import AgentAction, WakeAction, action_id
from .lanes import lua_append

# KEYS: dedupe, event, events index, inbox, parked, then one session lane per lane entry
# ARGV: event id, now, dedupe ttl, event ttl, route ("1" to queue for delivery), parked ("1"),
#       n lanes, n action ids (one per lane key), then field, value, ...
_RECORD = (
    """
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
local lanes = tonumber(ARGV[7])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('HSET', KEYS[2], unpack(ARGV, 8 + lanes))
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
if ARGV[5] == '1' then
  redis.call('XADD', KEYS[4], '*', 'event', ARGV[1])
"""
    + lua_append("lanes", "KEYS[5 + i]", "ARGV[7 + i]", "ARGV[2]", "ARGV[4]")
    + """end
if ARGV[6] == '1' then redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1]) end
return {1, ARGV[1]}
"""
)


def new_event_id() -> str:
    # Time-ordered prefix so ids sort roughly by arrival in listings.
    return f"evt_{int(time.time() * 1000):x}{uuid.uuid4().hex[:12]}"


def encode_actions(source: str, delivery_id: str, actions: list[AgentAction | WakeAction]) -> bytes:
    return orjson.dumps(
        [
            {"id": action_id(source, delivery_id, i), "kind": a.kind, "body": a.body()}
            for i, a in enumerate(actions)
        ]
    )


def session_lanes(
    source: str, delivery_id: str, actions: list[AgentAction | WakeAction]
) -> list[tuple[str, str]]:
    """(lane key, action id) for every action with a sessionKey, in order.

    Lanes are filled when the event is recorded, in the same script call, so a session's order
    is the order in which the relay acknowledged its events, whatever happens after.
    """
    return [
        (keys.lane(a.session_key), action_id(source, delivery_id, i))
        for i, a in enumerate(actions)
        if a.session_key
    ]


@dataclass(frozen=True, slots=True)
class Recorded:
    event_id: str
    duplicate: bool


class EventStore:
    """Writes events from the (async) ingress."""

    def __init__(self, redis: AsyncRedis, *, dedupe_ttl: int, event_ttl: int) -> None:
        self.redis = redis
        self.dedupe_ttl = dedupe_ttl
        self.event_ttl = event_ttl
        self._record = redis.register_script(_RECORD)

    async def record(
        self,
        *,
        source: str,
        delivery_id: str,
        headers: dict[str, str],
        body: bytes,
        actions: bytes,
        action_count: int,
        lanes: list[tuple[str, str]] = (),  # type: ignore[assignment]
        error: str | None = None,
    ) -> Recorded:
        event_id = new_event_id()
        now = time.time()
        state = "parked" if error else ("queued" if action_count else "skipped")
        fields: list[Any] = [
            "source", source, "delivery_id", delivery_id, "received_at", repr(now), "state", state,
            "headers", orjson.dumps(headers), "body", body, "actions", actions, "action_count", action_count,
        ]  # fmt: skip
        if error:
            fields += ["error", error]
        result = await self._record(
            keys=[keys.dedupe(source, delivery_id), keys.event(event_id), keys.EVENTS, keys.INBOX, keys.PARKED,
                  *(lane for lane, _ in lanes)],
            args=[event_id, now, self.dedupe_ttl, self.event_ttl, "1" if action_count and not error else "0",
                  "1" if error else "0", len(lanes), *(aid for _, aid in lanes), *fields],
        )  # fmt: skip
        created, stored_id = result
        return Recorded(event_id=stored_id.decode() if isinstance(stored_id, bytes) else stored_id,
                        duplicate=not created)  # fmt: skip


def load_event(redis: Redis, event_id: str) -> dict[str, Any] | None:
    raw = redis.hgetall(keys.event(event_id))
    if not raw:
        return None
    data = {k.decode(): v for k, v in raw.items()}
    out: dict[str, Any] = {"id": event_id}
    for name in ("source", "delivery_id", "state", "error"):
        if name in data:
            out[name] = data[name].decode()
    out["received_at"] = float(data.get("received_at", b"0"))
    out["headers"] = orjson.loads(data.get("headers", b"{}"))
    out["body"] = data.get("body", b"")
    out["actions"] = orjson.loads(data.get("actions", b"[]") or b"[]")
    return out


def load_action(redis: Redis, aid: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in redis.hgetall(keys.action(aid)).items()}
