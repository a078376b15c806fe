"""Every Redis key and name the relay uses, in one place."""

from __future__ import annotations

PREFIX = "relay:"

INBOX = PREFIX + "inbox"  # stream of recorded events waiting to become RQ jobs
ROUTERS = "routers"  # the inbox's consumer group
EVENTS = PREFIX + "events"  # zset: event id -> received_at, the event log's index
DEAD = PREFIX + "dead"  # zset: action id -> time it was dead-lettered
PARKED = PREFIX + "parked"  # zset: event id -> time its transform failed
STATS = PREFIX + "stats"  # hash of counters


def dedupe(source: str, delivery_id: str) -> str:
    return f"{PREFIX}dedupe:{source}:{delivery_id}"


def event(event_id: str) -> str:
    return f"{PREFIX}event:{event_id}"


def action(action_id: str) -> str:
    return f"{PREFIX}action:{action_id}"
