"""relay/store/scripts against a real Redis: every script compiles, and each one writes the keys
(by their stored names) and states it wrote when it lived inline in its module."""

from __future__ import annotations

import time
from importlib.resources import files

import orjson
import pytest
import redis

from relay.delivery import circuit
from relay.store import keys, lanes, pause, scripts, selection
from relay.store.events import record_event


@pytest.mark.parametrize("name", sorted(scripts.ALL))
def test_every_script_compiles(redis_client: redis.Redis, name: str) -> None:
    sha = redis_client.script_load(scripts.ALL[name])
    assert redis_client.script_exists(sha) == [True]


def test_every_file_is_a_script_or_a_library() -> None:
    names = {f.name.removesuffix(".lua") for f in files(scripts).iterdir() if f.name.endswith(".lua")}
    assert names == set(scripts.ALL) | set(scripts.LIBRARIES)


def test_record_writes_the_stored_names(redis_client: redis.Redis) -> None:
    rec = record_event(
        redis_client,
        source="github",
        delivery_id="d1",
        headers={},
        body=b"{}",
        actions=b"[]",
        action_count=1,
        lanes=[(keys.lane("s1"), "act_1")],
        dedupe_ttl=600,
        event_ttl=600,
    )
    assert redis_client.get(b"relay:dedupe:github:d1") == rec.event_id.encode()
    event = redis_client.hgetall(b"relay:event:" + rec.event_id.encode())
    assert event[b"state"] == b"queued" and event[b"source"] == b"github"
    assert redis_client.zscore(b"relay:events:source:github", rec.event_id) is not None
    assert redis_client.hget(b"relay:stats", "event|accepted|github") == b"1"
    (minute,) = redis_client.scan_iter(match="relay:minute:*")
    assert redis_client.hget(minute, "received") == b"1"
    assert 0 < redis_client.ttl(minute) <= keys.MINUTE_TTL
    assert redis_client.hget(b"relay:action:act_1", "state") == b"queued"
    assert redis_client.lrange(b"relay:lane:s1", 0, -1) == [b"act_1"]
    assert redis_client.smembers(b"relay:lanes") == {b"relay:lane:s1"}
    assert redis_client.xlen(b"relay:inbox") == 1


def test_lane_turn_and_hand_off(redis_client: redis.Redis) -> None:
    lane = keys.lane("s1")
    for aid in ("a1", "a2"):
        redis_client.hset(keys.action(aid), "state", "queued")
        redis_client.rpush(lane, aid)
    assert lanes.my_turn(redis_client, lane, "a1")
    assert not lanes.my_turn(redis_client, lane, "a2")
    assert redis_client.hget(b"relay:action:a2", "state") == b"waiting"
    redis_client.hset(keys.action("a1"), "state", "delivered")
    assert lanes.hand_off(redis_client, lane, "a1") == ("a2", "a2-t1")
    assert redis_client.hget(b"relay:action:a2", "state") == b"queued"
    assert redis_client.lrange(lane, 0, -1) == [b"a2"]
    redis_client.hset(keys.action("a2"), "state", "dead")
    assert lanes.hand_off(redis_client, lane, "a2") is None
    redis_client.sadd(keys.LANES, lane)
    assert lanes.stalled_heads(redis_client) == []
    assert redis_client.smembers(keys.LANES) == set()  # the empty lane is forgotten


def test_a_finished_head_is_dropped_before_the_turn(redis_client: redis.Redis) -> None:
    lane = keys.lane("s2")
    redis_client.rpush(lane, "gone", "done", "next")  # "gone" has no record: it expired
    redis_client.hset(keys.action("done"), "state", "delivered")
    redis_client.hset(keys.action("next"), "state", "queued")
    assert lanes.my_turn(redis_client, lane, "next")
    assert redis_client.lrange(lane, 0, -1) == [b"next"]


