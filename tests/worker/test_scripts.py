"""`relay agent` / `relay wake`, `relay.client` and `schedules:` with real processes.

No ingress runs in these tests: the CLI and the client record straight into Redis, and the
workers deliver (and fire the schedules).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime

import orjson
import pytest
import redis

from relay.client import AsyncRelayClient, DeliveryFailed, RelayClient, WaitTimeout
from relay.config import load_settings
from relay.store import keys
from tests.conftest import Relay, free_port, wait_until


def relay_cli(
    relay: Relay, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args],
        env=env or relay.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_agent_wait_rides_out_a_gateway_that_is_down_then_up(
    relay_factory, redis_client: redis.Redis
) -> None:
    relay = relay_factory()
    relay.start_worker()
    cmd = [
        sys.executable,
        "-m",
        "relay.cli",
        "agent",
        "--message",
        "hi",
        "--name",
        "Script",
        "--wait",
        "--wait-timeout",
        "60",
        "--json",
    ]
    waiting = subprocess.Popen(cmd, env=relay.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: redis_client.exists(keys.CIRCUIT), timeout=30)  # a send found the gateway down
        assert waiting.poll() is None  # still waiting: the gateway is down
        stub = relay.start_stub()
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, err
    result = orjson.loads(out)
    assert result["ok"] and result["state"] == "delivered" and result["runId"]
    sent = [r for r in stub.requests() if r["path"] == "agent" and r["status"] == 200]
    assert [(r["body"], r["key"]) for r in sent] == [
        ({"message": "hi", "name": "Script"}, result["actionId"])
    ]


def test_agent_wait_fails_with_the_gateways_error(relay_factory) -> None:
    relay = relay_factory()
    stub = relay.start_stub()
    stub.control(fail=[400])
    relay.start_worker()
    done = relay_cli(relay, "agent", "-m", "refused", "--wait", "--wait-timeout", "30")
    assert done.returncode == 1
    assert "dead-lettered" in done.stderr and "injected failure 400" in done.stderr
    assert done.stdout.strip().startswith("act_")


def test_agent_and_wake_record_durably_with_openclaw_flags_and_exit_codes(
    relay_factory, redis_client
) -> None:
    relay = relay_factory()
    first = relay_cli(
        relay,
        "agent",
        "-m",
        "Summarise",
        "--agent",
        "ops",
        "--session-key",
        "hook:cli:1",
        "--thinking",
        "low",
        "--no-deliver",
        "--channel",
        "slack",
        "--reply-to",
        "#ops",
        "--model",
        "m1",
        "--timeout",
        "90",
        "--name",
        "CLI",
        "--wake-mode",
        "next-heartbeat",
        "--idempotency-key",
        "job-42",
        "--json",
    )
    assert first.returncode == 0, first.stderr
    out = orjson.loads(first.stdout)
    assert out["state"] == "queued" and not out["duplicate"]
    event = redis_client.hgetall(keys.event(out["eventId"]))
    assert event[b"source"] == b"cli" and event[b"delivery_id"] == b"job-42"
    [action] = orjson.loads(event[b"actions"])
    assert action["id"] == out["actionId"] and action["body"] == {
        "message": "Summarise",
        "agentId": "ops",
        "sessionKey": "hook:cli:1",
        "thinking": "low",
        "deliver": False,
        "channel": "slack",
        "to": "#ops",
        "model": "m1",
        "timeoutSeconds": 90,
        "name": "CLI",
        "wakeMode": "next-heartbeat",
    }
    assert redis_client.xlen(keys.INBOX) == 1
    again = relay_cli(relay, "agent", "-m", "Summarise", "--idempotency-key", "job-42")
    assert (
        again.returncode == 0 and again.stdout.strip() == out["actionId"] and "already used" in again.stderr
    )
    assert redis_client.xlen(keys.INBOX) == 1  # nothing new

    wake = relay_cli(relay, "wake", "--text", "New email", "--mode", "next-heartbeat")
    assert wake.returncode == 0 and wake.stdout.strip().startswith("act_")
    assert relay_cli(relay, "agent").returncode == 2  # no message
    assert relay_cli(relay, "agent", "-m", "x", "--thinking", "huge").returncode == 2
    unreachable = relay_cli(
        relay, "agent", "-m", "x", env={**relay.env, "RELAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    )
    assert unreachable.returncode == 3 and "cannot reach Redis" in unreachable.stderr
    listing = relay_cli(relay, "events")
    assert listing.stdout.count(" cli ") == 2


def test_python_client_sync_and_async(relay_factory, redis_server, monkeypatch) -> None:
    relay = relay_factory()
    for name in ("OPENCLAW_HOOKS_TOKEN", "GITHUB_WEBHOOK_SECRET", "GENERIC_WEBHOOK_TOKEN"):
        monkeypatch.setenv(name, relay.env[name])
    stub = relay.start_stub()
    relay.start_worker()
    with RelayClient(redis_server.url) as client:
        aid = client.agent(message="from code", session_key="hook:code:1", idempotency_key="code-1")
        assert client.agent(message="from code", idempotency_key="code-1") == aid
        status = client.wait(aid, timeout=30)
        assert status.state == "delivered" and status.run_id
        stub.control(fail=[422])
        with pytest.raises(DeliveryFailed, match="injected failure 422"):
            client.wait(client.wake(text="refused"), timeout=30)

    async def from_async() -> tuple[str, str]:
        async with AsyncRelayClient(load_settings(relay.config_path)) as client:
            ids = await asyncio.gather(*(client.agent(f"async {i}", agent_id="ops") for i in range(3)))
            wake = await client.wake("async wake", mode="next-heartbeat")
            await asyncio.gather(*(client.wait(a, timeout=30) for a in [*ids, wake]))
            return ids[0], (await client.status(wake)).state

    first, wake_state = asyncio.run(from_async())
    assert wake_state == "delivered"
    assert sorted(r["body"]["message"] for r in stub.runs() if r["body"]["message"].startswith("async")) == [
        "async 0",
        "async 1",
        "async 2",
    ]
    assert any(r["key"] == first for r in stub.runs())


def test_client_wait_times_out_while_no_worker_runs(redis_server, redis_client) -> None:
    client = RelayClient(redis_server.url)
    aid = client.agent(message="nobody delivers this")
    with pytest.raises(WaitTimeout) as info:
        client.wait(aid, timeout=0.3)
    assert info.value.status.state == "queued"


def tick_events(client: redis.Redis, name: str) -> list[tuple[str, str]]:
    """(delivery id, action id) of every event schedule `name` recorded."""
    out = []
    for eid in client.zrange(keys.EVENTS, 0, -1):
        source, delivery_id, actions = client.hmget(
            keys.event(eid.decode()), "source", "delivery_id", "actions"
        )
        if source == f"schedule:{name}".encode():
            out.append((delivery_id.decode(), orjson.loads(actions)[0]["id"]))
    return sorted(out)


def tick_time(delivery_id: str) -> float:
    return datetime.fromisoformat(delivery_id.split("@", 1)[1]).timestamp()


def test_schedule_fires_each_tick_exactly_once_across_workers_and_restarts(
    relay_factory, redis_client
) -> None:
    relay = relay_factory(schedules={"tick": {"every": "2s", "message": "tick at {{now}}", "name": "Tick"}})
    stub = relay.start_stub()

    def ticks_after(count: int) -> None:
        wait_until(lambda: len(tick_events(redis_client, "tick")) >= count, timeout=30, interval=0.2)

    workers = [relay.start_worker(), relay.start_worker()]
    ticks_after(2)
    workers[0].stop()  # a rolling restart: one worker at a time
    workers[0] = relay.start_worker()
    ticks_after(len(tick_events(redis_client, "tick")) + 2)
    for proc in workers:  # then everything at once
        proc.stop()
    before = tick_events(redis_client, "tick")
    workers = [relay.start_worker(), relay.start_worker()]
    ticks_after(len(before) + 2)
    ticks = tick_events(redis_client, "tick")

    def states() -> list[bytes | None]:
        return [redis_client.hget(keys.action(a), "state") for _, a in ticks]

    # A warm shutdown hands everything back (tests/worker/test_worker_shutdown.py): no tick waits for the
    # 30 s claim of an abandoned inbox entry or RQ's one-minute intermediate-queue cleanup.
    try:
        wait_until(lambda: set(states()) == {b"delivered"}, timeout=20, interval=0.2)
    except AssertionError:
        pytest.fail(f"ticks not delivered: {list(zip(ticks, states(), strict=True))}")

    times = [tick_time(d) for d, _ in ticks]
    assert len(times) == len(set(times)) and len(times) >= 5
    earlier = [tick_time(d) for d, _ in before]
    assert [b - a for a, b in zip(earlier, earlier[1:], strict=False)] == [2.0] * (len(earlier) - 1)
    assert min(t for t in times if t not in earlier) > max(earlier)  # nothing fired again after the restart
    sent = [r for r in stub.requests() if r["path"] == "agent" and r["status"] == 200]
    assert sorted(r["key"] for r in sent) == sorted(a for _, a in ticks)  # each tick delivered exactly once
    assert all(r["body"]["name"] == "Tick" and r["body"]["message"].startswith("tick at ") for r in sent)

    listing = relay_cli(relay, "schedules", "list")
    assert listing.returncode == 0 and "every 2s" in listing.stdout and "last 20" in listing.stdout
    run = relay_cli(relay, "schedules", "run", "tick", "--wait", "--wait-timeout", "20")
    assert run.returncode == 0, run.stderr
    assert relay_cli(relay, "schedules", "run", "nope").returncode == 2
