"""The reconciler re-queues an action whose job vanished, and leaves healthy ones alone."""

from __future__ import annotations

import time

import redis
from rq import Queue
from rq.job import Job

from relay.config import Settings
from relay.store import keys
from relay.worker.reconcile import SLACK, reconcile


def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, gateway={"token": "t"})


def action(client: redis.Redis, aid: str, **fields: str) -> None:
    client.hset(keys.action(aid), mapping={"kind": "agent", "body": b'{"message": "m"}', **fields})
    client.zadd(keys.PENDING, {aid: 0})


def test_forgotten_actions_get_a_new_job_and_healthy_ones_do_not(
    redis_client: redis.Redis, redis_server
) -> None:
    now = time.time()
    cfg = settings(redis_server.url)
    action(redis_client, "act_lost_retry", state="retrying", next_attempt_at=repr(now - SLACK - 5))
    action(redis_client, "act_lost_queued", state="queued", job_id="act_lost_queued")
    action(redis_client, "act_soon", state="retrying", next_attempt_at=repr(now + 5))
    action(redis_client, "act_done", state="delivered")
    action(redis_client, "act_waiting", state="waiting")
    Queue("relay", connection=redis_client).enqueue("relay.delivery.deliver", "act_busy", job_id="act_busy")
    action(redis_client, "act_busy", state="queued", job_id="act_busy")

    requeued = reconcile(redis_client, cfg, now)

    assert sorted(requeued) == ["act_lost_queued", "act_lost_retry"]
    for aid in requeued:
        job_id = redis_client.hget(keys.action(aid), "job_id").decode()
        assert job_id.startswith(f"{aid}-t") and Job.fetch(job_id, connection=redis_client).args == (aid,)
    assert redis_client.zscore(keys.PENDING, "act_done") is None  # finished: forgotten by the index
    assert (
        redis_client.zscore(keys.PENDING, "act_soon") == now + 5 + SLACK
    )  # looked at after its next attempt
    assert redis_client.zscore(keys.PENDING, "act_waiting") > now  # a session turn, not a lost job
    assert reconcile(redis_client, cfg, now) == []  # nothing is due again at once
