"""Cooldown per entity: at most one agent turn per rendered key per window, across every process.

A mapping's `cooldown: {key, window, mode}` (relay.mapping.CooldownConfig) names the entity
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

from . import keys
from .lanes import lua_append
from .mapping import CooldownConfig

log = logging.getLogger("relay.cooldown")

DUE = keys.PREFIX + "cooldown:due"  # zset: candidates key -> when its window closes (ms)
MAX_KEY = 300

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

# KEYS: event, candidates, due. ARGV: event id, now ms, window ms, ttl s, reason.
_OFFER = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'skipped' and state ~= 'held' then return 0 end
if state == 'skipped' and redis.call('HEXISTS', KEYS[1], 'reason') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'held', 'reason', ARGV[5])
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], 'NX', tonumber(ARGV[2]) + tonumber(ARGV[3]), KEYS[2])
return 1
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
local ek = '{keys.PREFIX}event:' .. chosen
local actions = cjson.decode(redis.call('HGET', ek, 'actions') or '[]')
local lk, la = {{}}, {{}}
for _, a in ipairs(actions) do
  local sk = type(a.body) == 'table' and a.body.sessionKey or nil
  if type(sk) == 'string' and sk ~= '' then
    lk[#lk + 1] = '{keys.PREFIX}lane:' .. sk
    la[#la + 1] = a.id
  end
end
redis.call('HSET', ek, 'state', 'queued', 'action_count', #actions, 'reason',
           'cooldown: the latest event of its window, queued when the window closed')
redis.call('XADD', KEYS[2], '*', 'event', chosen)
"""
    + lua_append("#lk", "lk[i]", "la[i]", "ARGV[3]", "ARGV[4]")
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
    passed = await redis.eval(_ADMIT_DROP, 1, _key("drop", key), f"{source}\x00{delivery_id}",
                              max(1, int(cfg.window * 1000)))  # fmt: skip
    return Gate(key, cfg, drop=not passed)


async def offer(redis: AsyncRedis, gate: Gate, event_id: str, ttl: int) -> bool:
    """Hold a recorded event as its key's latest candidate (idempotent: a retry offers it again)."""
    window_ms = max(1, int(gate.config.window * 1000))
    reason = f"cooldown {gate.key}: held; the latest event of the window is queued when it closes"
    done = await redis.eval(_OFFER, 3, keys.event(event_id), _key("last", gate.key), DUE, event_id,
                            int(time.time() * 1000), window_ms, ttl, reason)  # fmt: skip
    return bool(done)


async def note_skip(redis: AsyncRedis, event_id: str, reason: str) -> None:
    """Record why an event was skipped (shown by `relay events`), and count feedback-loop skips."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.event(event_id), "reason", reason)
        if "feedback-loop guard" in reason:
            pipe.hincrby(keys.STATS, "skipped_bot", 1)
        elif reason.startswith("cooldown "):
            pipe.hincrby(keys.STATS, "skipped_cooldown", 1)
        await pipe.execute()


def flush_due(redis: Redis, ttl: int, now: float | None = None, limit: int = 100) -> list[str]:
    """Queue the chosen event of every window that has closed; returns their event ids."""
    current = time.time() if now is None else now
    due: list[bytes] = redis.zrangebyscore(DUE, "-inf", int(current * 1000), start=0, num=limit)  # type: ignore[assignment]
    flushed: list[str] = []
    for raw in due:
        chosen: Any = redis.eval(_FLUSH, 2, DUE, keys.INBOX, raw, int(current * 1000), repr(current), ttl)
        if chosen:
            eid = chosen.decode() if isinstance(chosen, bytes) else str(chosen)
            log.info("cooldown window closed; event %s queued", eid)
            flushed.append(eid)
    return flushed
