"""Holding an event before its actions are queued: one entry point over a table of kinds.

A mapping may hold its actions back (`Decision.hold`, `relay.protocol.mapping`):

- `cooldown`: at most one agent turn per key and window (`relay.hold.cooldown`);
- `batch`: the events of a window become one action (`relay.hold.batching`);
- `delay`: the actions go later, unless a `cancel:` comes first (`relay.hold.delayed`).

The mapping stage (`relay.worker.mapper`) calls `admit` once with the Decision before it commits
the mapping: the Admission says whether the actions are dropped (a cooldown's `drop` window),
held or queued at once. Once the mapping is committed, `Admission.settle` cancels what the event
cancels and holds it. Every router calls `flush_due`, which queues what is due; a due member's
prefix names its kind. The kinds share the held-event machinery of `relay.hold.windows`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis

from relay.config import Settings
from relay.hold import batching, cooldown, delayed
from relay.hold import windows as held
from relay.protocol.mapping import Decision, Hold, HoldKind
from relay.store import keys

log = logging.getLogger("relay.held")


@dataclass(frozen=True, slots=True)
class Kind:
    """One way of holding. `prefix`: its members of the due zset, flushed by `flush`. `waits`: whether
    an event is held (else `admit` decides at once, before recording: a skip reason, or None to go on)."""

    prefix: str
    offer: Callable[[Redis, Hold, str, int], bool]
    flush: Callable[[Redis, Settings, bytes, float, float], str | None]
    waits: Callable[[Hold], bool] = lambda hold: True
    admit: Callable[[Redis, Hold, str, str], str | None] | None = None


KINDS: dict[HoldKind, Kind] = {
    "cooldown": Kind(keys.COOLDOWN_LAST, cooldown.offer, cooldown.flush_one, cooldown.waits, cooldown.admit),
    "batch": Kind(keys.BATCH_HELD, batching.offer, batching.flush_one),
    "delay": Kind(keys.DELAYED, delayed.offer, delayed.fire_one),
}


@dataclass(frozen=True, slots=True)
class Admission:
    """What the hold stage does with one event: hold its actions back (`hold`), drop them
    (`dropped`: why, recorded as the skip reason), or neither (they are queued at once)."""

    hold: Hold | None = None
    dropped: str | None = None
    cancel: str | None = None  # the rendered key whose delayed events this event cancels

    def settle(self, redis: Redis, event_id: str, ttl: int) -> None:
        """Once the event is recorded: cancel what it cancels, then hold it (both idempotent, so a
        sender's retry of a recorded event settles it again without effect)."""
        if self.cancel is not None:
            delayed.cancel_by(redis, self.cancel, event_id)
        if self.hold is not None:
            KINDS[self.hold.kind].offer(redis, self.hold, event_id, ttl)


def admit(redis: Redis, decision: Decision, source: str, delivery_id: str) -> Admission:
    """Before the event is recorded: what its Decision's hold does to its actions."""
    hold = decision.hold
    if hold is None or not decision.actions:
        return Admission(cancel=decision.cancel)
    kind = KINDS[hold.kind]
    if kind.waits(hold):
        return Admission(hold, cancel=decision.cancel)
    dropped = kind.admit(redis, hold, source, delivery_id) if kind.admit is not None else None
    return Admission(dropped=dropped, cancel=decision.cancel)


def flush_due(redis: Redis, settings: Settings, now: float | None = None, limit: int = 100) -> list[str]:
    """Queue what is due: closed windows and ended delays (run by every router); returns the
    queued event ids."""
    current = time.time() if now is None else now
    flushed: list[str] = []
    for raw, score in held.due(redis, current, limit):
        kind = next((k for k in KINDS.values() if raw.startswith(k.prefix.encode())), None)
        if kind is None:
            log.error("unknown due window %r dropped", raw)
            redis.zrem(held.DUE, raw)
            continue
        eid = kind.flush(redis, settings, raw, score, current)
        if eid:
            flushed.append(eid)
    return flushed
