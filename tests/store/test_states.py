"""relay.store.states is the one list: the Lua scripts write and compare no other state name."""

from __future__ import annotations

import re

from relay.store import lanes, scripts, states

# `'state', 'held'` (HSET, HSETNX) and `state == 'dead'`, `'state') ~= 'waiting'` (comparisons).
WRITTEN = re.compile(r"'state',\s*'([a-z_]+)'")
COMPARED = re.compile(r"state'?\)?\s*[~=]=\s*'([a-z_]+)'")


def lua_states(text: str) -> set[str]:
    return set(WRITTEN.findall(text)) | set(COMPARED.findall(text))


def test_every_state_in_the_scripts_is_listed() -> None:
    used: dict[str, set[str]] = {name: lua_states(text) for name, text in scripts.ALL.items()}
    used["lanes.lua_append"] = lua_states(lanes.lua_append("n", "K[i]", "A[i]", "now", "ttl"))
    found = set().union(*used.values())
    assert {"queued", "waiting", "held", "delivered", "dead"} <= found  # the patterns do match
    # The ingress writes `received`; the mapping stage's commit maps only an event still `received`.
    assert "received" in used["receive_many"] and "received" in used["map_commit"]
    assert {name: s - states.ALL for name, s in used.items() if s - states.ALL} == {}


def test_the_patterns_catch_an_unlisted_state() -> None:
    assert lua_states("redis.call('HSET', k, 'state', 'lost')") == {"lost"}
    assert lua_states("if redis.call('HGET', k, 'state') ~= 'gone' then") == {"gone"}
    assert lua_states("if state == false or state == 'done' then") == {"done"}


def test_the_list() -> None:
    assert len(states.ALL) == 14
    assert states.RECEIVED in states.EVENT_STATES and states.RECEIVED not in states.ACTION_STATES
    assert states.EVENT_STATES | states.ACTION_STATES == states.ALL
    assert set(states.FINISHED) | set(states.WAITING_OUT) <= states.ACTION_STATES
    assert states.PENDING not in states.ALL  # a summary, never stored
