"""Every Redis key and name the relay uses, in one place.

The strings are part of the stored data: a key renamed here would orphan what an earlier version
wrote, so they never change (tests/store/test_keys.py pins them). Lua scripts get the prefixes they
build keys from as arguments (relay.store.scripts), never as literals.
"""

from __future__ import annotations

PREFIX = "relay:"

INBOX = PREFIX + "inbox"  # stream of recorded events waiting to become RQ jobs
ROUTERS = "routers"  # the inbox's consumer group
EVENTS = PREFIX + "events"  # zset: event id -> received_at, the event log's index
DEAD = PREFIX + "dead"  # zset: action id -> time it was dead-lettered
PARKED = PREFIX + "parked"  # zset: event id -> time its transform failed
STATS = PREFIX + "stats"  # hash of counters
CIRCUIT = PREFIX + "circuit"  # gateway circuit: the reason, alive while delivery is paused
CIRCUIT_LEVEL = PREFIX + "circuit:level"  # consecutive trips; cleared by a success
CIRCUIT_PROBE = PREFIX + "circuit:probe"  # the one half-open probe in flight
RATE = PREFIX + "rate"  # token bucket toward the gateway
PENDING = PREFIX + "pending"  # zset: routed action id -> when the reconciler next looks at it
LANES = PREFIX + "lanes"  # set of session lanes that may hold actions
PAUSED = PREFIX + "paused"  # hash: "source:NAME" / "gateway:NAME" -> who paused it, when (relay.store.pause)
PAUSED_HELD = PREFIX + "paused-sets"  # set of the held-action zsets (PAUSED + ":held:" + field)
MAPPER = PREFIX + "mapper"  # lease: the one router mapping received events (relay.worker.mapper)
SWEEPER = PREFIX + "sweeper"  # lock: the one router sweeping lanes and pending actions this round
SCHEDULER = PREFIX + "scheduler"  # lock: the one worker moving due RQ scheduled jobs to the queue
RELOAD_GENERATION = PREFIX + "reload:generation"  # bumped by `relay reload`
RELOAD_STATUS = PREFIX + "reload:status"  # hash: process -> {"generation", "ok", "error", "at", "alive_at"}

# Prefixes of the keys below, for the Lua scripts that build such keys from an id.
EVENT_PREFIX = PREFIX + "event:"
ACTION_PREFIX = PREFIX + "action:"
LANE_PREFIX = PREFIX + "lane:"
EVENTS_BY_SOURCE_PREFIX = PREFIX + "events:source:"
MINUTE_PREFIX = PREFIX + "minute:"
PAUSED_HELD_PREFIX = PAUSED + ":held:"


def dedupe(source: str, delivery_id: str) -> str:
    return f"{PREFIX}dedupe:{source}:{delivery_id}"


def event(event_id: str) -> str:
    return f"{EVENT_PREFIX}{event_id}"


def action(action_id: str) -> str:
    return f"{ACTION_PREFIX}{action_id}"


def circuit(gateway: str | None = None) -> tuple[str, str, str]:
    """The circuit, its trip level and its probe key, for the default gateway or a named one."""
    suffix = f":{gateway}" if gateway else ""
    return CIRCUIT + suffix, CIRCUIT_LEVEL + suffix, CIRCUIT_PROBE + suffix


def lane(session_key: str) -> str:
    """The actions of one sessionKey, in arrival order: only the head is sent."""
    return f"{LANE_PREFIX}{session_key}"


def sending(action_id: str) -> str:
    """Held while one job sends an action, so two copies of a job never send it at once."""
    return f"{PREFIX}sending:{action_id}"


def auth_failures(kind: str, value: str) -> str:
    """Failed authentications of one client address (`kind` "addr") or source ("source") in the window."""
    return f"{PREFIX}authfail:{kind}:{value}"


def schedule(name: str) -> str:
    """A schedule's state: the last tick fired or skipped (`last_tick`), when first seen (`since`)."""
    return f"{PREFIX}schedule:{name}"


def events_by_source(source: str) -> str:
    """zset: the event log's index of one source (event id -> received_at), for the console's filter."""
    return f"{EVENTS_BY_SOURCE_PREFIX}{source}"


MINUTE_TTL = 2 * 3600  # per-minute counters are kept two hours


def minute(bucket: int) -> str:
    """hash of counters (received, delivered, dead) for one minute (`int(time / 60)`): the console's chart."""
    return f"{MINUTE_PREFIX}{bucket}"


def paused_held(field: str) -> str:
    """zset: the actions held by one pause (`field` "source:NAME" or "gateway:NAME"), by arrival."""
    return f"{PAUSED_HELD_PREFIX}{field}"


def maintenance(queue: str) -> str:
    """Lock: the one worker cleaning an RQ queue's registries this round."""
    return f"{PREFIX}maintenance:{queue}"


# --- relay.hold: cooldown, batch and delay windows ------------------------------------------------
# Each prefix is followed by a rendered key (cut to relay.hold.windows.MAX_KEY) or an event id.

HOLD_DUE = PREFIX + "cooldown:due"  # zset: candidates key or delayed member -> when due (ms); name kept
COOLDOWN_DROP = PREFIX + "cooldown:drop:"  # string: the holder of a `drop` window (source, delivery id)
COOLDOWN_LAST = PREFIX + "cooldown:last:"  # zset: the held candidates of a `last` window
BATCH_HELD = PREFIX + "batch:held:"  # zset: the events held for one batch
BATCH_META = PREFIX + "batch:meta:"  # hash: a batch's key, window and max, read when it is flushed
DELAYED = PREFIX + "delayed:"  # + event id: a delayed event's member of HOLD_DUE
DELAY_KEY = PREFIX + "delay-key:"  # set: the event ids delayed under one rendered key
