"""Dead letters: list them, show one, and replay them (with the same Idempotency-Key by default)."""

from __future__ import annotations

import time
from typing import Any

from redis import Redis
from rq import Queue

from relay.config import Settings
from relay.store import keys, states
from relay.store.events import load_action
from relay.store.jobs import enqueue_delivery


def list_dead(redis: Redis, *, source: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first."""
    rows = []
    for raw in redis.zrevrange(keys.DEAD, 0, -1):
        record = load_action(redis, raw.decode())
        if not record or (source and record.get("source") != source):
            continue
        rows.append({"id": raw.decode(), **record})
        if len(rows) >= limit:
            break
    return rows


def replay(redis: Redis, settings: Settings, action_id: str, *, new_key: bool = False) -> bool:
    """Queue a dead action again. Returns False when it is not a dead letter (or is gone).

    It keeps its Idempotency-Key, so a gateway that did start the run answers with the same runId;
    `new_key` gives it a fresh key, for a body the gateway must treat as new.
    """
    key = keys.action(action_id)
    if redis.hget(key, "state") != states.DEAD.encode():
        return False
    replays = int(redis.hincrby(key, "replays", 1))
    session = redis.hget(key, "session_key")
    queue = Queue(settings.queue, connection=redis)
    with redis.pipeline(transaction=True) as pipe:
        pipe.multi()
        pipe.hset(key, mapping={"state": states.QUEUED, "attempts": 0, "queued_at": repr(time.time())})
        pipe.hdel(key, "dead_reason", "dead_at", "next_attempt_at")
        if new_key:
            pipe.hset(key, "idempotency_key", f"{action_id}-r{replays}")
        pipe.expire(key, settings.event_ttl_seconds)
        pipe.zrem(keys.DEAD, action_id)
        pipe.zadd(keys.PENDING, {action_id: time.time() + 60})
        if session:
            pipe.rpush(keys.lane(session.decode()), action_id)
            pipe.sadd(keys.LANES, keys.lane(session.decode()))
        enqueue_delivery(
            queue, pipe, settings, action_id, f"{action_id}-replay{replays}", f"replay {action_id}"
        )
        pipe.execute()
    return True
