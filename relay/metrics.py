"""Prometheus metrics, kept in Redis so that every process on every host counts into one place.

Ingress and workers increment fields of one Redis hash (`keys.STATS`) in the writes they make
anyway (the record script, the delivery pipelines); `GET /metrics` on any ingress reads that hash
and the queue sizes at scrape time. This is multiprocess- and multihost-safe without
prometheus_client's multiprocess directory, and the numbers survive restarts.

Field names: `event|<outcome>|<source>`, `refused|<status>|<source>`, `action|<outcome>|<kind>`,
`latency|<bucket>`, `latency_sum`, `latency_count`.

An event is counted twice: `event|received|<source>` when the ingress stores it (or
`event|duplicate|<source>` when it was seen before), then `event|accepted|`, `skipped|` or
`parked|` when the mapping stage has mapped it (relay.worker.mapper). `relay_events_total` keeps
one count per webhook (duplicate, accepted, skipped, parked), as the alert rules' ratios expect;
the ingress's count is `relay_events_received_total`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from redis import Redis
from rq import Queue, Worker

from relay.store import keys, pause

# Delivery latency buckets in seconds: a gateway admits runs in 0.1-3 s, at most ~15 s.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)


def bucket_for(seconds: float) -> str:
    for bound in BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


def observe_latency(pipe: Any, seconds: float) -> None:
    pipe.hincrby(keys.STATS, f"latency|{bucket_for(seconds)}", 1)
    pipe.hincrbyfloat(keys.STATS, "latency_sum", seconds)
    pipe.hincrby(keys.STATS, "latency_count", 1)


def count_action(pipe: Any, outcome: str, kind: str) -> None:
    pipe.hincrby(keys.STATS, f"action|{outcome}|{kind}", 1)
    if outcome in ("delivered", "dead"):  # the console's per-minute chart
        bucket = keys.minute(int(time.time() // 60))
        pipe.hincrby(bucket, outcome, 1)
        pipe.expire(bucket, keys.MINUTE_TTL)


def queue_sizes(redis: Redis, queue: Queue) -> dict[str, Any]:
    """One round trip: delivery jobs by RQ state, unrouted events, parked events, dead letters,
    the event log's length and the default gateway's circuit (its reason, and whether it tripped)."""
    with redis.pipeline(transaction=False) as pipe:
        pipe.llen(queue.key)
        pipe.zcard(queue.scheduled_job_registry.key)
        pipe.zcard(queue.started_job_registry.key)
        pipe.xlen(keys.INBOX)
        pipe.zcard(keys.PARKED)
        pipe.zcard(keys.DEAD)
        pipe.zcard(keys.EVENTS)
        pipe.get(keys.CIRCUIT)
        pipe.exists(keys.CIRCUIT_LEVEL)
        values = pipe.execute()
    names = (
        "queued",
        "scheduled",
        "started",
        "inbox",
        "parked",
        "dead",
        "events",
        "circuit",
        "circuit_level",
    )
    return dict(zip(names, values, strict=True))


class RedisCollector(Collector):
    """Reads the counters and queue sizes from Redis when Prometheus scrapes."""

    def __init__(self, redis: Redis, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name

    def collect(self) -> Iterator[Metric]:
        stats = {k.decode(): v.decode() for k, v in self.redis.hgetall(keys.STATS).items()}
        events = CounterMetricFamily(
            "relay_events",
            "Webhooks by source and outcome, one count each: duplicate (counted by the ingress), "
            "or accepted, skipped (no action now: skip rules, no mapping, or held by a cooldown, "
            "batch or delay) or parked (counted by the mapping stage once it has mapped the event)",
            labels=["source", "outcome"],
        )
        received = CounterMetricFamily(
            "relay_events_received",
            "Webhooks the ingress verified and stored (answered 'received'), by source; "
            "relay_events_total counts them again by outcome once they are mapped",
            labels=["source"],
        )
        refused = CounterMetricFamily(
            "relay_events_refused", "Webhooks refused, by source and HTTP status", labels=["source", "status"]
        )
        actions = CounterMetricFamily(
            "relay_actions",
            "Actions by outcome: enqueued, delivered, retried, dead",
            labels=["kind", "outcome"],
        )
        buckets: dict[str, float] = {}
        for field, value in stats.items():
            parts = field.split("|")
            if parts[0] == "event" and len(parts) == 3 and parts[1] == "received":
                received.add_metric([parts[2]], float(value))
            elif parts[0] == "event" and len(parts) == 3:
                events.add_metric([parts[2], parts[1]], float(value))
            elif parts[0] == "refused" and len(parts) == 3:
                refused.add_metric([parts[2], parts[1]], float(value))
            elif parts[0] == "action" and len(parts) == 3:
                actions.add_metric([parts[2], parts[1]], float(value))
            elif parts[0] == "latency" and len(parts) == 2:
                buckets[parts[1]] = float(value)
        yield events
        yield received
        yield refused
        yield actions

        cumulative, running = [], 0.0
        for bound in (*map(repr, BUCKETS), "+Inf"):
            running += buckets.get(bound, 0.0)
            cumulative.append((bound, running))
        latency = HistogramMetricFamily(
            "relay_delivery_latency_seconds", "Time the gateway took to answer a delivery"
        )
        latency.add_metric([], cumulative, sum_value=float(stats.get("latency_sum", 0)))
        yield latency

        queue = Queue(self.queue_name, connection=self.redis)
        sizes = queue_sizes(self.redis, queue)
        queued, scheduled, started, inbox = (
            sizes["queued"],
            sizes["scheduled"],
            sizes["started"],
            sizes["inbox"],
        )
        parked, dead, circuit, level = (
            sizes["parked"],
            sizes["dead"],
            sizes["circuit"],
            sizes["circuit_level"],
        )
        depth = GaugeMetricFamily(
            "relay_queue_depth", "Delivery jobs by RQ state, and events not yet routed", labels=["state"]
        )
        for state, value in (
            ("queued", queued),
            ("scheduled", scheduled),
            ("started", started),
            ("inbox", inbox),
        ):
            depth.add_metric([state], value)
        yield depth
        yield GaugeMetricFamily(
            "relay_parked_events", "Events whose transform failed, kept for replay", value=parked
        )
        yield GaugeMetricFamily("relay_dead_letters", "Actions dead-lettered and kept", value=dead)
        state = "open" if circuit else ("half_open" if level else "closed")
        circuit_gauge = GaugeMetricFamily(
            "relay_gateway_circuit", "1 for the gateway circuit's current state", labels=["state"]
        )
        for name in ("closed", "open", "half_open"):
            circuit_gauge.add_metric([name], 1.0 if name == state else 0.0)
        yield circuit_gauge
        yield GaugeMetricFamily(
            "relay_workers",
            "RQ workers registered on the relay's queue",
            value=Worker.count(connection=self.redis, queue=queue),
        )
        yield from pause.metric_families(self.redis)  # sources and gateways paused by an operator
