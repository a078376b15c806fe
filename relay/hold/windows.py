"""Held events and due windows: the machinery `cooldown: {mode: last}` and `batch:` share.

An event that waits for its window is recorded with its actions but not queued; `offer` marks it
`held` and adds it to its key's candidates (a zset, one per key and kind), and the window's first
event schedules the flush at window end in one zset for every kind (`DUE`: candidates key -> when
its window closes, in ms; delayed events are due there too). A due member's prefix says which
kind flushes it (`relay.hold.KINDS`): `relay:cooldown:last:` (`relay.hold.cooldown`: the latest
event goes on), `relay:batch:held:` (`relay.hold.batching`: one action lists them all) or
`relay:delayed:` (`relay.hold.delayed`). Each flush is one script call that checks and removes
the due entry, so it happens exactly once whichever routers race for it; a router that dies
before it leaves the window due for the next one.
"""

from __future__ import annotations

import time

from redis import Redis

from relay.store import keys
from relay.store.lanes import lua_append

DUE = keys.HOLD_DUE  # zset: candidates key -> when its window closes (ms)
MAX_KEY = 300

# KEYS: event, candidates, due. ARGV: event id, now ms, window ms, ttl s, reason, max (0: none).
# Idempotent: a sender's retry of a held event offers it again without effect. With `max`
# candidates the window is due at once.
_OFFER = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'skipped' and state ~= 'held' then return 0 end
if state == 'skipped' and redis.call('HEXISTS', KEYS[1], 'reason') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'held', 'reason', ARGV[5])
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], 'NX', tonumber(ARGV[2]) + tonumber(ARGV[3]), KEYS[2])
local most = tonumber(ARGV[6])
if most > 0 and redis.call('ZCARD', KEYS[2]) >= most then
  local due = tonumber(redis.call('ZSCORE', KEYS[3], KEYS[2]))
  if due > tonumber(ARGV[2]) then redis.call('ZADD', KEYS[3], ARGV[2], KEYS[2]) end
end
return 1
"""


def lua_queue(eid: str, reason: str, inbox: str, now_s: str, ttl: str) -> str:
    """Lua that queues a recorded, held event like the record script does: its actions into their
    session lanes, `queued` with `reason`, and an inbox entry. Each argument is a Lua expression."""
    return f"""
local qk = '{keys.EVENT_PREFIX}' .. {eid}
local actions = cjson.decode(redis.call('HGET', qk, 'actions') or '[]')
local lk, la = {{}}, {{}}
for _, a in ipairs(actions) do
  local sk = type(a.body) == 'table' and a.body.sessionKey or nil
  if type(sk) == 'string' and sk ~= '' then
    lk[#lk + 1] = '{keys.LANE_PREFIX}' .. sk
    la[#la + 1] = a.id
  end
end
redis.call('HSET', qk, 'state', 'queued', 'action_count', #actions, 'reason', {reason})
redis.call('XADD', {inbox}, '*', 'event', {eid})
""" + lua_append("#lk", "lk[i]", "la[i]", now_s, ttl)


def offer(
    redis: Redis, event_id: str, candidates_key: str, window: float, ttl: int, reason: str, most: int = 0
) -> bool:
    """Hold a recorded event as one of its key's candidates until the window closes."""
    window_ms = max(1, int(window * 1000))
    done = redis.eval(
        _OFFER,
        3,
        keys.event(event_id),
        candidates_key,
        DUE,
        event_id,
        int(time.time() * 1000),
        window_ms,
        ttl,
        reason,
        most,
    )
    return bool(done)


def due(redis: Redis, now: float, limit: int = 100) -> list[tuple[bytes, float]]:
    """(candidates key, window end in ms) of the windows that have closed, oldest first."""
    return redis.zrangebyscore(DUE, "-inf", int(now * 1000), start=0, num=limit, withscores=True)  # type: ignore[return-value]
