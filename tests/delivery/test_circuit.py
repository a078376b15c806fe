"""The gateway circuit and rate cap (relay.delivery.circuit), shared by every worker through Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from relay.delivery import circuit
from tests.conftest import RedisServer, wait_until

PROBE_TTL = 30.0


@pytest.fixture
def other_worker(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[redis.Redis]:
    """A second connection, as another worker process has: the state is Redis's, not a process's."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def test_a_closed_circuit_lets_every_worker_send(redis_client: redis.Redis) -> None:
    assert circuit.circuit_state(redis_client) == circuit.CircuitState(False, "", 0.0)
    assert circuit.may_send(redis_client, PROBE_TTL) == 0.0
    assert circuit.may_send(redis_client, PROBE_TTL) == 0.0
    assert circuit.hold_deliveries(redis_client, [None]) is False


def test_a_trip_pauses_every_worker_for_the_pause(
    redis_client: redis.Redis, other_worker: redis.Redis
) -> None:
    pause = circuit.trip(redis_client, "connection refused")

    assert pause == circuit.MIN_PAUSE
    state = circuit.circuit_state(other_worker)
    assert state.open and state.reason == "connection refused"
    assert 0 < state.remaining <= pause
    assert 0 < circuit.may_send(other_worker, PROBE_TTL) <= pause
    assert circuit.hold_deliveries(other_worker, [None]) is True


def test_each_trip_doubles_the_pause_up_to_the_cap(redis_client: redis.Redis) -> None:
    pauses = [circuit.trip(redis_client, "timeout", max_pause=10) for _ in range(6)]

    assert pauses == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert circuit.circuit_state(redis_client).remaining > 8


def test_a_long_reason_is_cut_short(redis_client: redis.Redis) -> None:
    circuit.trip(redis_client, "x" * 2000)

    assert circuit.circuit_state(redis_client).reason == "x" * 500


def test_after_the_pause_one_probe_goes_and_its_success_closes_the_circuit(
    redis_client: redis.Redis, other_worker: redis.Redis
) -> None:
    circuit.trip(redis_client, "401 Unauthorized")
    wait_until(lambda: not circuit.circuit_state(redis_client).open, timeout=5)

    assert circuit.may_send(redis_client, PROBE_TTL) == 0.0  # this worker takes the probe
    assert circuit.may_send(other_worker, PROBE_TTL) == 1.0  # half-open: the others wait for it
    assert circuit.hold_deliveries(other_worker, [None]) is True

    circuit.close(redis_client)

    assert circuit.may_send(other_worker, PROBE_TTL) == 0.0
    assert circuit.may_send(other_worker, PROBE_TTL) == 0.0  # closed: no probe to take any more
    assert circuit.hold_deliveries(other_worker, [None]) is False
    assert circuit.trip(redis_client, "again") == circuit.MIN_PAUSE  # the success reset the level


def test_a_failed_probe_opens_the_circuit_for_twice_as_long(redis_client: redis.Redis) -> None:
    circuit.trip(redis_client, "404 Not Found")
    wait_until(lambda: not circuit.circuit_state(redis_client).open, timeout=5)
    assert circuit.may_send(redis_client, PROBE_TTL) == 0.0

    assert circuit.trip(redis_client, "404 Not Found") == 2 * circuit.MIN_PAUSE
    assert circuit.circuit_state(redis_client).open
    assert circuit.may_send(redis_client, PROBE_TTL) > 0


def test_gateways_have_circuits_of_their_own(redis_client: redis.Redis) -> None:
    circuit.trip(redis_client, "down", gateway="ops")

    assert circuit.circuit_state(redis_client, "ops").open
    assert not circuit.circuit_state(redis_client).open
    assert circuit.may_send(redis_client, PROBE_TTL) == 0.0
    assert circuit.may_send(redis_client, PROBE_TTL, "ops") > 0
    # Workers keep taking jobs while any gateway is up; they hold only when all are paused.
    assert circuit.hold_deliveries(redis_client, [None, "ops"]) is False
    circuit.trip(redis_client, "down too")
    assert circuit.hold_deliveries(redis_client, [None, "ops"]) is True

    circuit.close(redis_client, "ops")
    assert not circuit.circuit_state(redis_client, "ops").open
    assert circuit.circuit_state(redis_client).open


def test_the_rate_cap_spends_a_shared_burst_then_spaces_sends(
    redis_client: redis.Redis, other_worker: redis.Redis
) -> None:
    def take(client: redis.Redis) -> float:
        return circuit.take_token(client, rate=1, burst=2, max_wait=5)

    assert take(redis_client) == 0.0
    assert take(other_worker) == 0.0  # the same bucket

    third, fourth = take(redis_client), take(other_worker)
    # Each reserved a token: the next send waits one interval (1 s) longer than the one before.
    assert 0.5 < third <= 1.0
    assert 1.5 < fourth <= 2.0


def test_a_wait_past_the_longest_reserves_nothing(redis_client: redis.Redis) -> None:
    assert circuit.take_token(redis_client, rate=1, burst=1, max_wait=0.5) == 0.0

    first = circuit.take_token(redis_client, rate=1, burst=1, max_wait=0.5)
    again = circuit.take_token(redis_client, rate=1, burst=1, max_wait=0.5)
    # Too long a wait: the caller asks again later, and asking took nothing from the bucket.
    assert 0.5 < again <= first <= 1.0
