"""relay.store.keys: the key names are stored data, so they must stay byte for byte what earlier
versions wrote; and no module but keys.py builds a key from the prefix."""

from __future__ import annotations

import re

from relay.store import keys, pause, scripts
from tests.paths import ROOT

# Every name as the previous version spelled it.
KNOWN = [
    (keys.INBOX, b"relay:inbox"),
    (keys.EVENTS, b"relay:events"),
    (keys.DEAD, b"relay:dead"),
    (keys.PARKED, b"relay:parked"),
    (keys.STATS, b"relay:stats"),
    (keys.RATE, b"relay:rate"),
    (keys.PENDING, b"relay:pending"),
    (keys.LANES, b"relay:lanes"),
    (keys.PAUSED, b"relay:paused"),
    (keys.PAUSED_HELD, b"relay:paused-sets"),
    (keys.SWEEPER, b"relay:sweeper"),
    (keys.SCHEDULER, b"relay:scheduler"),
    (keys.RELOAD_GENERATION, b"relay:reload:generation"),
    (keys.RELOAD_STATUS, b"relay:reload:status"),
    (keys.dedupe("github", "d-1"), b"relay:dedupe:github:d-1"),
    (keys.event("evt_1"), b"relay:event:evt_1"),
    (keys.action("act_1"), b"relay:action:act_1"),
    (keys.lane("hook:github:1"), b"relay:lane:hook:github:1"),
    (keys.sending("act_1"), b"relay:sending:act_1"),
    (keys.auth_failures("addr", "10.0.0.1"), b"relay:authfail:addr:10.0.0.1"),
    (keys.schedule("nightly"), b"relay:schedule:nightly"),
    (keys.events_by_source("github"), b"relay:events:source:github"),
    (keys.minute(29_000_000), b"relay:minute:29000000"),
    (keys.paused_held("source:github"), b"relay:paused:held:source:github"),
    (keys.maintenance("relay"), b"relay:maintenance:relay"),
    (pause.held_key("gateway", "default"), b"relay:paused:held:gateway:default"),
]


def test_key_names_are_unchanged() -> None:
    assert [name.encode() for name, _ in KNOWN] == [old for _, old in KNOWN]
    assert keys.circuit() == ("relay:circuit", "relay:circuit:level", "relay:circuit:probe")
    assert keys.circuit("ops") == ("relay:circuit:ops", "relay:circuit:level:ops", "relay:circuit:probe:ops")
    assert keys.ROUTERS == "routers"
    assert keys.MINUTE_TTL == 7200


def test_prefixes_build_the_same_keys() -> None:
    """The prefixes the Lua scripts get are those of the Python helpers."""
    assert keys.EVENT_PREFIX + "e" == keys.event("e")
    assert keys.ACTION_PREFIX + "a" == keys.action("a")
    assert keys.LANE_PREFIX + "s" == keys.lane("s")
    assert keys.EVENTS_BY_SOURCE_PREFIX + "github" == keys.events_by_source("github")
    assert keys.MINUTE_PREFIX + "7" == keys.minute(7)
    assert keys.PAUSED_HELD_PREFIX + "source:x" == keys.paused_held("source:x")


def test_no_module_builds_keys_from_the_prefix() -> None:
    offenders = []
    for path in sorted((ROOT / "relay").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "relay/store/keys.py":
            continue
        text = path.read_text()
        if "keys.PREFIX" in text or re.search(r"""["']relay:[a-z]""", text):
            offenders.append(rel)
    assert offenders == []


def test_scripts_hold_no_key_literal() -> None:
    for name, text in scripts.ALL.items():
        assert "relay:" not in text, name
