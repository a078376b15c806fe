"""What the console reads from Redis: pages of events, one event with its actions, dead letters,
parked events, the gateway's health, queue depths and workers, and the per-minute counters.

Every read is bounded: lists walk an index zset from a cursor (score and member of the last row
shown) with ZREVRANGEBYSCORE ... LIMIT, and a filter that no index answers (a delivery state such
as "delivered") looks at no more than `WINDOW` events per page. Nothing here scans the event log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from redis import Redis
from rq import Queue, Worker

from relay.delivery.circuit import circuit_state
from relay.metrics import queue_sizes
from relay.protocol.actions import action_id
from relay.store import keys, states

PAGE = 50
WINDOW = 1000  # events examined per page when filtering by a state no index answers
MAX_BODY = 64 * 1024  # payload bytes shown on the event page

# Delivery states of an event, summarised from its actions' states (see `summarise`).
STATES = (
    states.PENDING,
    states.DELIVERED,
    states.RETRYING,
    states.DEAD,
    states.PARKED,
    states.SKIPPED,
    states.HELD,
)
T = TypeVar("T")
EVENT_FIELDS = ("source", "delivery_id", "received_at", "state", "action_count", "reason")
ACTION_FIELDS = ("state", "attempts", "last_status", "kind")


@dataclass(slots=True)
class Row:
    id: str
    source: str
    delivery_id: str
    received_at: float
    state: str  # summarised: see STATES
    actions: int
    attempts: int


@dataclass(slots=True)
class Page:
    rows: list[Any]
    next_cursor: str | None
    examined: int = 0
    windowed: bool = False  # the filter looked at a bounded window only
    notes: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    return (
        value.decode(errors="replace") if isinstance(value, bytes) else ("" if value is None else str(value))
    )


def parse_cursor(cursor: str | None) -> tuple[str, str | None]:
    """A cursor is `<score>~<member>`: the last row shown. Returns (max score for ZREVRANGEBYSCORE,
    member)."""
    if not cursor or "~" not in cursor:
        return "+inf", None
    score, member = cursor.split("~", 1)
    try:
        if math.isnan(float(score)):  # Redis refuses a NaN bound
            return "+inf", None
    except ValueError:
        return "+inf", None
    return score, member


def walk(redis: Redis, index: str, cursor: str | None, count: int) -> list[tuple[str, float]]:
    """Up to `count` members of `index` after the cursor, highest score first."""
    top, last = parse_cursor(cursor)
    # Members that share the cursor's score come first; skip those already shown.
    extra = 0 if last is None else 16
    raw: list[tuple[bytes, float]] = redis.zrevrangebyscore(  # type: ignore[assignment]
        index, top, "-inf", start=0, num=count + extra, withscores=True
    )
    out: list[tuple[str, float]] = []
    skipping = last is not None
    for member, score in raw:
        name = _text(member)
        if skipping and repr(score) == top and name >= (last or ""):
            continue
        skipping = False
        out.append((name, score))
    return out[:count]


def summarise(event_state: str, action_states: list[str]) -> str:
    if event_state != states.QUEUED or not action_states:
        return event_state or "unknown"
    if states.DEAD in action_states:
        return states.DEAD
    if any(s in states.WAITING_OUT for s in action_states):
        return states.RETRYING
    if all(s == states.DELIVERED for s in action_states):
        return states.DELIVERED
    return states.PENDING


def load_rows(redis: Redis, event_ids: list[str]) -> list[Row | None]:
    """The list columns of these events (None for an expired one): two pipelined round trips."""
    with redis.pipeline(transaction=False) as pipe:
        for eid in event_ids:
            pipe.hmget(keys.event(eid), *EVENT_FIELDS)
        events = pipe.execute()
    action_ids: list[list[str]] = []
    for values in events:
        source, delivery_id, count = _text(values[0]), _text(values[1]), int(values[4] or 0)
        action_ids.append([action_id(source, delivery_id, i) for i in range(count)] if values[0] else [])
    with redis.pipeline(transaction=False) as pipe:
        for ids in action_ids:
            for aid in ids:
                pipe.hmget(keys.action(aid), "state", "attempts")
        actions = iter(pipe.execute())
    rows: list[Row | None] = []
    for eid, values, ids in zip(event_ids, events, action_ids, strict=True):
        records = [next(actions) for _ in ids]
        if values[0] is None:
            rows.append(None)
            continue
        found = [_text(r[0]) or states.QUEUED for r in records]
        rows.append(
            Row(
                id=eid,
                source=_text(values[0]),
                delivery_id=_text(values[1]),
                received_at=float(values[2] or 0),
                state=summarise(_text(values[3]), found),
                actions=len(ids),
                attempts=sum(int(r[1] or 0) for r in records),
            )
        )
    return rows


def scan(
    redis: Redis,
    index: str,
    cursor: str | None,
    budget: int,
    load: Callable[[list[str]], list[T | None]],
    keep: Callable[[T], bool] = lambda _: True,
) -> tuple[list[T], str | None, int]:
    """Rows of `index` after `cursor`, newest first: up to PAGE kept rows, looking at no more than
    `budget` members. Returns (rows, the cursor of the next page or None, members examined)."""
    rows: list[T] = []
    examined, last, exhausted = 0, cursor, False
    while len(rows) < PAGE and examined < budget:
        chunk = walk(redis, index, last, min(200, budget - examined))
        if not chunk:
            exhausted = True
            break
        examined += len(chunk)
        for (member, score), row in zip(chunk, load([m for m, _ in chunk]), strict=True):
            last = f"{score!r}~{member}"
            if row is not None and keep(row):
                rows.append(row)
                if len(rows) >= PAGE:
                    break
    more = not exhausted and last is not None and bool(walk(redis, index, last, 1))
    return rows, last if more else None, examined


def events_page(redis: Redis, *, source: str = "", state: str = "", cursor: str | None = None) -> Page:
    """Newest first. Source filters use the per-source index; `parked` uses keys.PARKED and `dead`
    keys.DEAD; any other state is looked for among the next WINDOW events of the index."""
    if state == states.DEAD:
        return _dead_events_page(redis, source, cursor)
    index = (
        keys.PARKED if state == states.PARKED else (keys.events_by_source(source) if source else keys.EVENTS)
    )
    windowed = state not in ("", states.PARKED) or (state == states.PARKED and bool(source))

    def keep(row: Row) -> bool:
        return (not source or row.source == source) and (not state or row.state == state)

    budget = WINDOW if windowed else 2 * PAGE
    rows, nxt, examined = scan(redis, index, cursor, budget, lambda ids: load_rows(redis, ids), keep)
    page = Page(rows, nxt, examined, windowed)
    if windowed:
        page.notes.append(
            f"Filtered among the {examined} events after the cursor (at most {WINDOW} per page); "
            "“older” continues the search."
        )
    return page


def _dead_events_page(redis: Redis, source: str, cursor: str | None) -> Page:
    """Events with a dead-lettered action, newest dead letter first (keys.DEAD holds action ids)."""
    seen: set[str] = set()

    def load(aids: list[str]) -> list[Row | None]:
        with redis.pipeline(transaction=False) as pipe:
            for aid in aids:
                pipe.hget(keys.action(aid), "event_id")
            owners = [_text(o) for o in pipe.execute()]
        distinct = sorted(set(owners) - {""})
        loaded = dict(zip(distinct, load_rows(redis, distinct), strict=True))
        return [loaded.get(o) for o in owners]

    def keep(row: Row) -> bool:
        if row.id in seen or (source and row.source != source):
            return False
        seen.add(row.id)
        return True

    rows, nxt, examined = scan(redis, keys.DEAD, cursor, WINDOW if source else 4 * PAGE, load, keep)
    return Page(rows, nxt, examined, windowed=bool(source))


def event_detail(redis: Redis, event_id: str) -> dict[str, Any] | None:
    """One event with its headers, (capped) body, error, and each action with its record."""
    raw = redis.hgetall(keys.event(event_id))
    if not raw:
        return None
    data: dict[str, bytes] = {_text(k): v for k, v in raw.items()}  # type: ignore[misc]
    body = data.get("body", b"")
    actions = orjson.loads(data.get("actions") or b"[]")
    with redis.pipeline(transaction=False) as pipe:
        for action in actions:
            pipe.hgetall(keys.action(action["id"]))
        records = pipe.execute()
    for action, record in zip(actions, records, strict=True):
        action["record"] = {_text(k): _text(v) for k, v in record.items() if _text(k) != "body"}
    found = [action["record"].get("state") or states.QUEUED for action in actions]
    names = ("source", "delivery_id", "state", "error", "reason")
    return {
        "id": event_id,
        **{name: _text(data[name]) for name in names if name in data},
        "received_at": float(data.get("received_at") or 0),
        "headers": orjson.loads(data.get("headers") or b"{}"),
        "body": body[:MAX_BODY],
        "body_size": len(body),
        "actions": actions,
        "replays": int(data.get("replays") or 0),
        "replay_log": orjson.loads(data.get("replay_log") or b"[]"),  # relay.store.selection.record_replay
        "summary": summarise(
            _text(data.get("state")), found if _text(data.get("action_count")) != "0" else []
        ),
    }


DEAD_FIELDS = (
    "source",
    "kind",
    "event_id",
    "attempts",
    "last_status",
    "last_error",
    "dead_reason",
    "dead_at",
)


def dead_letters(redis: Redis, *, source: str = "", cursor: str | None = None) -> Page:
    """Dead actions (rows are dicts), newest first; a source filter looks within WINDOW per page."""

    def load(aids: list[str]) -> list[dict[str, str] | None]:
        with redis.pipeline(transaction=False) as pipe:
            for aid in aids:
                pipe.hmget(keys.action(aid), *DEAD_FIELDS)
            records = pipe.execute()
        return [
            None
            if v[0] is None
            else {"id": aid, **{n: _text(x) for n, x in zip(DEAD_FIELDS, v, strict=True)}}
            for aid, v in zip(aids, records, strict=True)
        ]

    rows, nxt, examined = scan(
        redis,
        keys.DEAD,
        cursor,
        WINDOW if source else 2 * PAGE,
        load,
        lambda r: not source or r["source"] == source,
    )
    return Page(rows, nxt, examined, windowed=bool(source))  # type: ignore[arg-type]


def parked_events(redis: Redis, *, source: str = "", cursor: str | None = None) -> Page:
    """Parked events (rows are dicts) with the last line of their error, newest first."""

    def load(eids: list[str]) -> list[dict[str, str] | None]:
        with redis.pipeline(transaction=False) as pipe:
            for eid in eids:
                pipe.hmget(keys.event(eid), "source", "delivery_id", "received_at", "error", "replays")
            records = pipe.execute()
        out: list[dict[str, str] | None] = []
        for eid, v in zip(eids, records, strict=True):
            error = _text(v[3]).strip()
            out.append(
                None
                if v[0] is None
                else {
                    "id": eid,
                    "source": _text(v[0]),
                    "delivery_id": _text(v[1]),
                    "received_at": _text(v[2]),
                    "error": error.splitlines()[-1][:300] if error else "",
                    "replays": _text(v[4]) or "0",
                }
            )
        return out

    rows, nxt, examined = scan(
        redis,
        keys.PARKED,
        cursor,
        WINDOW if source else 2 * PAGE,
        load,
        lambda r: not source or r["source"] == source,
    )
    return Page(rows, nxt, examined, windowed=bool(source))  # type: ignore[arg-type]


def dead_ids_of_source(redis: Redis, source: str, limit: int) -> list[str]:
    """Dead action ids of one source, oldest first, at most `limit` (a replay-all request)."""
    out: list[str] = []
    start = 0
    while len(out) < limit:
        ids = [_text(m) for m in redis.zrange(keys.DEAD, start, start + 499)]
        if not ids:
            break
        start += len(ids)
        with redis.pipeline(transaction=False) as pipe:
            for aid in ids:
                pipe.hget(keys.action(aid), "source")
            sources = pipe.execute()
        out.extend(aid for aid, src in zip(ids, sources, strict=True) if _text(src) == source)
    return out[:limit]


def system(redis: Redis, queue_name: str) -> dict[str, Any]:
    """The gateway circuit, queue depths, the parked and dead counts, and the workers' heartbeats."""
    circuit = circuit_state(redis)
    queue = Queue(queue_name, connection=redis)
    sizes = queue_sizes(redis, queue)
    queued, scheduled, started, inbox = sizes["queued"], sizes["scheduled"], sizes["started"], sizes["inbox"]
    parked, dead, events, level = sizes["parked"], sizes["dead"], sizes["events"], sizes["circuit_level"]
    now = time.time()
    workers = []
    for worker in Worker.all(queue=queue):
        beat = worker.last_heartbeat.timestamp() if worker.last_heartbeat else None
        workers.append(
            {
                "name": worker.name,
                "state": str(worker.get_state()),
                "hostname": _text(worker.hostname),
                "pid": worker.pid,
                "heartbeat_age": None if beat is None else max(0.0, now - beat),
                "successful": worker.successful_job_count,
                "failed": worker.failed_job_count,
            }
        )
    return {
        "circuit": "open" if circuit.open else ("half_open" if level else "closed"),
        "circuit_reason": circuit.reason,
        "circuit_remaining": circuit.remaining,
        "depths": {"queued": queued, "scheduled": scheduled, "started": started, "inbox": inbox},
        "parked": parked,
        "dead": dead,
        "events": events,
        "workers": workers,
    }


def per_minute(redis: Redis, minutes: int = 60, now: float | None = None) -> list[tuple[int, dict[str, int]]]:
    """(minute bucket, {received, delivered, dead}) for the last `minutes` minutes, oldest first."""
    current = int((now if now is not None else time.time()) // 60)
    buckets = list(range(current - minutes + 1, current + 1))
    with redis.pipeline(transaction=False) as pipe:
        for bucket in buckets:
            pipe.hgetall(keys.minute(bucket))
        counts = pipe.execute()
    return [(b, {_text(k): int(v) for k, v in c.items()}) for b, c in zip(buckets, counts, strict=True)]
