"""Cooldown per entity: at most one agent turn per rendered key per window, across every process.

A mapping's `cooldown: {key, window, mode}` (relay.protocol.mapping_config.CooldownConfig) names
the entity (`{{payload.repository.full_name}}#{{payload.pull_request.number}}`):

- `drop`: before the event is recorded, `SET relay:cooldown:drop:<key> NX PX window` decides; the
  window's first event goes on, later ones are recorded as skipped ("cooldown ..."). A sender's
  retry of the first event (same delivery id) passes again, so a 503 never loses it.
- `last`: every event is recorded, with its actions, but not queued; `offer` then marks it `held`
  and adds it to the key's candidates (`relay:cooldown:last:<key>`, a zset), and the window's first
  event schedules the flush at window end (`relay:cooldown:due`, a zset). `flush_one` (run by
  every router through `relay.hold.flush_due`) picks the newest held candidate and, in one script
  call, queues it like any recorded event (inbox + session lanes), marks the others skipped
  ("superseded") and forgets the window.
  One script call per window: a flush happens exactly once, whichever routers race for it, and a
  router that dies before it leaves the window due for the next one. Action ids come from the
  chosen event's (source, delivery id), as always.
"""

from __future__ import annotations

import logging
from typing import Any

from redis import Redis

from relay.config import Settings
from relay.hold import windows as held
from relay.protocol.mapping import Hold
from relay.protocol.mapping_config import CooldownConfig
from relay.store import keys

log = logging.getLogger("relay.cooldown")


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
  local ek = '{keys.EVENT_PREFIX}' .. eid
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


def _drop_key(key: str) -> str:
    return keys.COOLDOWN_DROP + key[: held.MAX_KEY]


def _last_key(key: str) -> str:
    return keys.COOLDOWN_LAST + key[: held.MAX_KEY]


def _config(hold: Hold) -> CooldownConfig:
    assert isinstance(hold.config, CooldownConfig) and hold.key is not None
    return hold.config


def waits(hold: Hold) -> bool:
    """`last` holds every event until its window closes; `drop` decides at once (`admit`)."""
    return _config(hold).mode == "last"


def admit(redis: Redis, hold: Hold, source: str, delivery_id: str) -> str | None:
    """Before recording, in `drop` mode: None when the event is the window's first (or a retry of
    it) and goes on, else why it is skipped."""
    cfg = _config(hold)
    holder = f"{source}\x00{delivery_id}"
    passed = redis.eval(_ADMIT_DROP, 1, _drop_key(str(hold.key)), holder, max(1, int(cfg.window * 1000)))
    if passed:
        return None
    return f"cooldown {hold.key}: an event for it passed less than {cfg.window:g} s ago (mode drop)"


def offer(redis: Redis, hold: Hold, event_id: str, ttl: int) -> bool:
    """Hold a recorded event as its key's latest candidate (idempotent: a retry offers it again)."""
    reason = f"cooldown {hold.key}: held; the latest event of the window is queued when it closes"
    return held.offer(redis, event_id, _last_key(str(hold.key)), _config(hold).window, ttl, reason)


def flush_one(redis: Redis, settings: Settings, raw: bytes, score: float, now: float) -> str | None:
    """Queue the chosen event of one closed window (`relay.hold.flush_due` calls it)."""
    ttl = settings.event_ttl_seconds
    chosen: Any = redis.eval(_FLUSH, 2, held.DUE, keys.INBOX, raw, int(now * 1000), repr(now), ttl)
    if not chosen:
        return None
    eid = chosen.decode() if isinstance(chosen, bytes) else str(chosen)
    log.info("cooldown window closed; event %s queued", eid)
    return eid
