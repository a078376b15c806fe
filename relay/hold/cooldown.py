"""Cooldown per entity: at most one agent turn per rendered key per window, across every process.

A mapping's `cooldown: {key, window, mode}` (relay.protocol.mapping.CooldownConfig) names the entity
(`{{payload.repository.full_name}}#{{payload.pull_request.number}}`):

- `drop`: before the event is recorded, `SET relay:cooldown:drop:<key> NX PX window` decides; the
  window's first event goes on, later ones are recorded as skipped ("cooldown ..."). A sender's
  retry of the first event (same delivery id) passes again, so a 503 never loses it.
- `last`: every event is recorded, with its actions, but not queued; `offer` then marks it `held`
  and adds it to the key's candidates (`relay:cooldown:last:<key>`, a zset), and the window's first
  event schedules the flush at window end (`relay:cooldown:due`, a zset). `flush_due` (run by every
  router) picks the newest held candidate and, in one script call, queues it like any recorded
  event (inbox + session lanes), marks the others skipped ("superseded") and forgets the window.
  One script call per window: a flush happens exactly once, whichever routers race for it, and a
  router that dies before it leaves the window due for the next one. Action ids come from the
  chosen event's (source, delivery id), as always.

Also: `note_skip` records why an event was skipped, for `relay events`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from relay.hold import windows as held
from relay.protocol.mapping import CooldownConfig
from relay.store import keys

log = logging.getLogger("relay.cooldown")

DUE = held.DUE  # zset: candidates key -> when its window closes (ms), shared with relay.hold.batching
MAX_KEY = held.MAX_KEY
LAST_PREFIX = keys.PREFIX + "cooldown:last:"

# KEYS: drop key. ARGV: holder (source + delivery id), window ms. 1: passes, 0: dropped.
_ADMIT_DROP = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then return 1 end
return 0
"""

# KEYS: due, inbox. ARGV: candidates key, now ms, now s, ttl s.
_FLUSH = (
    f"""
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
local cands = redis.call('ZREVRANGE', ARGV[1], 0, -1)
local chosen = false
for _, eid in ipairs(cands) do
  local ek = '{keys.PREFIX}event:' .. eid
  if redis.call('HGET', ek, 'state') == 'held' then
    if not chosen then
      chosen = eid
    else
      redis.call('HSET', ek, 'state', 'skipped', 'reason', 'cooldown: superseded by ' .. chosen)
    end
  end
end
redis.call('DEL', ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if not chosen then return false end
"""
    + held.lua_queue(
        "chosen",
        "'cooldown: the latest event of its window, queued when the window closed'",
        "KEYS[2]",
        "ARGV[3]",
        "ARGV[4]",
    )
    + """
return chosen
"""
)


def _key(kind: str, key: str) -> str:
    return f"{keys.PREFIX}cooldown:{kind}:{key[:MAX_KEY]}"


@dataclass(frozen=True, slots=True)
class Gate:
    key: str
    config: CooldownConfig
    drop: bool = False  # drop mode, and this event is not the window's first
    hold: bool = False  # last mode: record, then `offer`

    @property
    def reason(self) -> str:
        return (
            f"cooldown {self.key}: an event for it passed less than {self.config.window:g} s ago (mode drop)"
        )


async def admit(
    redis: AsyncRedis, cooldown: tuple[str, CooldownConfig] | None, source: str, delivery_id: str
) -> Gate | None:
    """Decide, before recording, what a cooldown does to this event (None: no cooldown applies)."""
    if cooldown is None:
        return None
    key, cfg = cooldown
    if cfg.mode == "last":
        return Gate(key, cfg, hold=True)
    passed = await redis.eval(
        _ADMIT_DROP, 1, _key("drop", key), f"{source}\x00{delivery_id}", max(1, int(cfg.window * 1000))
    )
    return Gate(key, cfg, drop=not passed)


async def offer(redis: AsyncRedis, gate: Gate, event_id: str, ttl: int) -> bool:
    """Hold a recorded event as its key's latest candidate (idempotent: a retry offers it again)."""
    reason = f"cooldown {gate.key}: held; the latest event of the window is queued when it closes"
    return await held.offer(redis, event_id, _key("last", gate.key), gate.config.window, ttl, reason)


async def note_skip(redis: AsyncRedis, event_id: str, reason: str) -> None:
    """Record why an event was skipped (shown by `relay events`), and count feedback-loop skips."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.event(event_id), "reason", reason)
        if "feedback-loop guard" in reason:
            pipe.hincrby(keys.STATS, "skipped_bot", 1)
        elif reason.startswith("cooldown "):
            pipe.hincrby(keys.STATS, "skipped_cooldown", 1)
        await pipe.execute()


def flush_one(redis: Redis, raw: bytes, now: float, ttl: int) -> str | None:
    """Queue the chosen event of one closed window (`relay.hold.windows.flush_due` calls it)."""
    chosen: Any = redis.eval(_FLUSH, 2, DUE, keys.INBOX, raw, int(now * 1000), repr(now), ttl)
    if not chosen:
        return None
    eid = chosen.decode() if isinstance(chosen, bytes) else str(chosen)
    log.info("cooldown window closed; event %s queued", eid)
    return eid


def flush_due(redis: Redis, ttl: int, now: float | None = None, limit: int = 100) -> list[str]:
    """Queue the chosen event of every cooldown window that has closed; returns their event ids."""
    current = time.time() if now is None else now
    flushed = []
    for raw, _score in held.due(redis, current, limit):
        if raw.startswith(LAST_PREFIX.encode()):
            eid = flush_one(redis, raw, current, ttl)
            if eid:
                flushed.append(eid)
    return flushed
