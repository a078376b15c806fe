"""The relay's records in Redis: events (deduplicated, with their actions) and per-action state.

The ingress records an event, its dedupe key and its inbox entry in one transaction
(relay.store.receipts), so a 202 always means all three are in Redis. The router
(`relay.worker.dispatch`) turns inbox entries into RQ jobs; the delivery job updates the
action's record.
"""

from __future__ import annotations

import asyncio
import logging
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
from relay.store.receipts import write_receipts
from relay.store.replicas import ReplicasUnconfirmed

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
        self._receipts = _GroupCommit(
            lambda events: write_receipts(
                redis,
                events,
                dedupe_ttl=dedupe_ttl,
                event_ttl=event_ttl,
                min_replicas=min_replicas,
                replica_timeout_ms=replica_timeout_ms,
            )
        )

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
        # b'' for a new event, or the id the delivery was first stored under (relay.store.receipts).
        return Recorded(stored.decode(), duplicate=True) if stored else Recorded(event_id, duplicate=False)

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