def test_pause_holds_into_the_stored_set(redis_client: redis.Redis) -> None:
    redis_client.hset(keys.action("a1"), mapping={"state": "queued", "received_at": "5"})
    assert pause.hold_if_paused(redis_client, "a1", "github", None) is None
    pause.pause(redis_client, "source", "github", by="test")
    assert pause.hold_if_paused(redis_client, "a1", "github", None) == "source:github"
    assert redis_client.hget(b"relay:action:a1", "state") == b"held"
    assert redis_client.zscore(b"relay:paused:held:source:github", "a1") == 5.0
    assert redis_client.smembers(b"relay:paused-sets") == {b"relay:paused:held:source:github"}
    assert [p.held for p in pause.list_paused(redis_client)] == [1]


def test_rate_bucket(redis_client: redis.Redis) -> None:
    assert circuit.take_token(redis_client, rate=1.0, burst=1.0) == 0.0
    wait = circuit.take_token(redis_client, rate=1.0, burst=1.0)
    assert 0.0 < wait <= 1.0
    assert set(redis_client.hgetall(b"relay:rate")) == {b"tokens", b"at"}


def test_replay_log_keeps_the_last(redis_client: redis.Redis) -> None:
    redis_client.hset(keys.event("e1"), "state", "queued")
    for i in range(selection.LOG_KEEP + 3):
        selection.record_replay(redis_client, "e1", by="test", what=str(i))
    log = selection.replay_log(redis_client, "e1")
    assert len(log) == selection.LOG_KEEP and log[-1]["what"] == str(selection.LOG_KEEP + 2)
    selection.record_replay(redis_client, "missing", by="test", what="x")
    assert not redis_client.exists(keys.event("missing"))


def test_replay_commit_queues_into_lanes(redis_client: redis.Redis) -> None:
    event = keys.event("e1")
    redis_client.hset(event, mapping={"state": "parked", "error": "boom"})
    redis_client.zadd(keys.PARKED, {"e1": 1})
    commit = redis_client.register_script(scripts.REPLAY_COMMIT)
    args = ["e1", "parked", "queued", b"[]", 1, repr(time.time()), "1", 600, keys.ACTION_PREFIX, "a1"]
    result = commit(keys=[event, keys.INBOX, keys.PARKED, keys.LANES, keys.lane("s1")], args=args)
    assert result == b"ok"
    stored = redis_client.hgetall(event)
    assert stored[b"state"] == b"queued" and stored[b"last_error"] == b"boom" and b"error" not in stored
    assert redis_client.zcard(keys.PARKED) == 0 and redis_client.xlen(keys.INBOX) == 1
    assert redis_client.hget(b"relay:action:a1", "state") == b"queued"
    assert redis_client.smembers(keys.LANES) == {b"relay:lane:s1"}
    # The event is no longer parked: a second commit expecting it parked is refused.
    assert commit(keys=[event, keys.INBOX, keys.PARKED, keys.LANES], args=args[:9]) == b"state:queued"
    failed = redis_client.register_script(scripts.REPLAY_FAILED)
    assert failed(keys=[keys.event("nope")], args=["", "err", "1"]) == b"missing"


def test_grep_and_schedule_advance(redis_client: redis.Redis) -> None:
    redis_client.hset(keys.event("e1"), mapping={"body": b"Hello", "headers": orjson.dumps({})})
    redis_client.hset(keys.event("e2"), mapping={"body": b"other", "headers": b'{"x":"HELLO"}'})
    grep = redis_client.register_script(scripts.SEARCH_GREP)
    assert grep(keys=[keys.event("e1"), keys.event("e2")], args=["hello", "1"]) == [1, 2]
    assert grep(keys=[keys.event("e1"), keys.event("e2")], args=["Hello", "0"]) == [1]
    advance = redis_client.register_script(scripts.SCHEDULE_ADVANCE)
    key = keys.schedule("nightly")
    assert advance(keys=[key], args=["20", "last_outcome", "fired"]) == 1
    assert advance(keys=[key], args=["10", "last_outcome", "skipped"]) == 0
    assert redis_client.hgetall(key) == {b"last_tick": b"20", b"last_outcome": b"fired"}
