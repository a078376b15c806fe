"""The relay's records in Redis: events (deduplicated, with their actions) and per-action state.

The ingress records an event, its dedupe key and its inbox entry with one script call, so a
202 always means all three are in Redis. The router (`relay.worker.dispatch`) turns inbox entries into
RQ jobs; the delivery job updates the action's record.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.exceptions
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from relay import tracing
from relay.errors import Unavailable
from relay.protocol.actions import AnyAction, action_id
from relay.store import keys, scripts, states

# The record script's arguments before its events' (relay/store/scripts/record_many.lua).
_MODEL_KEYS = [keys.STATS, keys.LANES]
_MODEL_ARGS = [keys.EVENTS_BY_SOURCE_PREFIX, keys.MINUTE_PREFIX, keys.MINUTE_TTL, keys.ACTION_PREFIX]

log = logging.getLogger("relay.queue")

MAX_BATCH = 64
MAX_BATCH_BYTES = 4 * 1024 * 1024


def new_event_id() -> str:
    # Time-ordered prefix so ids sort roughly by arrival in listings.
    return f"evt_{int(time.time() * 1000):x}{os.urandom(6).hex()}"


def encode_actions(
    source: str, delivery_id: str, actions: list[AnyAction], gateway: str | None = None
) -> bytes:
    """The actions as stored with their event; `gateway` names a gateway from `gateways:` (None: the
    default)."""
    extra = {"gateway": gateway} if gateway else {}
    return orjson.dumps(
        [
            {"id": action_id(source, delivery_id, i), "kind": a.kind, "body": a.body(), **extra}
            for i, a in enumerate(actions)
        ]
    )


def session_lanes(source: str, delivery_id: str, actions: list[AnyAction]) -> list[tuple[str, str]]:
    """(lane key, action id) for every action with a sessionKey, in order.

    Lanes are filled when the event is recorded, in the same script call, so a session's order
    is the order in which the relay acknowledged its events, whatever happens after.
    """
    return [
        (keys.lane(a.session_key), action_id(source, delivery_id, i))
        for i, a in enumerate(actions)
        if a.session_key
    ]


@dataclass(frozen=True, slots=True)
class Recorded:
    event_id: str
    duplicate: bool


def _record_args(
    *,
    source: str,
    delivery_id: str,
    headers: dict[str, str],
    body: bytes,
    actions: bytes,
    action_count: int,
    lanes: Sequence[tuple[str, str]],
    error: str | None,
    dedupe_ttl: int,
    event_ttl: int,
) -> tuple[list[Any], list[Any]]:
    """The keys and args of one event for the record script."""
    event_id = new_event_id()
    now = time.time()
    state = states.PARKED if error else (states.QUEUED if action_count else states.SKIPPED)
    fields: list[Any] = [
        "source",
        source,
        "delivery_id",
        delivery_id,
        "received_at",
        repr(now),
        "state",
        state,
        "headers",
        orjson.dumps(headers),
        "body",
        body,
        "actions",
        actions,
        "action_count",
        action_count,
    ]
    if error:
        fields += ["error", error]
    if tracing.traceparent():  # relay.tracing: the worker continues this event's trace
        fields += ["traceparent", tracing.traceparent()]
    event_keys = [
        keys.dedupe(source, delivery_id),
        keys.event(event_id),
        keys.EVENTS,
        keys.INBOX,
        keys.PARKED,
        *(lane for lane, _ in lanes),
    ]
    args = [
        event_id,
        now,
        dedupe_ttl,
        event_ttl,
        "1" if action_count and not error else "0",
        "1" if error else "0",
        len(lanes),
        *(aid for _, aid in lanes),
        *fields,
    ]
    return event_keys, args


def _recorded(result: Any) -> Recorded:
    created, stored_id = result
    return Recorded(
        event_id=stored_id.decode() if isinstance(stored_id, bytes) else stored_id, duplicate=not created
    )


def record_event(
    redis: Redis,
    *,
    source: str,
    delivery_id: str,
    headers: dict[str, str],
    body: bytes,
    actions: bytes,
    action_count: int,
    lanes: Sequence[tuple[str, str]] = (),
    dedupe_ttl: int,
    event_ttl: int,
) -> Recorded:
    """`EventStore.record` for synchronous callers (the CLI, `relay.client`, the scheduler): the same
    script, one event per call, so an event recorded here is indistinguishable from the ingress's."""
    event_keys, args = _record_args(
        source=source,
        delivery_id=delivery_id,
        headers=headers,
        body=body,
        actions=actions,
        action_count=action_count,
        lanes=lanes,
        error=None,
        dedupe_ttl=dedupe_ttl,
        event_ttl=event_ttl,
    )
    script = redis.register_script(scripts.RECORD_MANY)
    (result,) = script(
        keys=[*_MODEL_KEYS, *event_keys], args=[*_MODEL_ARGS, 1, len(event_keys), len(args), *args]
    )
    return _recorded(result)


