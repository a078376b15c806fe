"""The one call before a send (relay.delivery.gate.begin): the record, the session's turn, the
pauses, the circuit, the send lock and the attempt's count, each as the check alone decides."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from relay.config import Settings, load_settings
from relay.delivery import circuit, gate
from relay.store import keys, lanes, pause

LOCK_TTL = 60_000


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = tmp_path / "relay.yaml"
    config.write_text(
        "gateway: {url: 'http://127.0.0.1:9', token: t, timeout_seconds: 20}\n"
        "gateways: {ops: {url: 'http://127.0.0.1:9', token: t, timeout_seconds: 50}}\n"
        "sources: {ci: {preset: generic, token: t}}\n"
    )
    return load_settings(config)


def action(r: redis.Redis, aid: str, **fields: str) -> None:
    record = {"state": "queued", "kind": "agent", "body": "{}", "source": "ci", **fields}
    r.hset(keys.action(aid), mapping=record)


def test_a_queued_action_goes_counted_and_locked(redis_client: redis.Redis, settings: Settings) -> None:
    action(redis_client, "a1", event_id="e1", session_key="s")
    lanes_key = keys.lane("s")
    redis_client.rpush(lanes_key, "a1")

    begun = gate.begin(redis_client, settings, "a1", LOCK_TTL, start=True)

    assert (begun.verdict, begun.attempts, begun.body) == ("go", 1, b"{}")
    assert begun.record["event_id"] == "e1" and "body" not in begun.record
    record = redis_client.hgetall(keys.action("a1"))
    assert record[b"state"] == b"delivering" and record[b"attempts"] == b"1"
    assert record[b"first_attempt_at"] == record[b"last_attempt_at"]
    assert redis_client.exists(keys.sending("a1"))
    # A second copy of the job finds the lock and counts nothing.
    assert gate.begin(redis_client, settings, "a1", LOCK_TTL, start=True).verdict == "locked"
    assert redis_client.hget(keys.action("a1"), "attempts") == b"1"


def test_missing_and_finished_actions_are_left_alone(redis_client: redis.Redis, settings: Settings) -> None:
    assert gate.begin(redis_client, settings, "nope", LOCK_TTL, start=True).verdict == "missing"
    action(redis_client, "done", state="delivered")
    begun = gate.begin(redis_client, settings, "done", LOCK_TTL, start=True)
    assert (begun.verdict, begun.record["state"]) == ("finished", "delivered")
    assert not redis_client.exists(keys.sending("done"))
    assert redis_client.hget(keys.action("done"), "attempts") is None


def test_a_later_action_of_a_session_waits_as_my_turn_says(
    redis_client: redis.Redis, settings: Settings
) -> None:
    for aid in ("first", "second"):
        action(redis_client, aid, session_key="s")
        redis_client.rpush(keys.lane("s"), aid)

    assert gate.begin(redis_client, settings, "second", LOCK_TTL, start=True).verdict == "waiting"
    assert redis_client.hget(keys.action("second"), "state") == b"waiting"
    assert not redis_client.exists(keys.sending("second"))
    assert lanes.my_turn(redis_client, keys.lane("s"), "first")  # the same check, alone


def test_a_paused_source_holds_the_action(redis_client: redis.Redis, settings: Settings) -> None:
    action(redis_client, "a1")
    redis_client.hset(keys.PAUSED, pause.field("source", "ci"), "{}")

    begun = gate.begin(redis_client, settings, "a1", LOCK_TTL, start=True)

    assert (begun.verdict, begun.held_by) == ("held", "source:ci")
    assert redis_client.hget(keys.action("a1"), "state") == b"held"
    assert redis_client.zscore(pause.held_key("source", "ci"), "a1") is not None


def test_an_open_circuit_of_its_own_gateway_defers_it(redis_client: redis.Redis, settings: Settings) -> None:
    circuit.trip(redis_client, "down", "ops")
    action(redis_client, "to-ops", gateway="ops")
    action(redis_client, "to-default")

    begun = gate.begin(redis_client, settings, "to-ops", LOCK_TTL, start=True)
    assert begun.verdict == "circuit" and 0.2 <= begun.wait <= circuit.MIN_PAUSE
    assert gate.begin(redis_client, settings, "to-default", LOCK_TTL, start=True).verdict == "go"


def test_after_a_pause_one_probe_goes_held_for_its_gateways_timeout(
    redis_client: redis.Redis, settings: Settings
) -> None:
    circuit.trip(redis_client, "down", "ops")
    redis_client.delete(keys.circuit("ops")[0])  # the pause is over: half-open
    for aid in ("p1", "p2"):
        action(redis_client, aid, gateway="ops")

    assert gate.begin(redis_client, settings, "p1", LOCK_TTL, start=True).verdict == "go"
    probe_ttl = redis_client.pttl(keys.circuit("ops")[2])
    assert 50_000 < probe_ttl <= 55_000  # ops: timeout 50 s + 5
    begun = gate.begin(redis_client, settings, "p2", LOCK_TTL, start=True)
    assert (begun.verdict, begun.wait) == ("circuit", 1.0)


def test_with_a_rate_cap_the_attempt_starts_after_the_token(
    redis_client: redis.Redis, settings: Settings
) -> None:
    action(redis_client, "a1")

    begun = gate.begin(redis_client, settings, "a1", LOCK_TTL, start=False)
    assert (begun.verdict, begun.attempts) == ("go", 0)
    assert not redis_client.exists(keys.sending("a1"))
    assert gate.start(redis_client, "a1", LOCK_TTL, begun.now) == 1
    assert gate.start(redis_client, "a1", LOCK_TTL, begun.now) == 0  # locked
