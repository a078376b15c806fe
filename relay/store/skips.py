"""Why an event was skipped: the reason `relay events` shows, and the skip counters."""

from __future__ import annotations

from redis import Redis

from relay.store import keys


def note_skip(redis: Redis, event_id: str, reason: str) -> None:
    """Record why an event was skipped (shown by `relay events`), and count feedback-loop and
    cooldown skips."""
    with redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.event(event_id), "reason", reason)
        if "feedback-loop guard" in reason:
            pipe.hincrby(keys.STATS, "skipped_bot", 1)
        elif reason.startswith("cooldown "):
            pipe.hincrby(keys.STATS, "skipped_cooldown", 1)
        pipe.execute()
