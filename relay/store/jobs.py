"""Creating delivery jobs: the one place that knows how an action becomes an RQ job."""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue, Retry

from relay.config import Settings
from relay.store import keys, lanes


def enqueue_delivery(
    queue: Queue,
    pipe: Any,
    settings: Settings,
    action_id: str,
    job_id: str,
    description: str,
    at_front: bool = False,
) -> None:
    """Add the RQ job that delivers `action_id` to `pipe` (a pipeline in MULTI), at the queue's end
    or, `at_front`, where the next worker takes it."""
    pipe.hset(keys.action(action_id), "job_id", job_id)
    queue.enqueue_call(
        "relay.delivery.deliver",
        args=(action_id,),
        job_id=job_id,
        pipeline=pipe,
        # interval 0: a job whose worker died is re-queued at once, without waiting for the scheduler.
        retry=Retry(max=settings.delivery.max_attempts, interval=0),
        timeout=int(settings.gateway.timeout_seconds) + 30,
        result_ttl=600,
        failure_ttl=settings.event_ttl_seconds,
        description=description,
        at_front=at_front,
    )


def queue_turn(
    redis: Redis, settings: Settings, action_id: str, job_id: str | None = None, at_front: bool = False
) -> None:
    """Queue a new job for an action whose session turn has come (`job_id`: the turn's, when
    already counted by `lanes.hand_off`)."""
    job_id = job_id or lanes.next_job_id(redis, action_id)
    with redis.pipeline(transaction=True) as pipe:
        pipe.multi()
        enqueue_delivery(
            Queue(settings.queue, connection=redis),
            pipe,
            settings,
            action_id,
            job_id,
            f"deliver {action_id} (its session's turn)",
            at_front=at_front,
        )
        pipe.execute()
