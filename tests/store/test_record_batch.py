"""The record script writes what a batch shares (stats, per-minute counters, the per-source trim, the
lanes set) once per call: a batch must leave Redis exactly as recording its events one by one does."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
import redis.asyncio as aioredis

from relay.store import keys
from relay.store.events import EventStore, record_event
from tests.conftest import RedisServer

# (source, delivery id, lanes, error): accepted with lanes, skipped (no action), parked, a duplicate
# inside the same batch, and a second source.
EVENTS: list[tuple[str, str, list[tuple[str, str]], str | None]] = [
    ("github", "d1", [("relay:lane:s1", "act_1")], None),
    ("github", "d2", [("relay:lane:s1", "act_2"), ("relay:lane:s2", "act_3")], None),
    ("github", "d3", [], None),
    ("github", "d4", [], "TransformError: boom"),
    ("github", "d1", [("relay:lane:s1", "act_1")], None),
    ("alertmanager", "a1", [("relay:lane:s3", "act_4")], None),
    ("alertmanager", "a2", [], None),
]


def snapshot(client: redis.Redis) -> dict[str, Any]:
    """What the shared writes leave: counters, per-minute counts, index sizes, lanes, TTLs set."""
    out: dict[str, Any] = {"stats": client.hgetall(keys.STATS), "lanes": client.smembers(keys.LANES)}
    for key in client.scan_iter(keys.minute(0)[:-1] + "*"):
        out[key] = (client.hgetall(key), client.ttl(key) > 0)
    for source in ("github", "alertmanager"):
        out[source] = client.zcard(keys.events_by_source(source))
    for lane in (b"relay:lane:s1", b"relay:lane:s2", b"relay:lane:s3"):
        out[lane] = client.lrange(lane, 0, -1)
    out["events"] = client.zcard(keys.EVENTS)
    out["inbox"] = client.xlen(keys.INBOX)
    out["parked"] = client.zcard(keys.PARKED)
    return out


def one_by_one(client: redis.Redis) -> list[bool]:
    duplicates = []
    for source, delivery, lanes, error in EVENTS:
        if error is not None:
            continue  # record_event has no error argument: parked events come only from the ingress
        rec = record_event(
            client,
            source=source,
            delivery_id=delivery,
            headers={},
            body=b"{}",
            actions=b"[]",
            action_count=len(lanes),
            lanes=lanes,
            dedupe_ttl=600,
            event_ttl=600,
        )
        duplicates.append(rec.duplicate)
    return duplicates


async def in_one_batch(
    url: str, events: list[tuple[str, str, list[tuple[str, str]], str | None]]
) -> list[bool]:
    client = aioredis.Redis.from_url(url)
    store = EventStore(client, dedupe_ttl=600, event_ttl=600)
    try:
        recorded = await asyncio.gather(
            *(
                store.record(
                    source=source,
                    delivery_id=delivery,
                    headers={},
                    body=b"{}",
                    actions=b"[]",
                    action_count=len(lanes),
                    lanes=lanes,
                    error=error,
                )
                for source, delivery, lanes, error in events
            )
        )
    finally:
        await client.aclose()
    return [r.duplicate for r in recorded]


def test_a_batch_leaves_what_one_by_one_leaves(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    sequential = one_by_one(redis_client)
    expected = snapshot(redis_client)
    assert sequential == [False, False, False, True, False, False]
    assert expected["stats"][b"event|duplicate|github"] == b"1"
    assert expected["lanes"] == {b"relay:lane:s1", b"relay:lane:s2", b"relay:lane:s3"}

    redis_client.flushall()
    calls_before = int(redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    batched = asyncio.run(in_one_batch(redis_server.url, [e for e in EVENTS if e[3] is None]))
    calls = int(redis_client.info("commandstats")["cmdstat_evalsha"]["calls"]) - calls_before
    assert batched == sequential
    assert calls <= 2  # the first request's call, then one for the rest: a batch did form
    assert snapshot(redis_client) == expected


def test_a_parked_event_in_a_batch_is_counted_and_indexed(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    batched = asyncio.run(in_one_batch(redis_server.url, EVENTS))
    assert batched == [False, False, False, False, True, False, False]
    stats = redis_client.hgetall(keys.STATS)
    assert stats[b"event|parked|github"] == b"1"
    assert stats[b"event|accepted|github"] == b"2" and stats[b"event|skipped|github"] == b"1"
    assert stats[b"event|duplicate|github"] == b"1"
    assert stats[b"event|accepted|alertmanager"] == b"1" and stats[b"event|skipped|alertmanager"] == b"1"
    assert redis_client.zcard(keys.PARKED) == 1
    assert redis_client.zcard(keys.events_by_source("github")) == 4
    minutes = [redis_client.hgetall(k) for k in redis_client.scan_iter(keys.minute(0)[:-1] + "*")]
    assert sum(int(m[b"received"]) for m in minutes) == 6  # every recorded event, not the duplicate
