"""The reconciler: the last line of defence for an action whose job vanished.

Every routed action is listed in `keys.PENDING` until it is delivered or dead-lettered. Now and
then one router looks at the entries due for a check and queues a new job for an action that has
plainly been forgotten: retrying or paused well past its next attempt, delivering far longer than
any request can take, or queued without a job. RQ's own bookkeeping loses no job in normal
operation; under workers killed at random while others are starved of CPU, a job can end up
marked scheduled but absent from every registry. A second job for a live action is harmless:
the send lock, the delivered record and the session turn make it send nothing twice.
"""

from __future__ import annotations

import logging
import time

from redis import Redis
from rq.job import Job

from relay.config import Settings
from relay.store import keys, states
from relay.store.jobs import queue_turn

log = logging.getLogger("relay.reconcile")

SLACK = 30.0  # seconds past the moment an action's job should have run
BATCH = 500


def stuck_since(record: dict[bytes, bytes], settings: Settings, now: float) -> float | None:
    """When the action counts as forgotten if nothing has happened (None: never, it is fine)."""
    state = record.get(b"state", b"").decode()
    if state in states.WAITING_OUT:
        return float(record.get(b"next_attempt_at") or now) + SLACK
    if state == states.DELIVERING:
        return (
            float(record.get(b"last_attempt_at") or now)
            + settings.gateway.timeout_seconds
            + settings.delivery.heartbeat_grace_seconds
            + SLACK
        )
    return None


def reconcile(redis: Redis, settings: Settings, now: float | None = None) -> list[str]:
    """Check the pending actions that are due; queue a job for each forgotten one. Returns their ids."""
    now = time.time() if now is None else now
    requeued = []
    for raw in redis.zrangebyscore(keys.PENDING, "-inf", now, start=0, num=BATCH):
        aid = raw.decode()
        record = redis.hgetall(keys.action(aid))
        raw_state = record.get(b"state")
        state = raw_state.decode() if raw_state is not None else None
        if state is None or state in states.FINISHED:
            redis.zrem(keys.PENDING, aid)
            continue
        if state == states.QUEUED and not redis.exists(
            Job.key_for(record.get(b"job_id", aid.encode()).decode())
        ):
            due = now  # queued, yet no job exists
        else:
            due = stuck_since(record, settings, now) or now + 60
        if due <= now:
            log.warning("action %s (%s) had no live job; queued again", aid, state, extra={"action_id": aid})
            queue_turn(redis, settings, aid)
            requeued.append(aid)
            due = now + settings.gateway.timeout_seconds + 60
        redis.zadd(keys.PENDING, {aid: due})
    return requeued
