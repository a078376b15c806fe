"""Search (relay.store.search): `relay events --source --state --since --until --grep`, bounded."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from relay.store import keys
from relay.store.search import Query, parse_time, search
from tests.cli.test_operations import relay_cli
from tests.conftest import Relay

# Events evt_s000000.. with a ~450-byte payload each, one second apart, every 10th from github; one
# has a rare word in its payload and one in a header.
_BULK = """
local first, last, base, filler = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
for i = first, last do
  local eid = string.format('evt_s%06d', i)
  local source = 'generic'
  if i % 10 == 0 then source = 'github' end
  local at = string.format('%.6f', base + i)
  local word = 'build'
  if i == 12340 then word = 'Zanzibar-42' end
  local headers = '{"content-type": "application/json"}'
  if i == 54320 then headers = '{"x-request-id": "Quokka-7"}' end
  redis.call('HSET', 'relay:event:' .. eid, 'source', source, 'delivery_id', 'd' .. i, 'received_at', at,
             'state', 'skipped', 'action_count', 0, 'headers', headers,
             'body', '{"i": ' .. i .. ', "status": "' .. word .. '", "log": "' .. filler .. '"}',
             'actions', '[]')
  redis.call('ZADD', KEYS[1], at, eid)
  redis.call('ZADD', KEYS[2] .. source, at, eid)
end
"""
COUNT = 100_000


def bulk(r: redis.Redis, count: int = COUNT) -> float:
    patient = redis.Redis(port=r.connection_pool.connection_kwargs["port"], socket_timeout=120)
    script = patient.register_script(_BULK)
    base = float(int(time.time()) - count - 10)
    with patient.pipeline(transaction=False) as pipe:
        for first in range(0, count, 10_000):
            script(
                keys=[keys.EVENTS, keys.events_by_source("")],
                args=[first, min(count, first + 10_000) - 1, base, "x" * 400],
                client=pipe,
            )
        pipe.execute()
    patient.close()
    return base


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def test_parse_time_reads_iso_8601_and_relative_times() -> None:
    now = 1_800_000_000.0
    assert parse_time("15m", now) == now - 900
    assert parse_time("2h", now) == now - 7200
    assert parse_time("1.5d", now) == now - 1.5 * 86400
    assert parse_time("2027-01-15T08:00:00Z") == datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()
    assert parse_time("2027-01-15T10:00+02:00") == datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp()
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")


@pytest.fixture(scope="module")
def filled(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """100,000 events, written once for this module (the CLI runs against their Redis)."""
    r = redis.Redis.from_url(redis_server.url, socket_timeout=300)
    r.flushall()
    base = bulk(r)
    yield r, base, Relay(tmp_path_factory.mktemp("search"), redis_server.url)
    r.flushall()


@pytest.fixture
def relay(filled: Any) -> Relay:
    return filled[2]


def test_grep_finds_one_event_among_100k_by_a_word_in_its_payload(filled: Any, relay: Relay) -> None:
    r, _base, _ = filled
    started = time.perf_counter()
    done = relay_cli(relay, "events", "--grep", "Zanzibar-42", "--json")
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and '"id":"evt_s012340"' in lines[0]
    assert "stopped early" not in done.stderr  # the whole log is within the default bound
    assert elapsed < 30, elapsed  # measured ~2 s on a shared 2-core machine (docs/operations.md)
    # Case-insensitive, and in a header.
    found = search(r, Query(grep="quokka-7", ignore_case=True), limit=5)
    assert [row.id for row in found.rows] == ["evt_s054320"] and found.examined == COUNT
    assert search(r, Query(grep="quokka-7"), limit=5).rows == []  # case-sensitive by default


def test_a_search_stops_at_its_bound_and_says_so(filled: Any, relay: Relay) -> None:
    done = relay_cli(relay, "events", "--grep", "Zanzibar-42", "--max-examined", "5000")
    assert done.returncode == 0 and "evt_s012340" not in done.stdout
    assert "stopped early: examined 5000 events (--max-examined 5000)" in done.stderr
    until = done.stderr.split("Continue with --until ")[1].split(",")[0]
    # Continuing from where it stopped walks on into older events.
    cont = relay_cli(relay, "events", "--grep", "Zanzibar-42", "--until", until, "--max-examined", "100000")
    assert "evt_s012340" in cont.stdout


def test_the_time_window_bounds_what_is_examined(filled: Any, relay: Relay) -> None:
    r, base, _ = filled
    found = search(r, Query(since=base + 12_000, until=base + 12_499, grep="Zanzibar"), limit=10)
    assert [row.id for row in found.rows] == ["evt_s012340"]
    assert found.examined == 500 and not found.stopped_early and found.next_cursor is None
    done = relay_cli(
        relay,
        "events",
        "--source",
        "github",
        "--since",
        iso(base + 12_000),
        "--until",
        iso(base + 12_100),
        "--limit",
        "100",
    )
    ids = [line.split()[2] for line in done.stdout.splitlines()]
    assert ids == [f"evt_s{i:06d}" for i in range(12_100, 11_999, -10)]
    assert relay_cli(relay, "events", "--since", "soon").returncode == 2


def test_state_and_limit_filter_the_newest_first(filled: Any) -> None:
    r, _, _ = filled
    found = search(r, Query(state="skipped"), limit=3)
    assert [row.id for row in found.rows] == ["evt_s099999", "evt_s099998", "evt_s099997"]
    assert found.next_cursor is not None and not found.stopped_early  # the limit, not the bound
    assert search(r, Query(state="delivered"), limit=3, max_examined=2000).stopped_early


def test_the_console_search_box_finds_the_event_and_pages_with_the_same_bound(
    filled: Any, redis_server: Any
) -> None:
    from tests.console.test_console import Client, settings

    r, base, _ = filled
    console = Client(settings(redis_server.url))
    try:
        console.login()
        page = console.get("/console", params={"q": "zanzibar-42"}).text
        assert "evt_s012340" in page and "evt_s012341" not in page
        assert "Searched 100000 events" in page and 'value="zanzibar-42"' in page
        window = console.get("/console", params={"source": "github", "since": iso(base + 90_000)}).text
        assert "evt_s099990" in window and "evt_s099999" not in window  # github only, newest first
        older = re.search(r'href="(/console\?[^"]*cursor=[^"]+)">older', window)
        assert older and "since=" in older.group(1)  # the next page keeps the search
        second = console.get(older.group(1).replace("&amp;", "&")).text
        assert "evt_s099490" in second and "evt_s099990" not in second
        assert "not a time" in console.get("/console", params={"since": "tuesday"}).text
    finally:
        console.close()
