"""The router: turns stored events (the inbox stream) into RQ delivery jobs, in batches.

The ingress only stores the event; each worker process runs a router thread. The one that holds
the mapping lease (`relay.worker.mapper`) reads the inbox through a consumer group, maps the
received events and enqueues one job per action; the others take over when its lease lapses.
Entries are acknowledged in the same MULTI as their jobs; an entry whose router died is claimed
by the next lease holder. Job ids are the action ids, and an existing job is never enqueued
twice, so every acknowledged event becomes its jobs exactly once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import orjson
import redis.exceptions
from redis import Redis
from rq import Queue
from rq.job import Job

from relay import hold, metrics
from relay.config import Settings
from relay.store import keys, lanes, pause, states
from relay.store.jobs import enqueue_delivery, queue_turn
from relay.worker.mapper import EventMapper, LeaseLost
from relay.worker.reconcile import reconcile

log = logging.getLogger("relay.router")

BATCH = 200
TRIM_BATCH = 1000  # events past events_max emptied per round of `trim`


def ensure_group(conn: Redis) -> None:
    try:
        conn.xgroup_create(keys.INBOX, keys.ROUTERS, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Router:
    def __init__(self, redis: Redis, settings: Settings, consumer: str, claim_idle_ms: int = 30_000) -> None:
        self.redis = redis
        self.settings = settings
        self.mapper = EventMapper(redis, settings, consumer)
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.queue = Queue(settings.queue, connection=redis)
        self._stop = threading.Event()
        self._last_claim = 0.0
        self._last_trim = 0.0
        self._last_sweep = time.monotonic()
        self._last_cooldown = 0.0
        self._own_pending = True
        self._claim_all = False

    def configure(self, settings: Settings) -> None:
        """Take new settings (`relay reload`): the next batch maps with the new sources and transforms."""
        self.settings = settings
        self.mapper = EventMapper(self.redis, settings, self.consumer)

    def stop(self) -> None:
        self._stop.set()

    def run(self, block_ms: int = 1000) -> None:
        """Route until stopped; survives Redis outages by waiting and trying again."""
        while not self._stop.is_set():
            try:
                ensure_group(self.redis)
                while not self._stop.is_set():
                    self.step(block_ms)
                self.mapper.release()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("router cannot reach redis (%s); retrying", exc)
                # Entries this router read but had not routed when Redis went away (a restart, a
                # failover) are its own pending ones: route them when it is back, not when they
                # are claimed as abandoned `claim_idle_ms` later (holding up their session lanes).
                self._own_pending = True
                self._stop.wait(1.0)
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):  # the stream vanished (e.g. Redis restarted empty)
                    log.exception("router step failed; retrying")
                self._stop.wait(0.5)
            except Exception:
                # Never let the thread die: unrouted entries stay pending and are claimed again.
                log.exception("router step failed; retrying")
                self._stop.wait(1.0)

    def step(self, block_ms: int = 0) -> int:
        """Map and route one batch when this router holds the mapping lease: entries left by an
        earlier holder first, then new ones. Then the periodic chores, whoever holds the lease."""
        entries: list[tuple[bytes, dict[bytes, bytes]]] = []
        lead = self.mapper.lead()
        if lead == 2:  # newly taken: what the last holder read but did not finish comes first
            self._claim_all = True
        if lead:
            entries, recovered = self._read(block_ms)
            if entries:
                try:
                    self.route(entries, recovered=recovered)
                except LeaseLost as exc:  # the rest stays pending for the new holder
                    log.warning("%s; leaving the batch to the new holder", exc)
                    self._own_pending = True
        elif block_ms:
            self._stop.wait(min(block_ms, 500) / 1000)  # the holder maps; wait to take over
        if time.monotonic() - self._last_trim > 60:
            self._last_trim = time.monotonic()
            self.trim()
        if time.monotonic() - self._last_cooldown > 0.25:  # windows of `cooldown: {mode: last}` that closed
            self._last_cooldown = time.monotonic()
            hold.flush_due(self.redis, self.settings)  # and the batches of `batch:`, and delays (relay.hold)
        if time.monotonic() - self._last_sweep > 5:
            self._last_sweep = time.monotonic()
            self.sweep()
        return len(entries)

    def _read(self, block_ms: int) -> tuple[list[tuple[bytes, dict[bytes, bytes]]], bool]:
        """The next batch: every pending entry just after the lease changed hands, this router's
        own pending entries, entries idle past `claim_idle_ms` (these three: recovered, True), else
        new ones (waiting up to `block_ms`)."""
        entries: list[tuple[bytes, dict[bytes, bytes]]] = []
        if self._claim_all:
            _, claimed, *_ = self.redis.xautoclaim(
                keys.INBOX, keys.ROUTERS, self.consumer, 0, "0-0", count=BATCH
            )
            self._claim_all = len(claimed) >= BATCH
            self._own_pending = True
            entries.extend(entry for entry in claimed if entry[1])
            if entries:
                return entries, True
        if self._own_pending:
            read = self.redis.xreadgroup(keys.ROUTERS, self.consumer, {keys.INBOX: "0"}, count=BATCH)
            mine = [entry for _stream, items in read or [] for entry in items]
            entries.extend(entry for entry in mine if entry[1])  # a deleted entry has no fields
            gone = [entry_id for entry_id, fields in mine if not fields]
            if gone:
                self.redis.xack(keys.INBOX, keys.ROUTERS, *gone)
            self._own_pending = len(mine) >= BATCH  # more may be left; read once, not forever
        if not entries and time.monotonic() - self._last_claim > self.claim_idle_ms / 2000:
            self._last_claim = time.monotonic()
            _, claimed, *_ = self.redis.xautoclaim(
                keys.INBOX, keys.ROUTERS, self.consumer, self.claim_idle_ms, "0-0", count=BATCH
            )
            entries.extend(claimed)
        if entries:
            return entries, True
        read = self.redis.xreadgroup(
            keys.ROUTERS, self.consumer, {keys.INBOX: ">"}, count=BATCH, block=block_ms or None
        )
        for _stream, items in read or []:
            entries.extend(items)
        return entries, False

    def sweep(self) -> None:
        """Queue a job for any session lane head whose turn was handed off by a process that died,
        and for any action whose job vanished (relay.worker.reconcile)."""
        if not self.redis.set(keys.SWEEPER, self.consumer, nx=True, ex=30):
            return
        try:
            for aid in lanes.stalled_heads(self.redis):
                log.warning("session lane head %s had no job; queued again", aid)
                queue_turn(self.redis, self.settings, aid)
            reconcile(self.redis, self.settings)
            pause.release_orphans(self.redis, self.settings)
        finally:
            self.redis.delete(keys.SWEEPER)

    def trim(self) -> None:
        """Keep the event log and the dead letters bounded by age (and the log by count).

        Events past `events_max` lose their body and headers too (what makes an event big), not
        only their place in the index; their actions stay until `event_ttl`, so nothing queued is lost.
        An event not mapped yet (`received`: a backlog while no router maps) is left as it is, body
        and place: the mapping stage reads its body. A later trim empties it once it is mapped."""
        now = time.time()
        while True:
            excess = self.redis.zcard(keys.EVENTS) - self.settings.events_max
            over = self.redis.zrange(keys.EVENTS, 0, min(excess, TRIM_BATCH) - 1) if excess > 0 else []
            if not over:
                break
            with self.redis.pipeline(transaction=False) as pipe:
                for member in over:
                    pipe.hget(keys.event(member.decode()), "state")
                found = pipe.execute()
            # Once mapped, an event never becomes `received` again: what is read here holds.
            mapped = [m for m, state in zip(over, found, strict=True) if state != states.RECEIVED.encode()]
            if mapped:
                with self.redis.pipeline(transaction=False) as pipe:
                    for member in mapped:
                        pipe.hdel(keys.event(member.decode()), "body", "headers")
                    pipe.zrem(keys.EVENTS, *mapped)
                    pipe.execute()
            if len(mapped) < len(over):  # the oldest wait for their mapping: the next trim goes on
                break
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(keys.EVENTS, "-inf", now - self.settings.event_ttl_seconds)
            pipe.zremrangebyscore(keys.PARKED, "-inf", now - self.settings.event_ttl_seconds)
            pipe.zremrangebyscore(keys.DEAD, "-inf", now - self.settings.delivery.dead_letter_ttl_seconds)
            pipe.execute()

    def route(self, entries: list[tuple[bytes, dict[bytes, bytes]]], *, recovered: bool = False) -> None:
        """Map the received events among `entries`, then queue the actions of those to be queued.
        `recovered`: entries read by a router that stopped before acknowledging them."""
        committed = self.mapper.map_received(
            [fields[b"event"].decode() for _id, fields in entries], recovered=recovered
        )
        # What an event committed by this mapper needs comes with it; the others' is read back.
        elsewhere = [c.event_id for c in committed if c.route and c.routing is None]
        with self.redis.pipeline(transaction=False) as pipe:
            for eid in elsewhere:
                pipe.hmget(keys.event(eid), "actions", "source", "received_at", "delivery_id")
            read = dict(zip(elsewhere, pipe.execute() if elsewhere else [], strict=True))
        planned: list[tuple[str, dict[str, Any]]] = []
        known: list[bool | None] = []  # whether each action's job exists, where the commit looked
        for c in committed:
            if not c.route:
                continue
            actions_raw, source, received_at, delivery_id = c.routing or read[c.event_id]
            if actions_raw is None:  # expired or trimmed before routing: nothing left to send
                log.error("inbox entry for missing event %s dropped", c.event_id)
                continue
            actions = orjson.loads(actions_raw)
            known.extend(c.jobs if c.jobs is not None else [None] * len(actions))
            for action in actions:
                planned.append(
                    (
                        c.event_id,
                        {**action, "source": source, "received_at": received_at, "delivery_id": delivery_id},
                    )
                )
        unknown = [action["id"] for (_eid, action), seen in zip(planned, known, strict=True) if seen is None]
        with self.redis.pipeline(transaction=False) as pipe:
            for aid in unknown:
                pipe.exists(Job.key_for(aid))
            looked = iter(pipe.execute() if unknown else [])
        exists = [bool(next(looked)) if seen is None else seen for seen in known]
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.multi()  # explicit MULTI: RQ's enqueue expects it when given a pipeline
            for (eid, action), already in zip(planned, exists, strict=True):
                aid = action["id"]
                body = action.get("body") or {}
                pipe.hsetnx(keys.action(aid), "state", states.QUEUED)
                pipe.hset(
                    keys.action(aid),
                    mapping={
                        "event_id": eid,
                        "kind": action["kind"],
                        "body": orjson.dumps(body),
                        "source": action["source"] or b"",
                        "session_key": body.get("sessionKey") or "",
                        "received_at": action["received_at"] or b"",
                        "queued_at": repr(time.time()),
                        "delivery_id": action["delivery_id"] or b"",
                        "gateway": action.get("gateway") or "",
                    },
                )
                pipe.expire(keys.action(aid), self.settings.event_ttl_seconds)
                if not already:
                    pipe.zadd(keys.PENDING, {aid: time.time() + 60})
                    metrics.count_action(pipe, "enqueued", action["kind"])
                    enqueue_delivery(
                        self.queue, pipe, self.settings, aid, aid, f"deliver {action['kind']} {aid} of {eid}"
                    )
            ids = [entry_id for entry_id, _ in entries]
            pipe.xack(keys.INBOX, keys.ROUTERS, *ids)
            pipe.xdel(keys.INBOX, *ids)
            pipe.execute()
        log.info(
            "routed %d event(s) into %d job(s)",
            len(entries),
            sum(1 for e in exists if not e) if planned else 0,
        )
