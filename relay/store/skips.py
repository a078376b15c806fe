"""Why an event was skipped: the reason `relay events` shows, and the skip counters."""

from __future__ import annotations

from redis.asyncio import Redis as AsyncRedis

from relay.store import keys


async def note_skip(redis: AsyncRedis, event_id: str, reason: str) -> None:
    """Record why an event was skipped (shown by `relay events`), and count feedback-loop and
    cooldown skips."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.event(event_id), "reason", reason)
        if "feedback-loop guard" in reason:
            pipe.hincrby(keys.STATS, "skipped_bot", 1)
        elif reason.startswith("cooldown "):
            pipe.hincrby(keys.STATS, "skipped_cooldown", 1)
        await pipe.execute()
