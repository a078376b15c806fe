"""The one list of states: what the `state` field of an event or action record in Redis may hold.

The strings are stored data (an older version's records must still read), so they never change.
Lua scripts (relay/store/scripts) write the same strings as literals; tests/store/test_states.py
checks that every one of those is listed here.

An event record (`keys.event`) is written by the ingress (RECEIVED), then by the mapping stage,
replay or a hold window:

    RECEIVED   verified and stored as it came; the mapping stage (`relay.worker.mapper`) maps it
               moments later (then QUEUED, SKIPPED, PARKED, HELD or DELAYED)
    QUEUED     recorded with actions and put on the inbox: the router turns them into jobs
               (ingress; a replay; a cooldown, batch or delay window that closed)
    SKIPPED    recorded with nothing to send: the mapping made no action, the preset skipped it,
               or a cooldown superseded it (ingress, replay, relay.hold.cooldown)
    PARKED     its transform failed; it waits for `relay replay` (ingress; a replay that failed again)
    HELD       waiting in a cooldown or batch window (relay.hold); then QUEUED, SKIPPED or BATCHED
    DELAYED    waiting for its `delay:` to end (relay.hold.delayed); then QUEUED or CANCELLED
    CANCELLED  a delayed event cancelled, before its delay ended, by a later event's `cancel:`
    BATCHED    merged into a batch event, which carries its items (relay.hold.batching)

An action record (`keys.action`) follows its delivery:

    QUEUED     a job is queued or about to be (router, lane hand-off, resume, replay)
    WAITING    behind an earlier action of its session lane; QUEUED when the lane reaches it
    DELIVERING an attempt is in flight; then DELIVERED, RETRYING, PAUSED or DEAD
    DELIVERED  the gateway accepted it (final)
    RETRYING   an attempt failed; a retry is scheduled
    PAUSED     the gateway circuit is open or the rate cap is reached: waits without spending attempts
    HELD       an operator paused its source or gateway (relay.store.pause); QUEUED on resume
    DEAD       out of attempts or refused for good: dead-lettered (`relay dlq`); QUEUED on replay

An action with no record yet reads as QUEUED (recorded, not yet routed).
"""

from __future__ import annotations

from typing import Final

RECEIVED: Final = "received"
QUEUED: Final = "queued"
SKIPPED: Final = "skipped"
PARKED: Final = "parked"
HELD: Final = "held"
DELAYED: Final = "delayed"
CANCELLED: Final = "cancelled"
BATCHED: Final = "batched"
WAITING: Final = "waiting"
DELIVERING: Final = "delivering"
DELIVERED: Final = "delivered"
RETRYING: Final = "retrying"
PAUSED: Final = "paused"
DEAD: Final = "dead"

EVENT_STATES: Final = frozenset({RECEIVED, QUEUED, SKIPPED, PARKED, HELD, DELAYED, CANCELLED, BATCHED})
ACTION_STATES: Final = frozenset({QUEUED, WAITING, DELIVERING, DELIVERED, RETRYING, PAUSED, HELD, DEAD})
ALL: Final = EVENT_STATES | ACTION_STATES

FINISHED: Final = (DELIVERED, DEAD)  # an action that will not be sent again unless replayed
WAITING_OUT: Final = (RETRYING, PAUSED)  # an action waiting for its next attempt

# An event's delivery state as the console and `relay events` summarise it from its actions':
# PENDING while any is on its way, else DEAD, RETRYING or DELIVERED (and the event's own state
# when it has no action).
PENDING: Final = "pending"

# Never written by any version; `relay events` has always read it like QUEUED.
ROUTED: Final = "routed"
