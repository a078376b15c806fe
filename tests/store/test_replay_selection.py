"""Replay by selection (relay.store.selection):
`relay replay --since --until --state [--dry-run] [--new-key]`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import redis

from relay.store import keys
from relay.store.selection import replay_log
from tests.cli.test_operations import relay_cli
from tests.conftest import HOOKS_TOKEN, Relay, wait_until


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def post(relay: Relay, message: str) -> str:
    answer = relay.post(
        "/hooks/agent",
        json.dumps({"message": message}).encode(),
        {"Authorization": f"Bearer {HOOKS_TOKEN}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["eventId"])


def messages(relay: Relay) -> list[str]:
    return [run["body"]["message"] for run in relay.stub.runs()]


def test_a_time_range_replay_of_dead_letters_delivers_exactly_those(
    relay_factory, redis_client: redis.Redis
) -> None:
    relay = relay_factory(delivery={"in_flight": 1})
    relay.start_stub()
    relay.start_ingress()
    relay.start_worker()
    post(relay, "A1")
    wait_until(lambda: messages(relay) == ["A1"])
    start = time.time()
    relay.stub.control(fail=[400, 400, 400])  # 400: the gateway refuses them for good -> dead letters
    dead = [post(relay, f"D{i}") for i in (1, 2, 3)]
    wait_until(lambda: redis_client.zcard(keys.DEAD) == 3, timeout=20)
    end = time.time()
    relay.stub.control(fail=[400])
    later = post(relay, "D4")  # dead too, but after the window
    wait_until(lambda: redis_client.zcard(keys.DEAD) == 4, timeout=20)

    window = ["--since", iso(start), "--until", iso(end)]
    preview = relay_cli(relay, "replay", *window, "--state", "dead", "--dry-run")
    assert preview.returncode == 0, preview.stderr
    assert "would replay 3 dead and 0 parked event(s)" in preview.stdout
    assert all(eid in preview.stdout for eid in dead) and later not in preview.stdout
    assert redis_client.zcard(keys.DEAD) == 4  # a dry run changes nothing

    done = relay_cli(relay, "replay", *window, "--state", "dead")
    assert done.returncode == 0 and "replayed 3 dead, 0 parked and 0 delivered event(s)" in done.stdout
    wait_until(lambda: sorted(messages(relay)) == ["A1", "D1", "D2", "D3"], timeout=20)
    assert redis_client.zcard(keys.DEAD) == 1  # D4, outside the window, stays dead
    for eid in dead:
        (entry,) = replay_log(redis_client, eid)
        assert entry["by"].startswith("cli:") and entry["what"] == "1 dead action(s) queued again"
        assert abs(entry["at"] - time.time()) < 60 and entry["new_key"] is False
    assert replay_log(redis_client, later) == []


def test_delivered_events_are_replayed_only_with_a_new_key(relay: Relay, redis_client: redis.Redis) -> None:
    start = time.time()
    event_id = post(relay, "once")
    wait_until(lambda: messages(relay) == ["once"])
    window = ["--since", iso(start - 1), "--state", "delivered"]

    refused = relay_cli(relay, "replay", *window)
    assert refused.returncode == 0 and "1 delivered event(s) not sent (delivered already" in refused.stdout
    assert replay_log(redis_client, event_id) == []

    done = relay_cli(relay, "replay", *window, "--new-key", "--json")
    assert json.loads(done.stdout)["replayed"] == {"dead": 0, "parked": 0, "delivered": 1}
    wait_until(lambda: messages(relay) == ["once", "once"])  # a new run: the gateway saw a new key
    first, second = (run["key"] for run in relay.stub.runs())
    assert second == f"{first}-r1"
    (entry,) = replay_log(redis_client, event_id)
    assert entry["new_key"] is True and entry["by"].startswith("cli:")


def test_a_selection_needs_a_start(relay: Relay) -> None:
    done = relay_cli(relay, "replay", "--state", "dead")
    assert done.returncode == 2 and "needs --since" in done.stderr


def test_the_console_form_previews_the_count_and_replays_on_confirmation(
    redis_server, redis_client: redis.Redis
) -> None:
    from relay.protocol.actions import action_id
    from tests.console.test_console import Client, record, settings

    start = time.time()
    events = [record(redis_client, f"c-{i}", {"x": i}) for i in range(3)]
    for i in (0, 1):  # two dead letters; the third event's action is still queued
        aid = action_id("generic", f"c-{i}", 0)
        redis_client.hset(
            keys.action(aid),
            mapping={
                "state": "dead",
                "event_id": events[i],
                "kind": "agent",
                "body": b'{"message": "m"}',
                "source": "generic",
            },
        )
        redis_client.zadd(keys.DEAD, {aid: time.time()})
    console = Client(settings(redis_server.url))
    try:
        console.login()
        page = console.get("/console/replay", params={"since": iso(start - 1), "state": "dead"}).text
        assert "<strong>2</strong> dead" in page and "Replay 2 event(s)" in page
        assert 'data-confirm="Replay 2 event(s)?"' in page
        assert redis_client.zcard(keys.DEAD) == 2  # the preview changes nothing
        answer = console.post(
            "/console/replay",
            data={
                "csrf": console.csrf("/console/replay"),
                "since": iso(start - 1),
                "state": "dead",
                "confirm": "2",
            },
        )
        assert answer.status_code == 303
        assert "Replayed+2+dead" in answer.headers["location"]
        assert redis_client.zcard(keys.DEAD) == 0
        for eid in events[:2]:
            (entry,) = replay_log(redis_client, eid)
            assert entry["by"] == "console"
        detail = console.get(f"/console/events/{events[0]}").text
        assert "by console: 1 dead action(s) queued again" in detail
        forged = console.post("/console/replay", data={"since": "1h", "csrf": "forged"})
        assert forged.status_code in (400, 403)
    finally:
        console.close()
