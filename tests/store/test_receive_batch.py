"""The ingress's receipt (`EventStore.receive`: one MULTI/EXEC per batch, the records' HSETs then
receive_many.lua): what a batch stores, its duplicates, and a batch sent twice."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from relay.store import keys
from relay.store.events import EventStore, Recorded
from relay.store.receipts import Receipt, write_receipts
from tests.conftest import RedisServer

HEADERS = {"content-type": "application/json", "x-github-delivery": "d1"}


async def receive_together(
    url: str, deliveries: list[tuple[str, str, bytes, dict[str, str]]]
) -> list[Recorded]:
    client = aioredis.Redis.from_url(url)
    store = EventStore(client, dedupe_ttl=600, event_ttl=900)
    try:
        return list(
            await asyncio.gather(
                *(
                    store.receive(
                        source=source, delivery_id=delivery, headers=HEADERS, body=body, query=query
                    )
                    for source, delivery, body, query in deliveries
                )
            )
        )
    finally:
        await client.aclose()


def test_a_batch_stores_each_new_event_once(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    redis_client.flushall()
    deliveries = [
        ("github", "d1", b'{"n": 1}', {}),
        ("github", "d2", b'{"n": 2}', {"token": "x", "a": "b"}),
        ("github", "d1", b'{"n": 1}', {}),  # the same delivery again, in the same batch
        ("alertmanager", "d1", b"[]", {}),  # the same id from another source is another delivery
    ]
    got = asyncio.run(receive_together(redis_server.url, deliveries))
    assert [r.duplicate for r in got] == [False, False, True, False]
    assert got[2].event_id == got[0].event_id
    for recorded, (source, delivery, body, query) in zip(got, deliveries, strict=True):
        if recorded.duplicate:
            continue
        record: dict[bytes, Any] = redis_client.hgetall(keys.event(recorded.event_id))
        assert record[b"source"] == source.encode() and record[b"delivery_id"] == delivery.encode()
        assert record[b"state"] == b"received" and record[b"body"] == body
        assert orjson.loads(record[b"headers"]) == HEADERS
        assert (orjson.loads(record[b"query"]) if b"query" in record else {}) == query
        assert float(record[b"received_at"]) > 0 and b"traceparent" not in record
        assert 0 < redis_client.ttl(keys.event(recorded.event_id)) <= 900
        assert 0 < redis_client.ttl(keys.dedupe(source, delivery)) <= 600
    assert redis_client.zcard(keys.EVENTS) == 3 and redis_client.xlen(keys.INBOX) == 3
    assert len(redis_client.keys(keys.event("*"))) == 3  # no record left for the duplicate
    stats = redis_client.hgetall(keys.STATS)
    assert stats[b"event|received|github"] == b"2" and stats[b"event|duplicate|github"] == b"1"
    assert stats[b"event|received|alertmanager"] == b"1"


def test_a_later_duplicate_leaves_no_record(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    redis_client.flushall()
    (first,) = asyncio.run(receive_together(redis_server.url, [("github", "d9", b"{}", {})]))
    (again,) = asyncio.run(receive_together(redis_server.url, [("github", "d9", b"{}", {})]))
    assert again == Recorded(first.event_id, duplicate=True)
    assert len(redis_client.keys(keys.event("*"))) == 1 and redis_client.xlen(keys.INBOX) == 1


def test_a_batch_sent_twice_keeps_its_records(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    """A resend after a lost reply (redis-py retries on a connection error) finds its own ids in the
    dedupe keys: it must not delete the records, nor set a mapped event back to 'received'."""
    redis_client.flushall()

    async def twice() -> tuple[Any, Any, str]:
        client = aioredis.Redis.from_url(redis_server.url)
        ttls = {"dedupe_ttl": 600, "event_ttl": 900, "min_replicas": 0, "replica_timeout_ms": 1000}
        try:
            batch: list[Receipt] = [("evt_resent", "github", "d5", b"{}", b"{}", None, None)]
            first = await write_receipts(client, batch, **ttls)
            await client.hset(keys.event("evt_resent"), "state", "queued")  # the mapping stage ran
            return first, await write_receipts(client, batch, **ttls), "evt_resent"
        finally:
            await client.aclose()

    first, second, event_id = asyncio.run(twice())
    assert first == [b""] and second == [event_id.encode()]
    assert redis_client.hget(keys.event(event_id), "state") == b"queued"
    assert redis_client.xlen(keys.INBOX) == 1


def test_a_connection_lost_mid_batch_is_a_connection_error(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not any other exception (the ingress would answer 500): app.py answers 503 for a
    ConnectionError, and the sender retries."""

    async def lost(*args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Connection reset by peer")

    async def write() -> None:
        client = aioredis.Redis.from_url(redis_server.url)
        await client.ping()  # connected: the loss comes while the batch's replies are read
        monkeypatch.setattr(aioredis.Connection, "read_response", lost)
        try:
            batch: list[Receipt] = [("evt_lost", "github", "d6", b"{}", b"{}", None, None)]
            ttls = {"dedupe_ttl": 600, "event_ttl": 900, "min_replicas": 0, "replica_timeout_ms": 1000}
            await write_receipts(client, batch, **ttls)
        finally:
            monkeypatch.undo()
            await client.aclose()

    with pytest.raises(redis.exceptions.ConnectionError):
        asyncio.run(write())
