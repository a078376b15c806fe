"""The ingress's batch write (`EventStore.receive`): one MULTI/EXEC for the events of a batch.

An `HSET` of each event's record, then `receive_many.lua` (dedupe key, state, TTL, event log,
inbox): the bodies reach Redis as plain command arguments, never through Lua, which copies and
hashes every byte of a string it is given (a quarter of Redis's CPU per event when they did).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import redis.exceptions
from redis.asyncio import Redis as AsyncRedis

from relay.errors import Unavailable
from relay.store import keys, scripts
from relay.store.replicas import ReplicasUnconfirmed

log = logging.getLogger("relay.store")

# What `EventStore.receive` hands in per event: id, source, delivery id, headers (JSON), body,
# query (JSON or None), traceparent (or None).
Receipt = tuple[str, str, str, bytes, bytes, Any, Any]


def _bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


# The batch's constant pieces, encoded once (see write_receipts).
_MULTI, _EXEC = _command(b"MULTI"), _command(b"EXEC")
_SOURCE, _DELIVERY_ID, _RECEIVED_AT = _bulk(b"source"), _bulk(b"delivery_id"), _bulk(b"received_at")
_HEADERS, _BODY, _QUERY, _TRACEPARENT = (
    _bulk(b"headers"),
    _bulk(b"body"),
    _bulk(b"query"),
    _bulk(b"traceparent"),
)
_RECEIVE_MANY = _bulk(scripts.RECEIVE_MANY.encode())
_RECEIVE_HEAD = [_bulk(k.encode()) for k in (keys.STATS, keys.EVENTS, keys.INBOX)]


async def write_receipts(
    client: AsyncRedis,
    events: list[Receipt],
    *,
    dedupe_ttl: int,
    event_ttl: int,
    min_replicas: int,
    replica_timeout_ms: int,
) -> list[bytes]:
    """One MULTI/EXEC for a batch: an HSET of each event's record, then the receive script.

    The RESP is written here, not by redis-py, which encodes each argument on its own (about a
    microsecond each, 30 a batch of this): the pieces that never change are encoded once. The
    body goes to Redis as a plain HSET argument, never through Lua (receive_many.lua says why).
    """
    now = repr(time.time()).encode()
    received_at = _RECEIVED_AT + _bulk(now)
    parts = [_MULTI]
    event_keys: list[bytes] = []
    event_args: list[bytes] = []
    for event_id, source, delivery_id, headers, body, query, traceparent in events:
        key = _bulk(keys.event(event_id).encode())
        fields = 5 + (query is not None) + (traceparent is not None)
        source_arg = _bulk(source.encode())
        parts += [b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * fields), key, _SOURCE, source_arg]
        parts += [
            _DELIVERY_ID,
            _bulk(delivery_id.encode()),
            received_at,
            _HEADERS,
            _bulk(headers),
            _BODY,
            _bulk(body),
        ]
        if query is not None:
            parts += [_QUERY, _bulk(query)]
        if traceparent is not None:
            parts += [_TRACEPARENT, _bulk(traceparent)]
        event_keys += [_bulk(keys.dedupe(source, delivery_id).encode()), key]
        event_args += [_bulk(event_id.encode()), source_arg]
    head_args = (keys.MINUTE_PREFIX, keys.MINUTE_TTL, dedupe_ttl, event_ttl)
    parts += [
        b"*%d\r\n$4\r\nEVAL\r\n" % (3 + 3 + len(event_keys) + 6 + len(event_args)),
        _RECEIVE_MANY,
        _bulk(b"%d" % (3 + len(event_keys))),
        *_RECEIVE_HEAD,
        *event_keys,
        *(_bulk(str(a).encode()) for a in head_args),
        _bulk(now),
        _bulk(b"%d" % len(events)),
        *event_args,
        _EXEC,
    ]
    if min_replicas:  # acknowledged only once that many replicas hold the batch
        parts.append(_command(b"WAIT", b"%d" % min_replicas, b"%d" % replica_timeout_ms))
    packed = b"".join(parts)
    expected = len(events) + 3 + (1 if min_replicas else 0)
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:

        async def exchange() -> list[Any]:
            await conn.send_packed_command(packed)
            # One timeout for all the replies (they come together), not one per reply as
            # redis-py sets: a timer per reply was a fifth of this call's CPU.
            try:
                async with asyncio.timeout(conn.socket_timeout):
                    return [await conn.read_response(timeout=math.inf) for _ in range(expected)]
            except TimeoutError:
                raise redis.exceptions.TimeoutError("timeout reading a batch's replies") from None

        async def failed(error: Exception) -> None:
            await conn.disconnect()

        try:
            replies = await conn.retry.call_with_retry(exchange, failed)
        except redis.exceptions.ResponseError as exc:
            # A command refused while queued (OOM, a demoted primary): EXEC then discarded the
            # whole transaction. Its other replies are still unread: this connection goes.
            await conn.disconnect()
            if not min_replicas:
                raise
            log.warning("recording a batch failed: %s", exc)
            raise Unavailable("storage unavailable; nothing was accepted, retry later") from exc
        except BaseException:
            await conn.disconnect()
            raise
    finally:
        await pool.release(conn)
    result = replies[len(events) + 2][-1]
    if isinstance(result, Exception):  # the script failed: its error, as a script call raises it
        raise result
    if min_replicas and int(replies[-1]) < min_replicas:
        raise ReplicasUnconfirmed(
            "storage replicas did not confirm the write in time; retry later",
            headers={"Retry-After": "1"},
        )
    answers = [b""] * len(events)  # b'': a new event
    for place, first in zip(result[::2], result[1::2], strict=True):
        answers[int(place) - 1] = first
    return answers
