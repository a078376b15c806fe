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
from typing import NamedTuple

from redis import Redis
from rq.job import Job, JobStatus

from relay.store import keys, scripts, states


def lua_append(count: str, lane_key: str, action_id: str, now: str, ttl: str, seen: str | None = None) -> str:
    """Lua that appends `count` actions to their lanes, for relay.hold's scripts (the scripts of
    relay/store/scripts call `lane_append` of lanes.lua instead).

    Each argument is a Lua expression; `lane_key` and `action_id` may use the loop index `i`. The
    action's record is created too, so a lane never holds an id the turn check would take for an
    expired one. With `seen` (a Lua table), the lane keys are gathered there instead of added to
    the lanes set one by one: the script adds them once at its end (`lua_add_lanes`).
    """
    add = f"{seen}[{lane_key}] = true" if seen else f"redis.call('SADD', '{keys.LANES}', {lane_key})"
    return f"""
for i = 1, {count} do
  local action = '{keys.ACTION_PREFIX}' .. {action_id}
  redis.call('HSETNX', action, 'state', '{states.QUEUED}')
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
    """Whether it is the action's turn (else it is marked waiting). A delivery job checks this with
    the pauses and the circuit in one call (relay.delivery.gate); this is the same check alone."""
    script = redis.register_script(scripts.LANE_TURN)  # called by EVALSHA: the text is not sent each time
    return bool(script(keys=[lane_key, keys.action(action_id)], args=[action_id, keys.ACTION_PREFIX]))


class Turn(NamedTuple):
    """The next action of a session, claimed for a new job, and that job's id."""

    action_id: str
    job_id: str


def hand_off(redis: Redis, lane_key: str, action_id: str) -> Turn | None:
    """`action_id` is finished: claim the lane's next waiting action for a job (and count its turn)."""
    script = redis.register_script(scripts.LANE_HAND_OFF)
    nxt = script(keys=[lane_key], args=[action_id, repr(time.time()), keys.ACTION_PREFIX])
    if not nxt:
        return None
    head = nxt[0].decode()
    return Turn(head, turn_job_id(head, int(nxt[1])))


def stalled_heads(redis: Redis, min_age: float = 10.0) -> list[str]:
    """Lane heads that wait for a job nobody will run (their hand-off was cut short)."""
    stalled = []
    for raw_lane in redis.sscan_iter(keys.LANES, count=500):
        lane = raw_lane.decode()
        head = redis.lindex(lane, 0)
        if head is None:
            redis.eval(scripts.LANE_FORGET_IF_EMPTY, 2, keys.LANES, lane)
            continue
        aid = head.decode()
        state, job_id, queued_at = redis.hmget(keys.action(aid), "state", "job_id", "queued_at")
        waiting = state is not None and state.decode() in (states.WAITING, states.QUEUED)
        if not waiting or time.time() - float(queued_at or 0) < min_age:
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
    """Count a new turn of the action: the id of the job that runs it."""
    return turn_job_id(action_id, int(redis.hincrby(keys.action(action_id), "turns", 1)))


def turn_job_id(action_id: str, turn: int) -> str:
    return f"{action_id}-t{turn}"
