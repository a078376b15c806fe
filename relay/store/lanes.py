"""Session lanes: the actions of one sessionKey are delivered one at a time, in arrival order.

The ingress appends each action with a sessionKey to its lane (`keys.lane`) in the same script
call that records the event. A delivery job first asks for its turn: the lane's head goes on,
any other action is marked `waiting` and its job ends. When the head is delivered or
dead-lettered, `hand_off` removes it and claims the next waiting action, for which the caller
enqueues a job. A process that dies between those two steps leaves a head without a job;
`sweep`, run by every router now and then, finds such heads and enqueues them again.
"""

from __future__ import annotations

import time

from redis import Redis
from rq.job import Job, JobStatus

from relay.store import keys

# Drop lane heads that are finished (or whose record expired). Shared by the scripts below.
_DROP_FINISHED = f"""
local head
while true do
  head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local state = redis.call('HGET', '{keys.PREFIX}action:' .. head, 'state')
  if state == false or state == 'delivered' or state == 'dead' then
    redis.call('LPOP', KEYS[1])
  else
    break
  end
end
"""

# KEYS: lane, action. ARGV: action id. 1: this action's turn (or no lane); 0: marked waiting.
_TURN = (
    _DROP_FINISHED
    + """
if (not head) or head == ARGV[1] then return 1 end
redis.call('HSET', KEYS[2], 'state', 'waiting')
return 0
"""
)

# KEYS: lane. ARGV: finished action id, now. Returns the next action id claimed for a job, or nil.
_HAND_OFF = (
    "redis.call('LREM', KEYS[1], 1, ARGV[1])\n"
    + _DROP_FINISHED
    + f"""
if not head then return false end
local key = '{keys.PREFIX}action:' .. head
if redis.call('HGET', key, 'state') ~= 'waiting' then return false end
redis.call('HSET', key, 'state', 'queued', 'queued_at', ARGV[2])
return head
"""
)

# KEYS: lanes set, lane. Forget an empty lane (atomically, so a concurrent append is not missed).
_FORGET_IF_EMPTY = """
if redis.call('LLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[1], KEYS[2]) return 1 end
return 0
"""


def lua_append(count: str, lane_key: str, action_id: str, now: str, ttl: str, seen: str | None = None) -> str:
    """Lua that appends `count` actions to their lanes (for scripts that record or re-queue events).

    Each argument is a Lua expression; `lane_key` and `action_id` may use the loop index `i`. The
    action's record is created too, so a lane never holds an id the turn check would take for an
    expired one. With `seen` (a Lua table), the lane keys are gathered there instead of added to
    the lanes set one by one: the script adds them once at its end (`lua_add_lanes`).
    """
    add = f"{seen}[{lane_key}] = true" if seen else f"redis.call('SADD', '{keys.LANES}', {lane_key})"
    return f"""
for i = 1, {count} do
  local action = '{keys.PREFIX}action:' .. {action_id}
  redis.call('HSETNX', action, 'state', 'queued')
  redis.call('HSETNX', action, 'queued_at', {now})
  redis.call('EXPIRE', action, {ttl})
  redis.call('RPUSH', {lane_key}, {action_id})
  {add}
end
"""


def lua_add_lanes(seen: str) -> str:
    """Lua that adds the lane keys gathered in the table `seen` to the lanes set, in one command."""
    return f"""
local lane_keys = {{}}
for lane in pairs({seen}) do lane_keys[#lane_keys + 1] = lane end
if #lane_keys > 0 then redis.call('SADD', '{keys.LANES}', unpack(lane_keys)) end
"""


LIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def my_turn(redis: Redis, lane_key: str, action_id: str) -> bool:
    return bool(redis.eval(_TURN, 2, lane_key, keys.action(action_id), action_id))


def hand_off(redis: Redis, lane_key: str, action_id: str) -> str | None:
    nxt = redis.eval(_HAND_OFF, 1, lane_key, action_id, repr(time.time()))
    return nxt.decode() if isinstance(nxt, bytes) else None


def stalled_heads(redis: Redis, min_age: float = 10.0) -> list[str]:
    """Lane heads that wait for a job nobody will run (their hand-off was cut short)."""
    stalled = []
    for raw_lane in redis.sscan_iter(keys.LANES, count=500):
        lane = raw_lane.decode()
        head = redis.lindex(lane, 0)
        if head is None:
            redis.eval(_FORGET_IF_EMPTY, 2, keys.LANES, lane)
            continue
        aid = head.decode()
        state, job_id, queued_at = redis.hmget(keys.action(aid), "state", "job_id", "queued_at")
        if state not in (b"waiting", b"queued") or time.time() - float(queued_at or 0) < min_age:
            continue
        job = (
            Job.fetch(job_id.decode(), connection=redis)
            if job_id and redis.exists(Job.key_for(job_id.decode()))
            else None
        )
        if job is None or job.get_status() not in LIVE:
            stalled.append(aid)
    return stalled


def next_job_id(redis: Redis, action_id: str) -> str:
    return f"{action_id}-t{int(redis.hincrby(keys.action(action_id), 'turns', 1))}"
