"""`relay.hold`'s one entry point against a real Redis: `admit`, `Admission.settle` and `flush_due`
for each kind (cooldown, batch, delay) and a mapping's `cancel`, without an ingress process."""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis

from relay import hold
from relay.config import Settings
from relay.hold import windows
from relay.protocol.actions import AgentAction
from relay.protocol.mapping import Decision, Hold
from relay.protocol.mapping_config import BatchConfig, CooldownConfig, DelayConfig
from relay.store import keys
from relay.store.events import encode_actions, record_event

TTL = 600
LATER = 3600.0  # seconds ahead: every window and delay is due by then


def _record(client: redis.Redis, delivery_id: str, message: str, *, queued: bool = False) -> str:
    """An event recorded as the ingress records a held one: its actions stored, none queued."""
    action = AgentAction(message=message)
    return record_event(
        client,
        source="src",
        delivery_id=delivery_id,
        headers={},
        body=b"{}",
        actions=encode_actions("src", delivery_id, [action]),
        action_count=1 if queued else 0,
        dedupe_ttl=TTL,
        event_ttl=TTL,
    ).event_id


def _state(client: redis.Redis, event_id: str) -> str:
    return (client.hget(keys.event(event_id), "state") or b"").decode()


def _settle(url: str, admission: hold.Admission, event_id: str) -> None:
    """Settle as the mapper does, on a sync client of its own."""
    with redis.Redis.from_url(url) as client:
        admission.settle(client, event_id, TTL)


def _admit(url: str, decision: Decision, delivery_id: str) -> hold.Admission:
    with redis.Redis.from_url(url) as client:
        return hold.admit(client, decision, "src", delivery_id)


def _settings(redis_server: Any) -> Settings:
    return Settings.model_validate({"redis_url": redis_server.url, "event_ttl_seconds": TTL})


def test_every_kind_has_a_due_prefix_of_its_own() -> None:
    prefixes = [kind.prefix for kind in hold.KINDS.values()]
    assert set(hold.KINDS) == {"cooldown", "batch", "delay"}
    assert all(not a.startswith(b) for a in prefixes for b in prefixes if a != b)


def test_no_actions_or_no_hold_queues_at_once_and_keeps_the_cancel(
    redis_server: Any, redis_client: redis.Redis
) -> None:
    cooldown = Hold("cooldown", "src:k", CooldownConfig(key="k", window=30, mode="last"))
    assert _admit(redis_server.url, Decision([], cooldown, cancel="src:c"), "d1") == hold.Admission(
        cancel="src:c"
    )
    assert _admit(redis_server.url, Decision([AgentAction(message="m")]), "d2") == hold.Admission()
    assert redis_client.zcard(windows.DUE) == 0


def test_cooldown_drop_lets_the_first_event_and_its_retries_through(
    redis_server: Any, redis_client: redis.Redis
) -> None:
    cfg = CooldownConfig(key="k", window=30, mode="drop")
    decision = Decision([AgentAction(message="m")], Hold("cooldown", "src:pr#1", cfg))
    first = _admit(redis_server.url, decision, "d1")
    assert first.hold is None and first.dropped is None
    assert _admit(redis_server.url, decision, "d1").dropped is None  # a sender's retry
    second = _admit(redis_server.url, decision, "d2")
    assert second.hold is None
    assert second.dropped == "cooldown src:pr#1: an event for it passed less than 30 s ago (mode drop)"
    assert redis_client.exists(keys.COOLDOWN_DROP + "src:pr#1")


