"""Before a send: may the action go now, and the start of its attempt, in one script call.

`begin` reads the action's record and looks, in this order, at the session's turn
(relay.store.lanes), an operator's pause (relay.store.pause) and the gateway's circuit
(relay.delivery.circuit), with the same Lua each of those runs alone; then it takes the send lock
and counts the attempt. A delivery job's path to its POST is one round trip where one per read and
check used to be nine. With a rate cap the job waits for its token between the checks and
`start`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

from relay.config import Settings
from relay.store import keys, pause, scripts

# What a delivery job reads of its action's record.
RECORD_FIELDS = (
    "state",
    "kind",
    "body",
    "event_id",
    "queued_at",
    "session_key",
    "idempotency_key",
    "source",
    "delivery_id",
    "gateway",
)


@dataclass(frozen=True, slots=True)
class Begun:
    """What `begin` found. `verdict`: 'go' (`attempts` counted, 0 when not started yet),
    'missing', 'finished', 'waiting' (marked so), 'held' (by the pause field `held_by`),
    'circuit' (wait `wait` seconds) or 'locked' (another copy of the job is sending it)."""

    verdict: str
    record: dict[str, str]  # the fields read, decoded, but the body
    body: bytes | None
    attempts: int = 0
    held_by: str = ""
    wait: float = 0.0
    now: float = 0.0  # when the attempt began


def begin(redis: Redis, settings: Settings, action_id: str, lock_ttl_ms: int, *, start: bool) -> Begun:
    """Read the action's record, check whether it may be sent now, and with `start` begin the attempt."""
    now = time.time()
    probe_ttls = [
        part
        for name in settings.gateway_names()
        for part in (name or "", int((settings.gateway_config(name).timeout_seconds + 5) * 1000))
    ]
    script = redis.register_script(scripts.ATTEMPT_BEGIN)  # EVALSHA: the text is not sent each time
    verdict, detail, *values = script(
        keys=[keys.action(action_id), keys.sending(action_id), keys.PAUSED, keys.PAUSED_HELD],
        args=[
            action_id,
            repr(now),
            keys.ACTION_PREFIX,
            keys.LANE_PREFIX,
            keys.PAUSED_HELD_PREFIX,
            *keys.circuit(None),
            pause.DEFAULT_GATEWAY,
            1 if start else 0,
            lock_ttl_ms,
            len(probe_ttls) // 2,
            *probe_ttls,
            *RECORD_FIELDS,
        ],
    )
    raw = dict(zip(RECORD_FIELDS, values, strict=True))
    verdict = verdict.decode()
    return Begun(
        verdict,
        {name: value.decode() for name, value in raw.items() if value is not None and name != "body"},
        raw["body"],
        attempts=int(detail) if verdict == "go" else 0,
        held_by=detail.decode() if verdict == "held" else "",
        wait=int(detail) / 1000 if verdict == "circuit" else 0.0,
        now=now,
    )


def start(redis: Redis, action_id: str, lock_ttl_ms: int, now: float) -> int:
    """Take the action's send lock and count the attempt (after the rate cap's wait): its number,
    or 0 when another copy of the job holds the lock."""
    script = redis.register_script(scripts.ATTEMPT_START)
    return int(script(keys=[keys.sending(action_id), keys.action(action_id)], args=[lock_ttl_ms, repr(now)]))
