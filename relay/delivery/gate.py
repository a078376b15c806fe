"""Before a send: may the action go now, and the start of its attempt, in two script calls.

`check` looks, in this order, at the session's turn (relay.store.lanes), an operator's pause
(relay.store.pause) and the gateway's circuit (relay.delivery.circuit), with the same Lua each of
those runs alone; `start` takes the send lock and counts the attempt. A delivery job's path to its
POST is then three round trips (its record, these two) where one per check used to be nine.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from relay.store import keys, pause, scripts


@dataclass(frozen=True, slots=True)
class Verdict:
    """What `check` found; `go` when none of the others holds."""

    waiting: bool = False  # an earlier action of its session goes first (marked waiting)
    held_by: str | None = None  # the pause field that holds it (marked held)
    wait: float = 0.0  # seconds: the circuit is open, or another worker's probe is out

    @property
    def go(self) -> bool:
        return not (self.waiting or self.held_by or self.wait)


def check(
    redis: Redis,
    action_id: str,
    lane_key: str | None,
    source: str | None,
    gateway: str | None,
    probe_ttl: float,
    now: float,
) -> Verdict:
    script = redis.register_script(scripts.ATTEMPT_GATE)  # EVALSHA: the text is not sent each time
    answer = script(
        keys=[
            keys.action(action_id),
            lane_key or "",
            keys.PAUSED,
            keys.PAUSED_HELD,
            *keys.circuit(gateway),
        ],
        args=[
            action_id,
            keys.ACTION_PREFIX,
            repr(now),
            keys.PAUSED_HELD_PREFIX,
            int(probe_ttl * 1000),
            *pause.fields_holding(source, gateway),
        ],
    )
    verdict = answer[0].decode()
    if verdict == "waiting":
        return Verdict(waiting=True)
    if verdict == "held":
        return Verdict(held_by=answer[1].decode())
    if verdict == "circuit":
        return Verdict(wait=int(answer[1]) / 1000)
    return Verdict()


def start(redis: Redis, action_id: str, lock_ttl_ms: int, now: float) -> int:
    """Take the action's send lock and count the attempt: its number, or 0 when another copy of
    the job holds the lock."""
    script = redis.register_script(scripts.ATTEMPT_START)
    return int(script(keys=[keys.sending(action_id), keys.action(action_id)], args=[lock_ttl_ms, repr(now)]))
