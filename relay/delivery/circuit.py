"""Gateway health shared by every worker through Redis: a circuit breaker and a rate cap.

Connection failures, timeouts, 401 and 404 say the gateway is down or misconfigured, not that one
action is bad. They open the circuit: every worker stops sending and its actions wait (without
spending their attempts) until the circuit's pause ends. Then one probe is let through
(half-open); its success closes the circuit, its failure opens it again for twice as long.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

from relay.store import keys, scripts

MIN_PAUSE = 1.0
MAX_PAUSE = 60.0


@dataclass(frozen=True, slots=True)
class CircuitState:
    open: bool
    reason: str
    remaining: float  # seconds until a probe may go


def circuit_state(redis: Redis, gateway: str | None = None) -> CircuitState:
    circuit, _, _ = keys.circuit(gateway)
    with redis.pipeline() as pipe:
        pipe.get(circuit)
        pipe.pttl(circuit)
        reason, ttl = pipe.execute()
    if reason is None:
        return CircuitState(False, "", 0.0)
    return CircuitState(True, reason.decode(), max(0.0, ttl / 1000))


def may_send(redis: Redis, probe_ttl: float, gateway: str | None = None) -> float:
    """0 when this worker may send now; else the seconds to wait. Takes the probe after a pause
    (half-open: while another worker's probe is in flight, the others wait a second). A delivery job
    checks this with its turn and the pauses in one call (relay.delivery.gate)."""
    script = redis.register_script(scripts.CIRCUIT_WAIT)
    return int(script(keys=list(keys.circuit(gateway)), args=[int(probe_ttl * 1000)])) / 1000


def hold_deliveries(redis: Redis, gateways: list[str | None]) -> bool:
    """True while workers should take no new job: every gateway's circuit is open or probing.

    With one gateway down and another up, jobs keep flowing; those for the paused gateway wait.
    """
    with redis.pipeline(transaction=False) as pipe:
        for gateway in gateways:
            circuit, _, probe = keys.circuit(gateway)
            pipe.exists(circuit, probe)
        held = pipe.execute()
    return all(held)


def trip(redis: Redis, reason: str, gateway: str | None = None, max_pause: float = MAX_PAUSE) -> float:
    """Open the circuit (again) for an exponentially longer pause, up to `max_pause`; returns the pause."""
    circuit, level_key, probe = keys.circuit(gateway)
    level = int(redis.incr(level_key))
    pause = min(max_pause, MIN_PAUSE * 2 ** (level - 1))
    with redis.pipeline() as pipe:
        pipe.set(circuit, reason[:500], px=int(pause * 1000))
        pipe.expire(level_key, int(MAX_PAUSE * 10))
        pipe.delete(probe)
        pipe.execute()
    return pause


def close(redis: Redis, gateway: str | None = None) -> None:
    """The gateway answered: end the pause and the half-open probe."""
    redis.delete(*keys.circuit(gateway))


def take_token(redis: Redis, rate: float, burst: float, max_wait: float = 1.0) -> float:
    """Shared token bucket toward the gateway: seconds to wait before sending (0: send now).

    A wait up to `max_wait` comes with a reserved token; past it, nothing is reserved.
    """
    return float(redis.eval(scripts.RATE_TAKE_TOKEN, 1, keys.RATE, rate, burst, time.time(), max_wait))
