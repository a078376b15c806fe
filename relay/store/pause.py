"""Pause and resume of sources and gateways by an operator, at run time.

The state is one Redis hash (`keys.PAUSED`, field `source:NAME` or `gateway:NAME`), so every
ingress and worker sees a change at its next delivery, and AOF keeps it across restarts. A paused
source still verifies, accepts and records its webhooks; what waits is delivery. A delivery job
that finds its source or gateway paused does not send: in one script call it marks the action
`held` and adds it to that pause's held set (scored by arrival), and the job ends. Resume deletes
the flag first, then queues a job for every held action, oldest first, so an action is either
held before the flag goes (and released) or sees no flag; none is left behind. A resume cut short
is finished by the routers' sweep (`release_orphans`).

This is not the gateway circuit: the circuit opens and closes itself on the gateway's answers;
a pause is an operator's decision and lasts until `relay resume`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from relay.store import keys, scripts, states

if TYPE_CHECKING:  # the CLI imports this module at start: keep it light
    from redis import Redis

    from relay.config import Settings

Kind = Literal["source", "gateway"]
KINDS: tuple[Kind, ...] = ("source", "gateway")
DEFAULT_GATEWAY = "default"  # the name of the `gateway:` section (named ones are in `gateways:`)
RELEASE_BATCH = 200


@dataclass(frozen=True, slots=True)
class Pause:
    kind: Kind
    name: str
    by: str
    at: float
    reason: str
    held: int  # actions waiting for its resume

    @property
    def field(self) -> str:
        return field(self.kind, self.name)


def field(kind: Kind, name: str) -> str:
    return f"{kind}:{name}"


def held_key(kind: Kind, name: str) -> str:
    return keys.paused_held(field(kind, name))


def gateway_name(gateway: str | None) -> str:
    return gateway or DEFAULT_GATEWAY


def known_names(settings: Settings, kind: Kind) -> list[str]:
    if kind == "source":
        return sorted(settings.sources)
    return [DEFAULT_GATEWAY, *sorted(settings.gateways)]


def pause(redis: Redis, kind: Kind, name: str, *, by: str, reason: str = "") -> bool:
    """Pause deliveries of a source or gateway. False when it was paused already (kept as it was)."""
    info = orjson.dumps({"by": by, "at": time.time(), "reason": reason})
    return bool(redis.hsetnx(keys.PAUSED, field(kind, name), info))


def resume(redis: Redis, settings: Settings, kind: Kind, name: str) -> tuple[bool, int]:
    """Resume, then queue the held actions oldest first. Returns (was paused, actions released)."""
    was_paused = bool(redis.hdel(keys.PAUSED, field(kind, name)))
    return was_paused, release(redis, settings, kind, name)


def release(redis: Redis, settings: Settings, kind: Kind, name: str) -> int:
    """Queue a job for every action held by this pause, in arrival order.

    Each action is removed from the held set only after its job exists: a release cut short
    leaves the rest (and at worst one action queued twice, which the send lock and the delivered
    record make harmless).
    """
    from relay.store.jobs import queue_turn

    held = held_key(kind, name)
    released = 0
    while not redis.hexists(keys.PAUSED, field(kind, name)):
        batch = [raw.decode() for raw in redis.zrange(held, 0, RELEASE_BATCH - 1)]
        if not batch:
            redis.srem(keys.PAUSED_HELD, held)
            break
        for aid in batch:
            if redis.hget(keys.action(aid), "state") == states.HELD.encode():
                redis.hset(keys.action(aid), "state", states.QUEUED)
                queue_turn(redis, settings, aid)
                released += 1
            redis.zrem(held, aid)
    return released


def release_orphans(redis: Redis, settings: Settings) -> int:
    """Release the held sets of pauses that are gone (a resume whose process died midway)."""
    released = 0
    for raw in redis.smembers(keys.PAUSED_HELD):
        kind, _, name = raw.decode().removeprefix(keys.PAUSED_HELD_PREFIX).partition(":")
        if kind in KINDS and not redis.hexists(keys.PAUSED, f"{kind}:{name}"):
            released += release(redis, settings, kind, name)  # type: ignore[arg-type]
    return released


def fields_holding(source: str | None, gateway: str | None) -> list[str]:
    """The pause fields that hold an action of `source` to `gateway`, in the order they are looked at."""
    return ([field("source", source)] if source else []) + [field("gateway", gateway_name(gateway))]


def hold_if_paused(redis: Redis, action_id: str, source: str | None, gateway: str | None) -> str | None:
    """The pause field that holds the action (now marked held), or None. A delivery job checks
    this, its turn and the circuit in one call (relay.delivery.gate); this is the same check alone."""
    script = redis.register_script(scripts.PAUSE_HOLD)  # called by EVALSHA: the text is not sent each time
    held = script(
        keys=[keys.PAUSED, keys.PAUSED_HELD, keys.action(action_id)],
        args=[action_id, repr(time.time()), keys.PAUSED_HELD_PREFIX, *fields_holding(source, gateway)],
    )
    return held.decode() if held else None


def list_paused(redis: Redis) -> list[Pause]:
    """Every pause in force, with how many actions it holds."""
    raw = redis.hgetall(keys.PAUSED)
    entries = sorted((f.decode(), orjson.loads(v)) for f, v in raw.items())
    with redis.pipeline(transaction=False) as pipe:
        for name, _info in entries:
            pipe.zcard(keys.paused_held(name))
        counts = pipe.execute() if entries else []
    out = []
    for (name, info), held in zip(entries, counts, strict=True):
        kind, _, what = name.partition(":")
        if kind in KINDS:
            out.append(
                Pause(
                    kind,
                    what,
                    str(info.get("by", "")),
                    float(info.get("at", 0)),  # type: ignore[arg-type]
                    str(info.get("reason", "")),
                    int(held),
                )
            )
    return out


def describe(p: Pause) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.at))
    why = f": {p.reason}" if p.reason else ""
    return f"{p.kind} {p.name} paused by {p.by} since {when}{why}; {p.held} action(s) held"


def metric_families(redis: Redis) -> list[Any]:
    """`relay_paused` (1 per pause in force) and `relay_held_actions`, for /metrics."""
    from prometheus_client.core import GaugeMetricFamily

    paused = GaugeMetricFamily(
        "relay_paused", "1 for each source or gateway paused by an operator", labels=["kind", "name"]
    )
    held = GaugeMetricFamily(
        "relay_held_actions", "Actions waiting for an operator's resume", labels=["kind", "name"]
    )
    for p in list_paused(redis):
        paused.add_metric([p.kind, p.name], 1.0)
        held.add_metric([p.kind, p.name], float(p.held))
    return [paused, held]
