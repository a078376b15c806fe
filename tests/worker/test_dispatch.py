"""The router (relay.worker.dispatch): inbox entries become RQ delivery jobs, in batches, exactly once."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import orjson
import pytest
import redis
from redis.asyncio import Redis as AsyncRedis
from rq import Queue
from rq.job import Job

from relay.config import Settings
from relay.protocol.actions import AgentAction, WakeAction, action_id
from relay.store import keys
from relay.store.events import EventStore, encode_actions, record_event
from relay.worker import dispatch, mapper
from relay.worker.dispatch import Router
from relay.worker.mapper import EventMapper
from tests.conftest import RedisServer, wait_until
from tests.store.test_lanes import record_actions


@pytest.fixture
def settings(redis_server: RedisServer) -> Settings:
    # Source "src": the one of the recorded events; a received one is mapped into one agent action.
    return Settings(
        redis_url=redis_server.url,
        gateway={"token": "t"},
        sources={"src": {"preset": "generic", "token": "src-token"}},
        mappings=[{"match": {"path": "src"}, "action": "agent", "messageTemplate": "{{payload.text}}"}],
    )


def record(client: redis.Redis, delivery_id: str, *messages: str, session: str | None = None) -> str:
    """Record an event with one agent action per message, as the ingress does; its event id."""
    return record_actions(client, delivery_id, [AgentAction(message=m, sessionKey=session) for m in messages])


def receive(server: RedisServer, delivery_id: str, text: str) -> str:
    """Store a webhook of source "src" unmapped (state `received`) and put it on the inbox, as the
    ingress does; its event id."""

    async def store() -> str:
        client = AsyncRedis.from_url(server.url)
        try:
            received = await EventStore(client, dedupe_ttl=600, event_ttl=600).receive(
                source="src",
                delivery_id=delivery_id,
                headers={"content-type": "application/json"},
                body=orjson.dumps({"text": text}),
            )
        finally:
            await client.aclose()
        return received.event_id

    return asyncio.run(store())


def event_state(client: redis.Redis, event_id: str) -> str:
    return (client.hget(keys.event(event_id), "state") or b"").decode()


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


def test_entries_read_by_a_router_that_died_are_routed_once_by_the_next_lease_holder(
    redis_client: redis.Redis, settings: Settings, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mapper, "LEASE_MS", 1000)  # a dead holder's lease lapses (10 s in production)
    recorded = [record(redis_client, f"d{n}", f"m{n}") for n in range(3)]  # mapped when recorded
    received = [receive(redis_server, f"r{n}", f"t{n}") for n in range(2)]  # to be mapped
    alive = router(redis_client, settings, "alive", claim_idle_ms=60_000)  # no idle claim is due
    dead = router(redis_client, settings, "dead-router")
    # The lease holder reads the entries, then dies before mapping or routing them.
    assert dead.mapper.lead() == 2
    redis_client.xreadgroup(keys.ROUTERS, "dead-router", {keys.INBOX: ">"}, count=dispatch.BATCH)

    assert alive.step() == 0  # the dead router's lease has not lapsed: it may still be at work
    assert all(event_state(redis_client, eid) == "received" for eid in received)
    # Once it lapses, the next holder takes every pending entry at once (not `claim_idle_ms` later).
    assert wait_until(alive.step, timeout=10) == 5
    assert redis_client.get(keys.MAPPER) == b"alive"

    aids = [action_id("src", d, 0) for d in ("d0", "d1", "d2", "r0", "r1")]
    queue = Queue(settings.queue, connection=redis_client)
    assert sorted(queue.job_ids) == sorted(aids)
    assert [event_state(redis_client, eid) for eid in recorded + received] == ["queued"] * 5
    assert redis_client.xpending(keys.INBOX, keys.ROUTERS)["pending"] == 0 and unrouted(redis_client) == 0
    # None twice: nothing is left for the holder, and the dead router, back from a stall, no
    # longer leads, so it reads and maps nothing.
    assert alive.step() == 0
    assert dead.mapper.lead() == 0 and dead.step() == 0
    assert sorted(queue.job_ids) == sorted(aids)
    stats = redis_client.hgetall(keys.STATS)
    assert int(stats[b"event|accepted|src"]) == 2 + 3  # the two received mapped once (3 recorded)


def test_two_routers_never_map_at_once_and_a_stopped_one_hands_over_at_once(
    redis_client: redis.Redis, settings: Settings, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = threading.Lock()
    mapping: list[str] = []  # the routers mapping right now
    overlaps: list[list[str]] = []
    mapped_by: dict[str, set[str]] = {}
    original = EventMapper.map_received

    def watched(self: EventMapper, event_ids: list[str], **kwargs: Any) -> Any:
        with lock:
            mapping.append(self.holder)
            if len(mapping) > 1:
                overlaps.append(list(mapping))
        try:
            time.sleep(0.01)  # a batch that takes a while: the other router has time to try
            committed = original(self, event_ids, **kwargs)
            with lock:
                for eid in event_ids:
                    mapped_by.setdefault(eid, set()).add(self.holder)
            return committed
        finally:
            with lock:
                mapping.remove(self.holder)

    monkeypatch.setattr(EventMapper, "map_received", watched)
    routers = {name: router(redis_client, settings, name) for name in ("a", "b")}
    threads = {name: threading.Thread(target=r.run, kwargs={"block_ms": 100}) for name, r in routers.items()}
    for thread in threads.values():
        thread.start()
    try:
        received = []
        for n in range(40):
            received.append(receive(redis_server, f"e{n}", f"t{n}"))
            time.sleep(0.005)
        wait_until(
            lambda: all(event_state(redis_client, e) == "queued" and e in mapped_by for e in received),
            timeout=15,
        )
        assert overlaps == []  # never two mappers at once
        holder = redis_client.get(keys.MAPPER).decode()
        other = "b" if holder == "a" else "a"
        assert {h for eid in received for h in mapped_by[eid]} == {holder}  # the other never mapped
        assert all(len(mapped_by[eid]) == 1 for eid in received)

        # The holder stops: it gives the lease up, and the other maps at once, not LEASE_MS later.
        routers[holder].stop()
        threads[holder].join(timeout=10)
        assert not threads[holder].is_alive()
        assert redis_client.get(keys.MAPPER) in (None, other.encode())  # released, not left to lapse
        started = time.monotonic()
        after = receive(redis_server, "after-stop", "late")
        # Queued by the commit inside map_received; `mapped_by` is noted when it returns.
        wait_until(
            lambda: event_state(redis_client, after) == "queued" and after in mapped_by,
            timeout=mapper.LEASE_MS / 1000,
        )
        assert time.monotonic() - started < 2.0 < mapper.LEASE_MS / 1000
        assert mapped_by[after] == {other} and redis_client.get(keys.MAPPER) == other.encode()
    finally:
        for r in routers.values():
            r.stop()
        for thread in threads.values():
            thread.join(timeout=10)
    assert overlaps == []
    assert Queue(settings.queue, connection=redis_client).count == 41  # each mapped and routed once


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


def test_trim_leaves_an_event_not_mapped_yet_until_it_is_mapped(
    redis_client: redis.Redis, redis_server: RedisServer, settings: Settings
) -> None:
    small = settings.model_copy(update={"events_max": 1})
    waiting = receive(redis_server, "r0", "old")  # the oldest: a backlog no router has mapped yet
    newer = [record(redis_client, f"d{n}", "m") for n in range(2)]
    r = router(redis_client, small)

    r.trim()  # the mapping stage still reads its body: it keeps it, and its place in the log
    assert redis_client.hget(keys.event(waiting), "body") == b'{"text":"old"}'
    assert [e.decode() for e in redis_client.zrange(keys.EVENTS, 0, -1)] == [waiting, newer[-1]]
    assert redis_client.hmget(keys.event(newer[0]), "body", "headers") == [None, None]  # mapped: emptied
    assert r.step() == 3 and event_state(redis_client, waiting) == "queued"  # mapped, then trimmed
    r.trim()
    assert [e.decode() for e in redis_client.zrange(keys.EVENTS, 0, -1)] == newer[-1:]
    assert redis_client.hmget(keys.event(waiting), "body", "headers") == [None, None]


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
