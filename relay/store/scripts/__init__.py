"""The relay's Lua scripts: one file each in this folder, read once at import.

A script that calls a library's functions (`lanes.lua`: session lanes) gets the library's text
first. Each file's header says its KEYS and ARGV. Scripts build no key from a literal: the
prefixes they need come from relay.store.keys as arguments. The state names they write or compare
are literals, which tests/store/test_states.py checks against relay.store.states.
"""

from __future__ import annotations

from importlib.resources import files

LIBRARIES = ("lanes", "pause", "circuit", "attempt")


def source(name: str, *libraries: str) -> str:
    """The text of script `name`, after the libraries it calls."""
    return "".join(_read(part) for part in (*libraries, name))


def _read(name: str) -> str:
    return files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


RECORD_MANY = source("record_many", "lanes")  # relay.store.events
RECEIVE_MANY = source("receive_many")
MAP_COMMIT = source("map_commit", "lanes")  # relay.worker.mapper
MAPPER_LEASE = source("mapper_lease")
MAPPER_RELEASE = source("mapper_release")
LANE_TURN = source("lane_turn", "lanes")  # relay.store.lanes
LANE_HAND_OFF = source("lane_hand_off", "lanes")
LANE_FORGET_IF_EMPTY = source("lane_forget_if_empty")
PAUSE_HOLD = source("pause_hold", "pause")  # relay.store.pause
CIRCUIT_WAIT = source("circuit_wait", "circuit")  # relay.delivery.circuit
ATTEMPT_BEGIN = source("attempt_begin", "lanes", "pause", "circuit", "attempt")  # relay.delivery.gate
ATTEMPT_START = source("attempt_start", "attempt")
REPLAY_COMMIT = source("replay_commit", "lanes")  # relay.store.replay
REPLAY_FAILED = source("replay_failed")
REPLAY_LOG = source("replay_log")  # relay.store.selection
SEARCH_GREP = source("search_grep")  # relay.store.search
RATE_TAKE_TOKEN = source("rate_take_token")  # relay.delivery.circuit
SCHEDULE_ADVANCE = source("schedule_advance")  # relay.worker.ticker

# Every script, for the tests that load and check them all.
ALL: dict[str, str] = {
    "record_many": RECORD_MANY,
    "receive_many": RECEIVE_MANY,
    "map_commit": MAP_COMMIT,
    "mapper_lease": MAPPER_LEASE,
    "mapper_release": MAPPER_RELEASE,
    "lane_turn": LANE_TURN,
    "lane_hand_off": LANE_HAND_OFF,
    "lane_forget_if_empty": LANE_FORGET_IF_EMPTY,
    "pause_hold": PAUSE_HOLD,
    "circuit_wait": CIRCUIT_WAIT,
    "attempt_begin": ATTEMPT_BEGIN,
    "attempt_start": ATTEMPT_START,
    "replay_commit": REPLAY_COMMIT,
    "replay_failed": REPLAY_FAILED,
    "replay_log": REPLAY_LOG,
    "search_grep": SEARCH_GREP,
    "rate_take_token": RATE_TAKE_TOKEN,
    "schedule_advance": SCHEDULE_ADVANCE,
}
