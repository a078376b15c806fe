"""Parked events and `relay replay` / `relay try`, with real processes and a real Redis.

A transform that crashes parks its events (answered 202 received, then parked by the mapping
stage), under load as well; they are kept with the traceback, and once the transform is fixed
`relay replay` queues their actions, with the action ids they would have had the first time, and
the worker delivers them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from relay.protocol.actions import action_id
from relay.store import keys
from tests.conftest import GENERIC_TOKEN, Relay, dump, wait_until

CRASHING = """
def transform(event):
    return {"message": "ok " + str(1 // event.payload["zero"])}
"""
FIXED = """
def transform(event):
    return {"message": "fixed: run " + str(event.payload["run"])}
"""
RUNAWAY = """
import time

def transform(event):
    time.sleep(60)
"""
AUTH = {"Authorization": f"Bearer {GENERIC_TOKEN}", "Content-Type": "application/json"}


def make_relay(relay_factory: Any, **extra: Any) -> Relay:
    relay: Relay = relay_factory(
        mappings=[
            {
                "match": {"path": "generic"},
                "transform": {"module": "crashy.py"},
                "sessionKey": "hook:ci:{{run}}",
            },
            {"match": {"path": "slow"}, "transform": {"module": "runaway.py"}},
        ],
        sources={
            "generic": {"preset": "generic", "token": "env:GENERIC_WEBHOOK_TOKEN"},
            "slow": {"preset": "generic", "token": "env:GENERIC_WEBHOOK_TOKEN"},
        },
        transform_timeout_seconds=0.5,
        transform_max_threads=8,
        **extra,
    )
    (relay.tmp / "crashy.py").write_text(CRASHING)
    (relay.tmp / "runaway.py").write_text(RUNAWAY)
    return relay


def cli(relay: Relay, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args],
        env=relay.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=relay.tmp,
    )


def post(
    relay: Relay, run: int, path: str = "/hooks/generic", client: httpx.Client | None = None
) -> httpx.Response:
    headers = {**AUTH, "Idempotency-Key": f"run-{run}"}
    if client is None:
        return relay.post(path, dump({"run": run, "zero": 0}), headers)
    return client.post(
        f"{relay.url}{path}", content=dump({"run": run, "zero": 0}), headers=headers, timeout=10
    )


def event_hash(client: redis.Redis, event_id: str) -> dict[str, bytes]:
    return {k.decode(): v for k, v in client.hgetall(keys.event(event_id)).items()}


def test_crashing_transform_under_load_parks_everything_and_replay_delivers_it_all(
    relay_factory: Any, redis_client: redis.Redis
) -> None:
    relay = make_relay(relay_factory)
    relay.start_ingress()
    n = 300
    health: list[int] = []
    latencies: list[float] = []

    def poll_health() -> None:
        with httpx.Client(timeout=5) as client:
            for _ in range(40):
                started = time.monotonic()
                health.append(client.get(f"{relay.url}/healthz").status_code)
                latencies.append(time.monotonic() - started)
                time.sleep(0.02)

    with ThreadPoolExecutor(16) as pool, httpx.Client(limits=httpx.Limits(max_connections=16)) as client:
        watcher = pool.submit(poll_health)
        # A few runaway transforms too: each holds a thread for a minute; the ingress keeps answering.
        slow = [pool.submit(post, relay, 10_000 + i, "/hooks/slow", client) for i in range(4)]
        answers = list(pool.map(lambda i: post(relay, i, client=client), range(n)))
        watcher.result()
    assert all(a.status_code == 202 for a in answers), {a.status_code for a in answers}
    assert {s.result().status_code for s in slow} == {202}
    assert set(health) == {200}
    assert max(latencies) < 1.0, sorted(latencies)[-5:]
    # Mapped (by a router of this process: no worker runs yet), every one is parked.
    outcomes = [relay.outcome(a) for a in answers]
    assert all(o.get("parked") is True and o["actions"] == 0 for o in outcomes), outcomes[:3]
    assert all(relay.outcome(s.result()).get("parked") is True for s in slow)
    event_ids = [a.json()["eventId"] for a in answers]
    assert len(set(event_ids)) == n
    assert redis_client.zcard(keys.PARKED) == n + 4
    assert redis_client.xlen(keys.INBOX) == 0
    stored = event_hash(redis_client, event_ids[0])
    assert stored["state"] == b"parked"
    assert b"ZeroDivisionError" in stored["error"] and b"crashy.py" in stored["error"]
    slow_errors = {event_hash(redis_client, s.result().json()["eventId"])["error"] for s in slow}
    assert all(b"past its 0.5 s budget" in e for e in slow_errors)

    # Fix the transform, then replay the parked events of that source; the worker delivers them.
    (relay.tmp / "crashy.py").write_text(FIXED)
    stub = relay.start_stub()
    relay.start_worker()
    result = cli(relay, "replay", "--parked", "--source", "generic")
    assert result.returncode == 0, result.stderr
    assert f"{n} of {n} parked event(s) replayed" in result.stderr
    assert redis_client.zcard(keys.PARKED) == 4  # only the runaway source's events remain
    runs = wait_until(lambda: len(stub.runs()) >= n and stub.runs(), timeout=60)
    assert len(runs) == n
    assert sorted(r["body"]["message"] for r in runs) == sorted(f"fixed: run {i}" for i in range(n))
    assert {r["body"]["sessionKey"] for r in runs} == {f"hook:ci:{i}" for i in range(n)}
    expected_keys = {action_id("generic", f"run-{i}", 0) for i in range(n)}
    assert {r["key"] for r in runs} == expected_keys


def test_replay_one_event_keeps_action_ids_and_refuses_what_is_not_parked(
    relay_factory: Any, redis_client: redis.Redis
) -> None:
    relay = make_relay(relay_factory)
    relay.start_ingress()
    answer = post(relay, 7)
    event_id = answer.json()["eventId"]
    # Not mapped yet (no worker runs): there is nothing to replay, the mapping stage maps it.
    unmapped = cli(relay, "replay", event_id)
    assert unmapped.returncode == 1 and f"{event_id}  refused" in unmapped.stdout
    assert "state is 'received', not parked" in unmapped.stdout
    unchanged = event_hash(redis_client, event_id)
    assert unchanged["state"] == b"received" and "replays" not in unchanged
    assert relay.outcome(answer).get("parked") is True

    still_broken = cli(relay, "replay", event_id)
    assert still_broken.returncode == 1
    assert "ZeroDivisionError" in still_broken.stderr and f"{event_id}  parked" in still_broken.stdout
    assert event_hash(redis_client, event_id)["replays"] == b"1"
    assert redis_client.zscore(keys.PARKED, event_id) is not None

    (relay.tmp / "crashy.py").write_text(FIXED)
    fixed = cli(relay, "replay", event_id, "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout) == {"eventId": event_id, "state": "queued", "actions": 1, "detail": ""}
    stored = event_hash(redis_client, event_id)
    assert (
        stored["state"] == b"queued"
        and "error" not in stored
        and b"ZeroDivisionError" in stored["last_error"]
    )
    [action] = orjson.loads(stored["actions"])
    assert action["id"] == action_id("generic", "run-7", 0)
    assert action["body"] == {"message": "fixed: run 7", "sessionKey": "hook:ci:7", "wakeMode": "now"}
    assert redis_client.zscore(keys.PARKED, event_id) is None
    [(_, [(_, fields)])] = redis_client.xrange(keys.INBOX) and [(keys.INBOX, redis_client.xrange(keys.INBOX))]
    assert fields == {b"event": event_id.encode()}

    again = cli(relay, "replay", event_id)
    assert again.returncode == 1 and "not parked" in again.stdout
    assert redis_client.xlen(keys.INBOX) == 1
    forced = cli(relay, "replay", event_id, "--force")
    assert forced.returncode == 0 and redis_client.xlen(keys.INBOX) == 2
    assert orjson.loads(event_hash(redis_client, event_id)["actions"])[0]["id"] == action["id"]

    missing = cli(relay, "replay", "evt_nope")
    assert missing.returncode == 1 and "missing" in missing.stdout
    usage = cli(relay, "replay")
    assert usage.returncode == 2 and "give event ids or --parked" in usage.stderr


def test_relay_try_shows_actions_or_the_transform_traceback(relay_factory: Any, tmp_path: Path) -> None:
    relay = make_relay(relay_factory)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"run": 1, "zero": 0}))
    crashed = cli(relay, "try", "generic", str(good))
    assert crashed.returncode == 1
    assert (
        "Traceback" in crashed.stderr
        and "ZeroDivisionError" in crashed.stderr
        and "crashy.py" in crashed.stderr
    )

    (relay.tmp / "crashy.py").write_text(FIXED)
    ok = cli(relay, "try", "generic", str(good), "--header", "X-Run: 1")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("POST /hooks/agent\n")
    assert json.loads(ok.stdout.split("\n", 1)[1]) == {
        "message": "fixed: run 1",
        "sessionKey": "hook:ci:1",
        "wakeMode": "now",
    }

    missing = cli(relay, "try", "generic", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "nope.json" in missing.stderr and "No such file" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    broken = cli(relay, "try", "generic", str(bad))
    assert broken.returncode == 1 and "bad.json: body is not valid JSON" in broken.stderr
    header = cli(relay, "try", "generic", str(good), "--header", "no-colon")
    assert header.returncode == 2 and "'Name: value'" in header.stderr

    slow = cli(relay, "try", "slow", str(good))
    assert slow.returncode == 1 and "budget" in slow.stderr


def test_a_transform_that_cannot_be_imported_stops_serve_up_check_and_try_with_exit_2(
    relay_factory: Any,
) -> None:
    relay = make_relay(relay_factory)
    (relay.tmp / "runaway.py").write_text("def transform(event):\n    return (\n")
    commands = (
        ["serve", "--port", "1"],
        ["up", "--port", "1"],
        ["check"],
        ["try", "generic", str(relay.config_path)],
    )
    for command in commands:
        result = cli(relay, *command)
        assert result.returncode == 2, result.stderr
        assert (
            "mappings.1.transform: transform module 'runaway.py' cannot be imported: SyntaxError"
            in result.stderr
        )


def test_relay_check_offline_and_online(relay_factory: Any) -> None:
    relay = make_relay(relay_factory)
    offline = cli(relay, "check", "--offline")
    assert offline.returncode == 0 and "config ok: 3 source(s), 2 mapping(s)" in offline.stdout
    down = cli(relay, "check")  # the gateway stub is not running
    assert down.returncode == 3 and "redis ok" in down.stdout and "cannot reach the gateway" in down.stderr
    relay.start_stub()
    up = cli(relay, "check")
    assert up.returncode == 0, up.stderr
