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

from . import keys

MIN_PAUSE = 1.0
MAX_PAUSE = 60.0

# KEYS: bucket. ARGV: rate per second, burst, now (s), longest wait to reserve (s).
# A token is reserved (the count may go negative) when the wait for it is at most that long;
# returns the seconds to wait before sending. A longer wait reserves nothing: ask again later.
_TAKE_FROM_BUCKET = """
local rate, burst, now, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = math.max(0, (1 - tokens) / rate)
if wait <= max_wait then tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""


@dataclass(frozen=True, slots=True)
class CircuitState:
    open: bool
    reason: str
    remaining: float  # seconds until a probe may go


def circuit_state(redis: Redis) -> CircuitState:
    with redis.pipeline() as pipe:
        pipe.get(keys.CIRCUIT)
        pipe.pttl(keys.CIRCUIT)
        reason, ttl = pipe.execute()
    if reason is None:
        return CircuitState(False, "", 0.0)
    return CircuitState(True, reason.decode(), max(0.0, ttl / 1000))


def may_send(redis: Redis, probe_ttl: float) -> float:
    """0 when this worker may send now; else the seconds to wait. Takes the probe after a pause."""
    state = circuit_state(redis)
    if state.open:
        return max(state.remaining, 0.2)
    if redis.exists(keys.CIRCUIT_LEVEL) and not redis.set(
        keys.CIRCUIT_PROBE, "1", nx=True, px=int(probe_ttl * 1000)
    ):
        return 1.0  # half-open: another worker's probe is in flight
    return 0.0


def hold_deliveries(redis: Redis) -> bool:
    """True while workers should take no new job: the circuit is open, or its probe is out."""
    with redis.pipeline(transaction=False) as pipe:
        pipe.exists(keys.CIRCUIT)
        pipe.exists(keys.CIRCUIT_PROBE)
        open_, probing = pipe.execute()
    return bool(open_ or probing)


def trip(redis: Redis, reason: str) -> float:
    """Open the circuit (again) for an exponentially longer pause; returns the pause."""
    level = int(redis.incr(keys.CIRCUIT_LEVEL))
    pause = min(MAX_PAUSE, MIN_PAUSE * 2 ** (level - 1))
    with redis.pipeline() as pipe:
        pipe.set(keys.CIRCUIT, reason[:300], px=int(pause * 1000))
        pipe.expire(keys.CIRCUIT_LEVEL, int(MAX_PAUSE * 10))
        pipe.delete(keys.CIRCUIT_PROBE)
        pipe.execute()
    return pause


def close(redis: Redis) -> None:
    """The gateway answered: end the pause and the half-open probe."""
    redis.delete(keys.CIRCUIT, keys.CIRCUIT_LEVEL, keys.CIRCUIT_PROBE)


def take_token(redis: Redis, rate: float, burst: float, max_wait: float = 1.0) -> float:
    """Shared token bucket toward the gateway: seconds to wait before sending (0: send now).

    A wait up to `max_wait` comes with a reserved token; past it, nothing is reserved.
    """
    return float(redis.eval(_TAKE_FROM_BUCKET, 1, keys.RATE, rate, burst, time.time(), max_wait))