def test_cooldown_last_holds_every_event_and_queues_the_latest(
    redis_server: Any, redis_client: redis.Redis
) -> None:
    cfg = CooldownConfig(key="k", window=30, mode="last")
    decision = Decision([AgentAction(message="m")], Hold("cooldown", "src:pr#2", cfg))
    ids = []
    for n in range(3):
        admission = _admit(redis_server.url, decision, f"d{n}")
        assert admission.hold == decision.hold and admission.dropped is None
        ids.append(_record(redis_client, f"d{n}", f"m{n}"))
        _settle(redis_server.url, admission, ids[-1])
        time.sleep(0.002)  # distinct offer times: the latest is the newest candidate
    assert [_state(redis_client, e) for e in ids] == ["held"] * 3
    settings = _settings(redis_server)
    assert hold.flush_due(redis_client, settings) == []  # the window is still open
    assert hold.flush_due(redis_client, settings, now=time.time() + LATER) == [ids[-1]]
    assert [_state(redis_client, e) for e in ids] == ["skipped", "skipped", "queued"]
    assert redis_client.xlen(keys.INBOX) == 1
    assert redis_client.zcard(windows.DUE) == 0


def test_batch_holds_the_events_of_a_window_and_sends_one_action(
    redis_server: Any, redis_client: redis.Redis
) -> None:
    decision = Decision([AgentAction(message="m")], Hold("batch", "src:g", BatchConfig(key="g", window=30)))
    ids = []
    for n in range(3):
        admission = _admit(redis_server.url, decision, f"b{n}")
        assert admission.hold == decision.hold
        ids.append(_record(redis_client, f"b{n}", f"item {n}"))
        _settle(redis_server.url, admission, ids[-1])
    assert redis_client.hget(keys.BATCH_META + "src:g", "key") == b"src:g"
    [batch] = hold.flush_due(redis_client, _settings(redis_server), now=time.time() + LATER)
    assert [_state(redis_client, e) for e in ids] == ["batched"] * 3
    [action] = orjson.loads(redis_client.hget(keys.event(batch), "actions"))
    assert action["body"]["message"].startswith("3 events for g (batched over 30 s):")
    assert [f"{n}. item {n - 1}" in action["body"]["message"] for n in (1, 2, 3)] == [True] * 3


def test_delay_waits_until_due_and_a_cancel_with_its_key_wins(
    redis_server: Any, redis_client: redis.Redis
) -> None:
    delay = Hold("delay", "src:job-1", DelayConfig(after=60, key="job-1"))
    kept, cancelled = (_record(redis_client, d, d) for d in ("late-1", "late-2"))
    for event_id in (kept, cancelled):
        admission = _admit(redis_server.url, Decision([AgentAction(message="m")], delay), event_id)
        assert admission.hold == delay
        _settle(redis_server.url, admission, event_id)
    assert [_state(redis_client, e) for e in (kept, cancelled)] == ["delayed", "delayed"]
    # A later event whose mapping cancels the key: recorded and queued itself, it cancels both.
    canceller = _record(redis_client, "done", "done", queued=True)
    admission = _admit(redis_server.url, Decision([AgentAction(message="m")], cancel="src:job-1"), "done")
    assert admission == hold.Admission(cancel="src:job-1")
    _settle(redis_server.url, admission, canceller)
    assert [_state(redis_client, e) for e in (kept, cancelled)] == ["cancelled", "cancelled"]
    assert redis_client.hget(keys.event(canceller), "cancelled") == b"2"
    assert hold.flush_due(redis_client, _settings(redis_server), now=time.time() + LATER) == []
    # A delay without a cancel fires once its time has come, not before.
    fires = _record(redis_client, "late-3", "late-3")
    admission = _admit(
        redis_server.url, Decision([AgentAction(message="m")], Hold("delay", None, delay.config)), "x"
    )
    _settle(redis_server.url, admission, fires)
    assert hold.flush_due(redis_client, _settings(redis_server)) == []
    assert hold.flush_due(redis_client, _settings(redis_server), now=time.time() + LATER) == [fires]
    assert _state(redis_client, fires) == "queued"


def test_an_unknown_due_member_is_dropped(redis_server: Any, redis_client: redis.Redis) -> None:
    redis_client.zadd(windows.DUE, {"relay:something-else:x": 1})
    assert hold.flush_due(redis_client, _settings(redis_server)) == []
    assert redis_client.zcard(windows.DUE) == 0
