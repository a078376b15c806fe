"""Delayed actions: `delay: 10m` sends a mapping's actions later, unless a `cancel` comes first.

A mapping's `delay: {after, key}` (relay.protocol.mapping_config.DelayConfig) records the event with
its actions but does not queue them: `schedule` marks it `delayed` and puts it in the due zset that
cooldown and batching windows share (`relay.hold.windows.DUE`, member `relay:delayed:<event id>`,
score: when to send), and in the index of its rendered key. An event whose mapping has `cancel:
{key}` rendering the same key cancels every event still `delayed` under it (state `cancelled`). When
the time comes a router fires it: one script checks that it is still `delayed` and queues it like
any recorded event (inbox + session lanes); cancel is one script too. So exactly one of them wins: a
cancelled action is never sent, and a cancel that comes after the action was queued changes nothing
(its reason says so). Nothing waits in a process: a crash loses nothing, a late router fires it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from redis import Redis

from relay.config import Settings
from relay.hold import windows as held
from relay.protocol.mapping import Hold
from relay.protocol.mapping_config import DelayConfig
from relay.store import keys

log = logging.getLogger("relay.delayed")


# KEYS: event, due, index (or ""). ARGV: event id, fire at ms, ttl s, reason. Idempotent.
_SCHEDULE = f"""
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'skipped' and state ~= 'delayed' then return 0 end
if state == 'skipped' and redis.call('HEXISTS', KEYS[1], 'reason') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'delayed', 'reason', ARGV[4], 'fire_at', tonumber(ARGV[2]) / 1000)
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], '{keys.DELAYED}' .. ARGV[1])
if KEYS[3] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
return 1
"""

# KEYS: due, inbox. ARGV: due member, now ms, now s, ttl s. Returns the queued event id or nil.
_FIRE = (
    f"""
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('ZREM', KEYS[1], ARGV[1])
local eid = string.sub(ARGV[1], {len(keys.DELAYED) + 1})
if redis.call('HGET', '{keys.EVENT_PREFIX}' .. eid, 'state') ~= 'delayed' then return false end
"""
    + held.lua_queue("eid", "'delayed: queued when its delay ended'", "KEYS[2]", "ARGV[3]", "ARGV[4]")
    + """
return eid
"""
)

# KEYS: index, due, stats. ARGV: reason, now s. Returns how many delayed events were cancelled.
_CANCEL = f"""
local n = 0
for _, eid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local ek = '{keys.EVENT_PREFIX}' .. eid
  if redis.call('HGET', ek, 'state') == 'delayed' then
    redis.call('HSET', ek, 'state', 'cancelled', 'reason', ARGV[1], 'cancelled_at', ARGV[2])
    redis.call('ZREM', KEYS[2], '{keys.DELAYED}' .. eid)
    n = n + 1
  end
end
redis.call('DEL', KEYS[1])
if n > 0 then redis.call('HINCRBY', KEYS[3], 'cancelled_delayed', n) end
return n
"""


def _index(key: str) -> str:
    return keys.DELAY_KEY + key[: held.MAX_KEY]


def schedule(redis: Redis, event_id: str, after: float, key: str | None, ttl: int) -> bool:
    """Mark a recorded event `delayed` until `after` seconds from now (idempotent)."""
    fire_at = time.time() + after
    reason = f"delayed {after:g} s" + (f", cancellable by key {key}" if key else "")
    done = redis.eval(
        _SCHEDULE,
        3,
        keys.event(event_id),
        held.DUE,
        _index(key) if key else "",
        event_id,
        int(fire_at * 1000),
        ttl,
        reason,
    )
    return bool(done)


def cancel(redis: Redis, key: str, by: str) -> int:
    """Cancel every event still delayed under `key`; returns how many."""
    n = redis.eval(
        _CANCEL, 3, _index(key), held.DUE, keys.STATS, f"cancelled by {by} (key {key})", repr(time.time())
    )
    if n:
        log.info("cancelled %d delayed event(s) of %s", n, key)
    return int(n)


def offer(redis: Redis, hold: Hold, event_id: str, ttl: int) -> bool:
    """Hold a recorded event until its delay ends (`schedule`, as the other kinds' `offer`)."""
    assert isinstance(hold.config, DelayConfig)
    return schedule(redis, event_id, hold.config.after, hold.key, ttl)


def cancel_by(redis: Redis, key: str, event_id: str) -> int:
    """What an event whose mapping has `cancel:` does once recorded: cancel, and note how many."""
    n = cancel(redis, key, event_id)
    if n:
        redis.hset(keys.event(event_id), "cancelled", n)
    return n


def fire_one(redis: Redis, settings: Settings, raw: bytes, score: float, now: float) -> str | None:
    """Queue one delayed event whose time has come (`relay.hold.flush_due` calls it)."""
    ttl = settings.event_ttl_seconds
    fired: Any = redis.eval(_FIRE, 2, held.DUE, keys.INBOX, raw, int(now * 1000), repr(now), ttl)
    if not fired:
        return None
    eid = fired.decode() if isinstance(fired, bytes) else str(fired)
    log.info("delay ended; event %s queued", eid)
    return eid