Pending = tuple[Any, int, "asyncio.Future[Any]"]  # item, bytes, answer


class _GroupCommit:
    """Writes with one Redis call what concurrent requests hand in (group commit).

    An item goes to Redis at once when nothing else is being written; items that arrive while a
    call is in flight are written together by the next. Each caller gets its own result only after
    the call that carries its item has returned. `write` takes a batch's items and returns their
    results, in order.
    """

    def __init__(self, write: Callable[[list[Any]], Awaitable[list[Any]]]) -> None:
        self.write = write
        self._pending: list[Pending] = []
        self._flushing = False

    async def submit(self, item: Any, size: int) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((item, size, future))
        if not self._flushing:
            self._flushing = True
            loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch: list[Pending] = []
                size = 0
                while self._pending and len(batch) < MAX_BATCH and (not batch or size < MAX_BATCH_BYTES):
                    item = self._pending.pop(0)
                    batch.append(item)
                    size += item[1]
                try:
                    results = await self.write([item for item, _, _ in batch])
                except Exception as exc:  # every request of the batch answers 503
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (*_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._flushing = False


def _bulk(value: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


# The receipt's constant pieces, encoded once (see EventStore._write_receipts).
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


class EventStore:
    """Writes events from the (async) ingress and `relay.client`, with group commit.

    `receive` stores a verified webhook as it came (the mapping stage maps it); `record` stores an
    event whose actions are already known (`relay.client`'s submissions).
    """

    def __init__(
        self,
        redis: AsyncRedis,
        *,
        dedupe_ttl: int,
        event_ttl: int,
        min_replicas: int = 0,
        replica_timeout_ms: int = 1000,
    ) -> None:
        self.redis = redis
        self.dedupe_ttl = dedupe_ttl
        self.event_ttl = event_ttl
        self.min_replicas = min_replicas
        self.replica_timeout_ms = replica_timeout_ms
        record_many = redis.register_script(scripts.RECORD_MANY)

        async def write_records(items: list[tuple[list[Any], list[Any]]]) -> Any:
            return await self.write(
                record_many,
                [*_MODEL_KEYS, *(k for item_keys, _ in items for k in item_keys)],
                [
                    *_MODEL_ARGS,
                    len(items),
                    *(n for item_keys, args in items for n in (len(item_keys), len(args))),
                    *(a for _, args in items for a in args),
                ],
            )

        self._records = _GroupCommit(write_records)
        self._receipts = _GroupCommit(self._write_receipts)

    async def receive(
        self,
        *,
        source: str,
        delivery_id: str,
        headers: dict[str, str],
        body: bytes,
        query: dict[str, str] | None = None,
    ) -> Recorded:
        """Store a verified webhook, unmapped (state `received`), and put it on the inbox."""
        event_id = new_event_id()
        traceparent = tracing.traceparent()  # relay.tracing: the mapping stage continues this trace
        stored = await self._receipts.submit(
            (
                event_id,
                source,
                delivery_id,
                orjson.dumps(headers),
                body,
                orjson.dumps(query) if query else None,
                traceparent.encode() if traceparent else None,
            ),
            len(body),
        )
        # b'' for a new event, or the id the delivery was first stored under (_write_receipts).
        return Recorded(stored.decode(), duplicate=True) if stored else Recorded(event_id, duplicate=False)

    async def _write_receipts(self, events: list[tuple[str, str, str, bytes, bytes, Any, Any]]) -> Any:
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
        head_args = (keys.MINUTE_PREFIX, keys.MINUTE_TTL, self.dedupe_ttl, self.event_ttl)
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
        if self.min_replicas:  # acknowledged only once that many replicas hold the batch
            parts.append(_command(b"WAIT", b"%d" % self.min_replicas, b"%d" % self.replica_timeout_ms))
        packed = b"".join(parts)
        expected = len(events) + 3 + (1 if self.min_replicas else 0)
        pool = self.redis.connection_pool
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
                if not self.min_replicas:
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
        if self.min_replicas and int(replies[-1]) < self.min_replicas:
            raise ReplicasUnconfirmed(
                "storage replicas did not confirm the write in time; retry later",
                headers={"Retry-After": "1"},
            )
        answers = [b""] * len(events)  # b'': a new event
        for place, first in zip(result[::2], result[1::2], strict=True):
            answers[int(place) - 1] = first
        return answers

    async def record(
        self,
        *,
        source: str,
        delivery_id: str,
        headers: dict[str, str],
        body: bytes,
        actions: bytes,
        action_count: int,
        lanes: list[tuple[str, str]] = (),  # type: ignore[assignment]
        error: str | None = None,
    ) -> Recorded:
        """Store an event with its actions (already mapped) and queue them."""
        event_keys, args = _record_args(
            source=source,
            delivery_id=delivery_id,
            headers=headers,
            body=body,
            actions=actions,
            action_count=action_count,
            lanes=lanes,
            error=error,
            dedupe_ttl=self.dedupe_ttl,
            event_ttl=self.event_ttl,
        )
        return _recorded(await self._records.submit((event_keys, args), len(body) + len(actions)))

    async def write(self, script: Any, all_keys: list[Any], args: list[Any]) -> Any:
        """One script call for a batch; with `min_replicas`, followed by one WAIT on the same
        connection (a pipeline), so the batch is acknowledged only once that many replicas hold it."""
        if not self.min_replicas:
            return await script(keys=all_keys, args=args)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                # A Script on a pipeline is loaded first when the server lacks it (NOSCRIPT).
                await script(keys=all_keys, args=args, client=pipe)
                pipe.execute_command("WAIT", self.min_replicas, self.replica_timeout_ms)
                results, confirmed = await pipe.execute()
        except redis.exceptions.ResponseError as exc:  # a pipeline cut by a failover, a demoted primary
            log.warning("recording a batch failed: %s", exc)
            raise Unavailable("storage unavailable; nothing was accepted, retry later") from exc
        if int(confirmed) < self.min_replicas:
            raise ReplicasUnconfirmed(
                "storage replicas did not confirm the write in time; retry later",
                headers={"Retry-After": "1"},
            )
        return results


class ReplicasUnconfirmed(Unavailable):
    """The write reached the primary but not `durability.min_replicas` replicas in time: answer 503."""


def confirm_replicas(
    redis: Redis, key: str, field: str, value: str, min_replicas: int, timeout_ms: int
) -> None:
    """Raise ReplicasUnconfirmed unless `min_replicas` replicas hold every write made so far.

    WAIT counts the writes of its own connection, so it follows a write on the same one: setting
    `field` to the value it already has. Its offset is past every earlier write, whichever
    connection made it; after a failover it puts the field back on the new primary.
    """
    if not min_replicas:
        return
    with redis.pipeline(transaction=False) as pipe:
        pipe.hset(key, field, value)
        pipe.execute_command("WAIT", min_replicas, timeout_ms)
        _, confirmed = pipe.execute()
    if int(confirmed) < min_replicas:
        raise ReplicasUnconfirmed(f"{confirmed} of {min_replicas} replicas confirmed within {timeout_ms} ms")


def load_event(redis: Redis, event_id: str) -> dict[str, Any] | None:
    raw = redis.hgetall(keys.event(event_id))
    if not raw:
        return None
    data = {k.decode(): v for k, v in raw.items()}
    out: dict[str, Any] = {"id": event_id}
    for name in ("source", "delivery_id", "state", "error", "reason"):
        if name in data:
            out[name] = data[name].decode()
    out["received_at"] = float(data.get("received_at", b"0"))
    out["headers"] = orjson.loads(data.get("headers", b"{}"))
    out["body"] = data.get("body", b"")
    out["query"] = orjson.loads(data["query"]) if data.get("query") else {}
    out["actions"] = orjson.loads(data.get("actions", b"[]") or b"[]")
    return out


def load_action(redis: Redis, aid: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in redis.hgetall(keys.action(aid)).items()}
