"""Replay by selection: every dead, parked or delivered event of a time window (and source).

`relay replay --since T [--until T] [--source S] [--state dead|parked|delivered] [--dry-run]
[--new-key]` and the console's replay form. The events are found like a search (relay.store.search:
the event index inside the window, bounded), then each is classified by what a replay means:

- dead: its dead-lettered actions are queued again (relay.store.deadletters.replay), same
  Idempotency-Key unless --new-key;
- parked: the event is mapped again with the current transforms (relay.store.replay.Replayer);
- delivered: only with --new-key, each delivered action is sent again under a new key (the
  gateway would otherwise answer with the run it already started); without it the answer is that
  it was delivered already;
- anything still in flight (queued, retrying, held) is left alone.

Every replay is recorded on its event (`replay_log`: who, when, what), whoever started it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis import Redis
from rq import Queue

from relay.config import Settings
from relay.store import keys, scripts, states
from relay.store.events import load_event
from relay.store.jobs import enqueue_delivery
from relay.store.search import MAX_EXAMINED, Query, search

STATES = (states.DEAD, states.PARKED, states.DELIVERED)
LOG_KEEP = 20  # replay records kept per event


def record_replay(redis: Redis, event_id: str, *, by: str, what: str, new_key: bool = False) -> None:
    """Note on the event that it was replayed: by whom (`cli:user@host`, `console`), when, what."""
    entry = {"by": by, "at": time.time(), "what": what, "new_key": new_key}
    redis.eval(scripts.REPLAY_LOG, 1, keys.event(event_id), orjson.dumps(entry), LOG_KEEP)


def replay_log(redis: Redis, event_id: str) -> list[dict[str, Any]]:
    raw = redis.hget(keys.event(event_id), "replay_log")
    return list(orjson.loads(raw)) if raw else []


@dataclass(slots=True)
class Plan:
    """What a selection holds, by what its replay would do."""

    dead: dict[str, list[str]] = field(default_factory=dict)  # event id -> its dead action ids
    parked: list[str] = field(default_factory=list)
    delivered: dict[str, list[str]] = field(default_factory=dict)  # event id -> delivered action ids
    other: Counter[str] = field(default_factory=Counter)  # in flight or skipped: left alone
    examined: int = 0
    stopped_early: bool = False

    def counts(self) -> dict[str, int]:
        return {
            states.DEAD: len(self.dead),
            states.PARKED: len(self.parked),
            states.DELIVERED: len(self.delivered),
            "other": sum(self.other.values()),
        }


def plan(
    redis: Redis,
    *,
    since: float,
    until: float | None,
    source: str = "",
    state: str = "",
    max_events: int = MAX_EXAMINED,
) -> Plan:
    """The events received in [since, until] (of `source`), classified; at most `max_events`."""
    found = search(
        redis, Query(source=source, since=since, until=until), limit=max_events, max_examined=max_events
    )
    out = Plan(examined=found.examined, stopped_early=found.next_cursor is not None)
    for row in reversed(found.rows):  # oldest first: replayed in the order they came in
        event = load_event(redis, row.id)
        if event is None:
            continue
        if event.get("state") == states.PARKED:
            if state in ("", states.PARKED):
                out.parked.append(row.id)
            continue
        with redis.pipeline(transaction=False) as pipe:
            for action in event["actions"]:
                pipe.hget(keys.action(action["id"]), "state")
            action_states = (
                [(s or b"").decode() or states.QUEUED for s in pipe.execute()] if event["actions"] else []
            )
        ids = [a["id"] for a in event["actions"]]
        dead = [aid for aid, s in zip(ids, action_states, strict=True) if s == states.DEAD]
        if dead and state in ("", states.DEAD):
            out.dead[row.id] = dead
        elif (
            action_states
            and all(s == states.DELIVERED for s in action_states)
            and state in ("", states.DELIVERED)
        ):
            out.delivered[row.id] = ids
        elif not state:
            out.other[row.state] += 1
    return out


@dataclass(slots=True)
class Done:
    replayed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    refused: list[str] = field(default_factory=list)  # event ids whose replay did not go (state changed)
    parked_again: list[str] = field(default_factory=list)


def execute(redis: Redis, settings: Settings, selected: Plan, *, by: str, new_key: bool = False) -> Done:
    """Replay what `plan` selected. Delivered events are replayed only with `new_key`."""
    from relay.store.deadletters import replay as replay_dead
    from relay.store.replay import Replayer

    done = Done()
    for event_id, action_ids in selected.dead.items():
        went = [aid for aid in action_ids if replay_dead(redis, settings, aid, new_key=new_key)]
        if went:
            done.replayed[states.DEAD] += 1
            record_replay(
                redis, event_id, by=by, what=f"{len(went)} dead action(s) queued again", new_key=new_key
            )
        else:
            done.refused.append(event_id)
    if selected.parked:
        replayer = Replayer(redis, settings)
        for event_id in selected.parked:
            outcome = replayer.replay(event_id)
            record_replay(redis, event_id, by=by, what=f"mapped again: {outcome.state}")
            if outcome.ok:
                done.replayed[states.PARKED] += 1
            elif outcome.state == states.PARKED:
                done.parked_again.append(event_id)
            else:
                done.refused.append(event_id)
    if new_key:
        for event_id, action_ids in selected.delivered.items():
            went = [aid for aid in action_ids if replay_delivered(redis, settings, aid)]
            if went:
                done.replayed[states.DELIVERED] += 1
                record_replay(
                    redis, event_id, by=by, what=f"{len(went)} delivered action(s) sent again", new_key=True
                )
            else:
                done.refused.append(event_id)
    return done


def replay_delivered(redis: Redis, settings: Settings, action_id: str) -> bool:
    """Send a delivered action again under a new Idempotency-Key (the gateway starts a new run)."""
    key = keys.action(action_id)
    if redis.hget(key, "state") != states.DELIVERED.encode():
        return False
    replays = int(redis.hincrby(key, "replays", 1))
    session = redis.hget(key, "session_key")
    with redis.pipeline(transaction=True) as pipe:
        pipe.multi()
        pipe.hset(
            key,
            mapping={
                "state": states.QUEUED,
                "attempts": 0,
                "queued_at": repr(time.time()),
                "idempotency_key": f"{action_id}-r{replays}",
            },
        )
        pipe.hdel(key, "delivered_at", "next_attempt_at")
        pipe.expire(key, settings.event_ttl_seconds)
        pipe.zadd(keys.PENDING, {action_id: time.time() + 60})
        if session:
            pipe.rpush(keys.lane(session.decode()), action_id)
            pipe.sadd(keys.LANES, keys.lane(session.decode()))
        enqueue_delivery(
            Queue(settings.queue, connection=redis),
            pipe,
            settings,
            action_id,
            f"{action_id}-replay{replays}",
            f"replay {action_id} (new key)",
        )
        pipe.execute()
    return True


def record_action_replay(redis: Redis, action_id: str, *, by: str, new_key: bool = False) -> None:
    """`record_replay` for one dead letter replayed by id (its event is looked up)."""
    event_id = redis.hget(keys.action(action_id), "event_id")
    if event_id:
        record_replay(
            redis, event_id.decode(), by=by, what=f"dead action {action_id} queued again", new_key=new_key
        )
