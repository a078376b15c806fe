"""Session lanes (relay.store.lanes): the actions of one sessionKey go one at a time, in arrival order."""

from __future__ import annotations

import time

import redis
from rq import Queue

from relay.protocol.actions import AgentAction, action_id
from relay.store import keys, lanes
from relay.store.events import encode_actions, record_event, session_lanes


def record_actions(client: redis.Redis, delivery_id: str, actions: list[AgentAction]) -> str:
    """Record one event of source "src" with these actions, as the ingress does; its event id."""
    return record_event(
        client,
        source="src",
        delivery_id=delivery_id,
        headers={},
        body=b"{}",
        actions=encode_actions("src", delivery_id, actions),
        action_count=len(actions),
        lanes=session_lanes("src", delivery_id, actions),
        dedupe_ttl=600,
        event_ttl=600,
    ).event_id


def record(client: redis.Redis, delivery_id: str, *sessions: str | None) -> list[str]:
    """Record one event with an agent action per session (None: no sessionKey); its action ids."""
    actions = [AgentAction(message=f"m{i}", sessionKey=s) for i, s in enumerate(sessions)]
    record_actions(client, delivery_id, actions)
    return [action_id("src", delivery_id, i) for i in range(len(actions))]


def state(client: redis.Redis, aid: str) -> str | None:
    raw = client.hget(keys.action(aid), "state")
    return raw.decode() if raw else None


def finish(client: redis.Redis, aid: str, final: str = "delivered") -> None:
    """What the delivery job writes when an action is delivered or dead-lettered."""
    client.hset(keys.action(aid), "state", final)


def test_recording_appends_actions_to_their_lane_in_arrival_order(redis_client: redis.Redis) -> None:
    (a1,) = record(redis_client, "d1", "s1")
    a2, a3 = record(redis_client, "d2", "s1", "s2")
    (a4,) = record(redis_client, "d3", None)

    assert redis_client.lrange(keys.lane("s1"), 0, -1) == [a1.encode(), a2.encode()]
    assert redis_client.lrange(keys.lane("s2"), 0, -1) == [a3.encode()]
    assert redis_client.smembers(keys.LANES) == {keys.lane("s1").encode(), keys.lane("s2").encode()}
    assert state(redis_client, a2) == "queued"  # the record exists before the router routes it
    assert state(redis_client, a4) is None  # no sessionKey: no lane, no record yet


def test_only_the_head_has_its_turn_and_the_others_wait(redis_client: redis.Redis) -> None:
    a1, a2, a3 = (record(redis_client, f"d{i}", "s1")[0] for i in range(3))
    lane = keys.lane("s1")

    # Jobs may run in any order across workers: the later ones are told to wait.
    assert lanes.my_turn(redis_client, lane, a3) is False
    assert lanes.my_turn(redis_client, lane, a2) is False
    assert lanes.my_turn(redis_client, lane, a1) is True
    assert [state(redis_client, a) for a in (a1, a2, a3)] == ["queued", "waiting", "waiting"]


def test_hand_off_gives_each_next_action_its_turn_one_at_a_time(redis_client: redis.Redis) -> None:
    ids = [record(redis_client, f"d{i}", "s1")[0] for i in range(4)]
    lane = keys.lane("s1")
    for aid in ids[1:]:
        assert not lanes.my_turn(redis_client, lane, aid)

    sent = []
    current: str | None = ids[0]
    while current is not None:
        assert lanes.my_turn(redis_client, lane, current)
        sent.append(current)
        finish(redis_client, current)
        before = time.time()
        turn = lanes.hand_off(redis_client, lane, current)
        current = turn.action_id if turn else None
        if current is not None:
            assert state(redis_client, current) == "queued"  # claimed for the job its caller enqueues
            assert float(redis_client.hget(keys.action(current), "queued_at")) >= before

    assert sent == ids
    assert redis_client.llen(lane) == 0


def test_hand_off_claims_nothing_when_the_next_job_has_not_asked_yet(redis_client: redis.Redis) -> None:
    """The next action's own job is still queued: it will find its turn; a second job would double it."""
    a1, a2 = (record(redis_client, f"d{i}", "s1")[0] for i in range(2))
    lane = keys.lane("s1")
    assert lanes.my_turn(redis_client, lane, a1)
    finish(redis_client, a1)

    assert lanes.hand_off(redis_client, lane, a1) is None
    assert state(redis_client, a2) == "queued"
    assert lanes.my_turn(redis_client, lane, a2) is True


def test_finished_or_expired_heads_do_not_block_their_lane(redis_client: redis.Redis) -> None:
    a1, a2, a3 = (record(redis_client, f"d{i}", "s1")[0] for i in range(3))
    lane = keys.lane("s1")
    finish(redis_client, a1, "dead")  # dead-lettered, its hand-off cut short
    redis_client.delete(keys.action(a2))  # its record expired

    assert lanes.my_turn(redis_client, lane, a3) is True
    assert redis_client.lrange(lane, 0, -1) == [a3.encode()]


def test_lanes_of_different_sessions_do_not_wait_for_each_other(redis_client: redis.Redis) -> None:
    a1, b1 = record(redis_client, "d1", "s1", "s2")
    a2, b2 = record(redis_client, "d2", "s1", "s2")

    assert lanes.my_turn(redis_client, keys.lane("s1"), a1)
    assert lanes.my_turn(redis_client, keys.lane("s2"), b1)
    assert not lanes.my_turn(redis_client, keys.lane("s1"), a2)
    assert not lanes.my_turn(redis_client, keys.lane("s2"), b2)


def test_stalled_heads_are_old_heads_without_a_live_job(redis_client: redis.Redis) -> None:
    (lost,) = record(redis_client, "d1", "lost")
    (busy,) = record(redis_client, "d2", "busy")
    (recent,) = record(redis_client, "d3", "recent")
    (done,) = record(redis_client, "d4", "done")
    old = repr(time.time() - 60)
    for aid in (lost, busy, done):
        redis_client.hset(keys.action(aid), "queued_at", old)
    finish(redis_client, done)
    Queue("relay", connection=redis_client).enqueue("relay.delivery.deliver", busy, job_id=busy)
    redis_client.hset(keys.action(busy), "job_id", busy)
    redis_client.hset(keys.action(lost), "job_id", "a-job-that-vanished")

    assert lanes.stalled_heads(redis_client, min_age=10) == [lost]


def test_stalled_heads_forgets_empty_lanes(redis_client: redis.Redis) -> None:
    (aid,) = record(redis_client, "d1", "s1")
    finish(redis_client, aid)
    assert lanes.hand_off(redis_client, keys.lane("s1"), aid) is None

    assert lanes.stalled_heads(redis_client) == []
    assert redis_client.smembers(keys.LANES) == set()


def test_each_turn_gets_a_new_job_id(redis_client: redis.Redis) -> None:
    (aid,) = record(redis_client, "d1", "s1")

    assert lanes.next_job_id(redis_client, aid) == f"{aid}-t1"
    assert lanes.next_job_id(redis_client, aid) == f"{aid}-t2"
