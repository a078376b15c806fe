"""Schedules: parsing, tick times, the catch-up policy (pure), and exactly-once firing against a
real Redis with simulated clocks (several schedulers = several workers, restarts)."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest
import redis
from pydantic import ValidationError

from relay.config import Settings
from relay.protocol.actions import AgentAction, WakeAction
from relay.protocol.schedules import (
    ScheduleConfig,
    build_action,
    decide,
    latest_tick,
    next_tick,
    parse_interval,
    tick_id,
)
from relay.store import keys
from relay.worker.ticker import Scheduler, describe, fire


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def cfg(**fields: object) -> ScheduleConfig:
    return ScheduleConfig.model_validate({"message": "hello", **fields})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("90", 90),
        (45, 45),
        ("2 H", 7200),
    ],
)
def test_intervals(text: str | int, seconds: int) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "0s", "m5", "-5s", "5m and", "1.5h", True])
def test_bad_intervals(text: object) -> None:
    with pytest.raises(ValueError):
        parse_interval(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({}, "exactly one of cron, every or at"),
        ({"every": "5m", "cron": "* * * * *"}, "exactly one"),
        ({"cron": "0 8 * * * *"}, "5-field cron"),
        ({"cron": "61 8 * * *"}, "5-field cron"),
        ({"every": "5m", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"at": "tomorrow"}, "ISO 8601"),
        ({"every": "5m", "message": None}, "needs a message"),
        ({"every": "5m", "action": "wake"}, "needs a text"),
        ({"every": "5m", "message": "{{payload.missing}}"}, "requires message"),
        ({"every": "5m", "thinking": "huge"}, "thinking"),
        ({"every": "5m", "catch_up": "all"}, "catch_up"),
        ({"every": "5m", "schedule": "typo"}, "schedule"),
    ],
)
def test_invalid_schedules_name_the_problem(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        ScheduleConfig.model_validate({"message": "hello", **fields})


def test_schedule_names_are_checked_in_settings() -> None:
    with pytest.raises(ValidationError, match="schedules"):
        Settings(schedules={"bad name": {"every": "1m", "message": "x"}})


def test_every_ticks_are_aligned_to_the_epoch() -> None:
    c = cfg(every="2h")
    now = ts("2026-01-12T09:30:00+00:00")
    assert latest_tick(c, now) == ts("2026-01-12T08:00:00+00:00")
    assert next_tick(c, now) == ts("2026-01-12T10:00:00+00:00")
    assert latest_tick(c, ts("2026-01-12T10:00:00+00:00")) == ts("2026-01-12T10:00:00+00:00")  # on the tick
    assert next_tick(c, ts("2026-01-12T10:00:00+00:00")) == ts("2026-01-12T12:00:00+00:00")


def test_cron_ticks_follow_the_timezone_across_dst() -> None:
    c = cfg(cron="0 8 * * 1-5", timezone="Europe/Berlin")
    winter = ts("2026-01-12T12:00:00+00:00")  # a Monday
    assert latest_tick(c, winter) == ts("2026-01-12T07:00:00+00:00")
    assert next_tick(c, winter) == ts("2026-01-13T07:00:00+00:00")
    summer = ts("2026-07-03T12:00:00+00:00")  # a Friday: the next one is Monday
    assert next_tick(c, summer) == ts("2026-07-06T06:00:00+00:00")
    assert latest_tick(c, ts("2026-01-12T07:00:00+00:00")) == ts("2026-01-12T07:00:00+00:00")


def test_at_fires_once_and_reads_naive_times_in_the_timezone() -> None:
    c = cfg(at="2026-01-12T08:00:00", timezone="Europe/Berlin")
    at = ts("2026-01-12T07:00:00+00:00")
    assert latest_tick(c, at - 1) is None and next_tick(c, at - 1) == at
    assert latest_tick(c, at + 3600) == at and next_tick(c, at) is None
    assert latest_tick(cfg(at="2026-01-12T08:00:00Z"), at + 3600) == at + 3600


def test_decide_fires_on_time_ticks_once() -> None:
    c = cfg(every="1m")
    t = ts("2026-01-12T08:00:00+00:00")
    assert decide(c, t + 1, handled=t - 60) == decide(c, t + 1, handled=t - 3600)  # only the latest
    d = decide(c, t + 1, handled=t - 60)
    assert d is not None and d.tick == t and d.advance_to == t and not d.late
    assert decide(c, t + 30, handled=t) is None  # handled: not again
    assert decide(c, t + 30, handled=t + 5) is None  # first seen after the tick: it never existed


def test_catch_up_skip_drops_late_ticks_and_once_fires_one() -> None:
    t = ts("2026-01-12T08:00:00+00:00")
    down_since = t - 3 * 3600  # every worker was down for hours
    skip = decide(cfg(every="1h"), t + 1800, handled=down_since)
    assert skip is not None and skip.tick is None and skip.advance_to == t and skip.late
    once = decide(cfg(every="1h", catch_up="once"), t + 1800, handled=down_since)
    assert once is not None and once.tick == t and once.late  # one event for the missed ticks
    # Within the grace a tick is on time, whatever the policy.
    d = decide(cfg(every="1h", grace_seconds=120), t + 100, handled=down_since)
    assert d is not None and d.tick == t
    # A one-off missed while down: skipped by default, fired late with catch_up: once.
    assert decide(cfg(at="2026-01-12T08:00:00Z"), t + 7200, handled=t - 60).tick is None  # type: ignore[union-attr]
    assert decide(cfg(at="2026-01-12T08:00:00Z", catch_up="once"), t + 7200, handled=t - 60).tick == t  # type: ignore[union-attr]


def test_tick_ids_are_deterministic_and_actions_use_the_mapping_fields() -> None:
    t = ts("2026-01-12T08:00:00+00:00")
    assert tick_id("daily", t) == "daily@2026-01-12T08:00:00Z"
    assert tick_id("daily", t + 0.25) == "daily@2026-01-12T08:00:00.250Z"
    action = build_action(
        "daily",
        cfg(
            every="1d",
            name="Cron",
            sessionKey="hook:cron:daily",
            thinking="low",
            message="Summary as of {{now}}",
            agentId="ops",
        ),
    )
    assert isinstance(action, AgentAction)
    assert action.message.startswith("Summary as of 20") and action.message.endswith("Z")
    assert (action.name, action.session_key, action.thinking, action.agent_id) == (
        "Cron",
        "hook:cron:daily",
        "low",
        "ops",
    )
    wake = build_action(
        "w", cfg(every="1d", action="wake", textTemplate="Check mail", wakeMode="next-heartbeat")
    )
    assert isinstance(wake, WakeAction) and wake.body() == {"text": "Check mail", "mode": "next-heartbeat"}


# --- against a real Redis, with simulated clocks ---------------------------------------------


def settings_with(redis_url: str, **schedules: dict[str, object]) -> Settings:
    return Settings(redis_url=redis_url, schedules=schedules)


def events_of(client: redis.Redis, name: str) -> list[str]:
    """Delivery ids of the events schedule `name` recorded, oldest first."""
    out = []
    for eid in client.zrange(keys.EVENTS, 0, -1):
        source, delivery_id = client.hmget(keys.event(eid.decode()), "source", "delivery_id")
        if source == f"schedule:{name}".encode():
            out.append(delivery_id.decode())
    return out


def test_several_schedulers_fire_each_tick_once_and_a_restart_fires_nothing_again(
    redis_server, redis_client: redis.Redis
) -> None:
    settings = settings_with(redis_server.url, tick={"every": "10s", "message": "tick {{now}}"})
    workers = [Scheduler(redis_client, settings) for _ in range(3)]
    t0 = ts("2026-01-12T08:00:05+00:00")
    for w in workers:
        assert w.step(t0) == []  # first sight: nothing was missed
    fired = []
    for step in range(1, 7):  # up to 08:00:35
        for w in workers:  # every worker looks at the same moment (clock skew of a few ms)
            fired += [f for f in w.step(t0 + step * 5 + 0.01 * workers.index(w))]
    ids = events_of(redis_client, "tick")
    assert ids == [f"tick@2026-01-12T08:00:{s}Z" for s in ("10", "20", "30")]
    assert sum(not f.submitted.duplicate for f in fired) == 3
    assert redis_client.xlen(keys.INBOX) == 3  # each tick queued for delivery once
    # A restarted worker (a new scheduler, same Redis) does not fire a handled tick again.
    assert Scheduler(redis_client, settings).step(t0 + 34) == []
    # A worker that died after recording a tick but before noting it: the tick is recorded again,
    # deduplicated by its delivery id, and noted.
    fire(redis_client, settings, "tick", settings.schedules["tick"], tick_id("tick", t0 + 35))
    again = Scheduler(redis_client, settings).step(t0 + 36)
    assert len(again) == 1 and again[0].submitted.duplicate
    assert events_of(redis_client, "tick")[-1] == "tick@2026-01-12T08:00:40Z"
    assert len(events_of(redis_client, "tick")) == 4
    body = orjson.loads(redis_client.hget(keys.event(again[0].submitted.event_id), "body"))
    assert body["message"].startswith("tick 20")


def test_catch_up_after_everything_was_down(redis_server, redis_client: redis.Redis) -> None:
    settings = settings_with(
        redis_server.url,
        skipper={"every": "1h", "message": "s"},
        catcher={"every": "1h", "message": "c", "catch_up": "once"},
    )
    t0 = ts("2026-01-12T08:30:00+00:00")
    Scheduler(redis_client, settings).step(t0)
    Scheduler(redis_client, settings).step(t0 + 1800 + 1)  # 09:00 on time: both fire
    assert events_of(redis_client, "skipper") == ["skipper@2026-01-12T09:00:00Z"]
    # Down from 09:00:01 to 13:20: 10:00 … 13:00 were missed.
    Scheduler(redis_client, settings).step(ts("2026-01-12T13:20:00+00:00"))
    assert events_of(redis_client, "skipper") == ["skipper@2026-01-12T09:00:00Z"]
    assert events_of(redis_client, "catcher") == [
        "catcher@2026-01-12T09:00:00Z",
        "catcher@2026-01-12T13:00:00Z",
    ]
    rows = {r["name"]: r for r in describe(redis_client, settings, now=ts("2026-01-12T13:20:00+00:00"))}
    assert (
        rows["skipper"]["last_outcome"] == "skipped"
        and rows["skipper"]["last_tick"] == "2026-01-12T13:00:00Z"
    )
    assert rows["catcher"]["next"] == "2026-01-12T14:00:00Z" and rows["catcher"]["last_event_id"]
    # Back to normal: the next tick fires on time for both.
    Scheduler(redis_client, settings).step(ts("2026-01-12T14:00:01+00:00"))
    assert events_of(redis_client, "skipper")[-1] == "skipper@2026-01-12T14:00:00Z"
