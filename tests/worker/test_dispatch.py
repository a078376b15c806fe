"""The router (relay.worker.dispatch): inbox entries become RQ delivery jobs, in batches, exactly once."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from rq import Queue
from rq.job import Job

from relay.config import Settings
from relay.protocol.actions import AgentAction, WakeAction, action_id
from relay.store import keys
from relay.store.events import encode_actions, record_event
from relay.worker import dispatch
from relay.worker.dispatch import Router
from tests.conftest import RedisServer, wait_until
from tests.store.test_lanes import record_actions


@pytest.fixture
def settings(redis_server: RedisServer) -> Settings:
    return Settings(redis_url=redis_server.url, gateway={"token": "t"})


def record(client: redis.Redis, delivery_id: str, *messages: str, session: str | None = None) -> str:
    """Record an event with one agent action per message, as the ingress does; its event id."""
    return record_actions(client, delivery_id, [AgentAction(message=m, sessionKey=session) for m in messages])


def unrouted(client: redis.Redis) -> int:
    """Inbox entries not yet turned into jobs (each is deleted once its jobs are queued)."""
    return int(client.xlen(keys.INBOX))


def router(client: redis.Redis, settings: Settings, name: str = "r1", claim_idle_ms: int = 60_000) -> Router:
    dispatch.ensure_group(client)
    return Router(client, settings, name, claim_idle_ms=claim_idle_ms)


def test_ensure_group_may_run_again(redis_client: redis.Redis) -> None:
    dispatch.ensure_group(redis_client)
    dispatch.ensure_group(redis_client)  # every router calls it; the second is no error

    assert [g["name"] for g in redis_client.xinfo_groups(keys.INBOX)] == [keys.ROUTERS.encode()]


def test_each_action_becomes_one_delivery_job(redis_client: redis.Redis, settings: Settings) -> None:
    eid = record(redis_client, "d1", "first", "second", session="s1")
    aids = [action_id("src", "d1", i) for i in range(2)]

    assert router(redis_client, settings).step() == 1

    queue = Queue(settings.queue, connection=redis_client)
    assert sorted(queue.job_ids) == sorted(aids)
    for aid in aids:
        job = Job.fetch(aid, connection=redis_client)
        assert (job.func_name, job.args) == ("relay.delivery.deliver", (aid,))
        record_ = {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.action(aid)).items()}
        assert record_["event_id"] == eid and record_["kind"] == "agent" and record_["job_id"] == aid
        assert (record_["state"], record_["session_key"], record_["source"]) == ("queued", "s1", "src")
        assert redis_client.zscore(keys.PENDING, aid) is not None  # the reconciler watches it
    assert unrouted(redis_client) == 0
    assert redis_client.xpending(keys.INBOX, keys.ROUTERS)["pending"] == 0


def test_the_inbox_is_routed_in_batches(redis_client: redis.Redis, settings: Settings) -> None:
    for n in range(dispatch.BATCH + 50):
        record(redis_client, f"d{n}", "m")
    r = router(redis_client, settings)

    assert r.step() == dispatch.BATCH
    assert r.step() == 50
    assert r.step() == 0
    assert Queue(settings.queue, connection=redis_client).count == dispatch.BATCH + 50


def test_an_action_whose_job_exists_is_not_enqueued_again(
    redis_client: redis.Redis, settings: Settings
) -> None:
    eid = record(redis_client, "d1", "m")
    entry = [(b"0-1", {b"event": eid.encode()})]
    r = router(redis_client, settings)

    r.route(entry)
    r.route(entry)  # again, as when a slow router and the one that claimed its entry both route it

    assert Queue(settings.queue, connection=redis_client).job_ids == [action_id("src", "d1", 0)]


def test_an_entry_for_an_expired_event_is_dropped(redis_client: redis.Redis, settings: Settings) -> None:
    eid = record(redis_client, "d1", "m")
    redis_client.delete(keys.event(eid))

    assert router(redis_client, settings).step() == 1

    assert Queue(settings.queue, connection=redis_client).count == 0
    assert unrouted(redis_client) == 0


def test_entries_abandoned_by_a_dead_router_are_claimed_once_idle(
    redis_client: redis.Redis, settings: Settings
) -> None:
    record(redis_client, "d1", "m")
    dispatch.ensure_group(redis_client)
    # A router reads the entry, then dies before routing it.
    redis_client.xreadgroup(keys.ROUTERS, "dead-router", {keys.INBOX: ">"}, count=dispatch.BATCH)
    alive = router(redis_client, settings, "alive", claim_idle_ms=500)

    assert alive.step() == 0  # not idle long enough: its router may still be at work
    assert wait_until(alive.step, timeout=10) == 1

    assert Queue(settings.queue, connection=redis_client).job_ids == [action_id("src", "d1", 0)]
    assert redis_client.xpending(keys.INBOX, keys.ROUTERS)["pending"] == 0


def test_a_restarted_router_routes_what_it_read_without_waiting_for_the_claim(
    redis_client: redis.Redis, settings: Settings
) -> None:
    record(redis_client, "d1", "m")
    dispatch.ensure_group(redis_client)
    redis_client.xreadgroup(keys.ROUTERS, "r1", {keys.INBOX: ">"}, count=dispatch.BATCH)

    assert router(redis_client, settings, "r1", claim_idle_ms=60_000).step() == 1
    assert Queue(settings.queue, connection=redis_client).count == 1


def test_trim_keeps_the_newest_events_and_empties_the_older(
    redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    settings = Settings(redis_url=redis_server.url, gateway={"token": "t"}, events_max=2)
    eids = [record(redis_client, f"d{n}", "m") for n in range(5)]

    router(redis_client, settings).trim()

    assert [e.decode() for e in redis_client.zrange(keys.EVENTS, 0, -1)] == eids[-2:]
    for eid in eids[:3]:  # out of the log, without their body; their actions are kept
        assert redis_client.hmget(keys.event(eid), "body", "headers") == [None, None]
        assert redis_client.hget(keys.event(eid), "actions") is not None
    assert redis_client.hget(keys.event(eids[-1]), "body") == b"{}"


def test_sweep_queues_a_lane_head_left_without_a_job(redis_client: redis.Redis, settings: Settings) -> None:
    record(redis_client, "d1", "m", session="s1")
    aid = action_id("src", "d1", 0)
    # Its turn was handed over by a process that died before it enqueued the job.
    redis_client.hset(keys.action(aid), "queued_at", repr(time.time() - 60))

    router(redis_client, settings).sweep()

    job_id = redis_client.hget(keys.action(aid), "job_id").decode()
    assert job_id == f"{aid}-t1"
    assert Job.fetch(job_id, connection=redis_client).args == (aid,)


def test_a_running_router_routes_new_events_until_stopped(
    redis_client: redis.Redis, settings: Settings
) -> None:
    r = router(redis_client, settings)
    thread = threading.Thread(target=r.run, kwargs={"block_ms": 100})
    thread.start()
    try:
        actions = [WakeAction(text="w")]
        record_event(
            redis_client,
            source="src",
            delivery_id="d1",
            headers={},
            body=b"{}",
            actions=encode_actions("src", "d1", actions),
            action_count=1,
            dedupe_ttl=600,
            event_ttl=600,
        )
        wait_until(lambda: redis_client.exists(Job.key_for(action_id("src", "d1", 0))), timeout=10)
        assert Job.fetch(action_id("src", "d1", 0), connection=redis_client).args == (
            action_id("src", "d1", 0),
        )
    finally:
        r.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
