"""Pause and resume of sources and gateways at run time (relay.store.pause), on a running relay."""

from __future__ import annotations

from typing import Any

import httpx
import redis

from relay.store import keys, pause
from tests.cli.test_operations import relay_cli, scrape
from tests.conftest import HOOKS_TOKEN, Relay, github_fixture, wait_until

PUSH = github_fixture("push.default")


def held(relay: Relay, kind: str, name: str) -> float | None:
    return scrape(relay).get(("relay_held_actions", (("kind", kind), ("name", name))))


def waiting(redis_client: redis.Redis, source: str) -> int:
    """Actions of `source` not sent: held by the pause (a session's first) or behind it in its lane."""
    states = [
        redis_client.hmget(k, "source", "state") for k in redis_client.scan_iter(f"{keys.PREFIX}action:*")
    ]
    return sum(1 for s, state in states if s == source.encode() and state in (b"held", b"waiting"))


def delivered_ids(relay: Relay, redis_client: redis.Redis) -> list[str]:
    """The delivery ids of the agent runs the gateway started, in the order it received them."""
    return [redis_client.hget(keys.action(run["key"]), "delivery_id").decode() for run in relay.stub.runs()]


def post_agent(relay: Relay, message: str) -> httpx.Response:
    return relay.post(
        "/hooks/agent",
        b'{"message": "%s"}' % message.encode(),
        {"Authorization": f"Bearer {HOOKS_TOKEN}", "Content-Type": "application/json"},
    )


def test_a_paused_source_keeps_accepting_and_delivers_everything_in_order_after_resume(
    relay_factory: Any, redis_client: redis.Redis
) -> None:
    relay = relay_factory(delivery={"in_flight": 1})
    relay.start_stub()
    relay.start_ingress()
    relay.start_worker()
    done = relay_cli(relay, "pause", "source", "github", "--reason", "sender misbehaves")
    assert done.returncode == 0 and "source github paused" in done.stdout, done.stderr

    for i in range(10):
        assert relay.post_github(PUSH, f"p-{i:02d}").status_code == 202  # verified, accepted, stored
    # GitHub pushes of one repository share a session: its first action is held, the rest wait
    # behind it in their lane, as they would behind a slow delivery.
    wait_until(lambda: waiting(redis_client, "github") == 10, timeout=20)
    assert held(relay, "source", "github") == 1
    assert scrape(relay)[("relay_paused", (("kind", "source"), ("name", "github")))] == 1
    # Other sources are not held.
    assert post_agent(relay, "not paused").status_code == 202
    wait_until(lambda: len(relay.stub.runs()) == 1)

    listing = relay_cli(relay, "events", "-n", "20").stdout
    assert "source github paused by cli:" in listing and "sender misbehaves" in listing
    assert "p-00" in listing and "agent:held (source github paused by operator)" in listing
    assert "agent:waiting" in listing

    # The pause lives in Redis: a new worker obeys it too.
    worker = next(p for p in relay.procs if p.args[0] == "worker")
    worker.stop()
    relay.start_worker()
    for i in range(10, 15):
        assert relay.post_github(PUSH, f"p-{i:02d}").status_code == 202
    wait_until(lambda: waiting(redis_client, "github") == 15, timeout=20)
    assert len(relay.stub.runs()) == 1

    done = relay_cli(relay, "resume", "source", "github")
    assert done.returncode == 0 and "source github resumed; 1 held action(s) queued" in done.stdout
    wait_until(lambda: len(relay.stub.runs()) == 16, timeout=30)
    assert delivered_ids(relay, redis_client)[1:] == [f"p-{i:02d}" for i in range(15)]
    metrics = scrape(relay)
    assert not any(name in ("relay_paused", "relay_held_actions") for name, _ in metrics)
    assert "nothing paused" in relay_cli(relay, "pause").stdout


def test_a_paused_gateway_holds_every_delivery_and_is_not_the_circuit(
    relay: Relay, redis_client: redis.Redis
) -> None:
    assert relay_cli(relay, "pause", "gateway", "default").returncode == 0
    event_id = post_agent(relay, "during maintenance").json()["eventId"]
    wait_until(lambda: held(relay, "gateway", "default") == 1)
    action_id = redis_client.hget(keys.event(event_id), "actions")
    record = {
        k.decode(): v.decode()
        for k, v in redis_client.hgetall(keys.action(__import__("orjson").loads(action_id)[0]["id"])).items()
    }
    assert record["state"] == "held" and record["held_by"] == "gateway:default"
    assert scrape(relay)[("relay_gateway_circuit", (("state", "closed"),))] == 1  # not the circuit
    assert relay.stub.runs() == []
    assert relay_cli(relay, "resume", "gateway", "default").returncode == 0
    wait_until(lambda: len(relay.stub.runs()) == 1)


def test_unknown_names_are_refused(relay: Relay) -> None:
    done = relay_cli(relay, "pause", "source", "nope")
    assert done.returncode == 2 and "no source 'nope'" in done.stderr and "github" in done.stderr


def test_a_resume_cut_short_is_finished_by_the_sweep(relay: Relay, redis_client: redis.Redis) -> None:
    """Held actions whose pause is gone (the resuming process died) are released by release_orphans."""
    assert relay_cli(relay, "pause", "source", "github").returncode == 0
    assert relay.post_github(PUSH, "orphan-1").status_code == 202
    wait_until(lambda: held(relay, "source", "github") == 1)
    redis_client.hdel(keys.PAUSED, "source:github")  # the flag went, the release never ran
    assert redis_client.sismember(keys.PAUSED_HELD, pause.held_key("source", "github"))
    wait_until(lambda: len(relay.stub.runs()) == 1, timeout=20)  # the routers' sweep, every ~5 s
    assert not redis_client.exists(pause.held_key("source", "github"))


def test_console_buttons_pause_and_resume(redis_server: Any, redis_client: redis.Redis) -> None:
    from tests.console.test_console import Client, settings

    console = Client(settings(redis_server.url))
    try:
        console.login()
        page = console.get("/console/system").text
        assert "Pause and resume" in page and 'data-confirm="Pause source generic?"' in page
        form = {"csrf": console.csrf("/console/system"), "kind": "source", "name": "generic"}
        answer = console.post("/console/pause", data={**form, "action": "pause", "reason": "sender loops"})
        assert answer.status_code == 303 and "paused" in answer.headers["location"]
        (paused,) = pause.list_paused(redis_client)
        assert (paused.kind, paused.name, paused.by, paused.reason) == (
            "source",
            "generic",
            "console",
            "sender loops",
        )
        page = console.get("/console/system").text
        assert "paused by console" in page and ">Resume<" in page
        answer = console.post("/console/pause", data={**form, "action": "resume"})
        assert answer.status_code == 303 and pause.list_paused(redis_client) == []
        assert (
            console.post("/console/pause", data={**form, "name": "nope", "action": "pause"}).status_code
            == 400
        )
        forged = console.post("/console/pause", data={**form, "csrf": "forged", "action": "pause"})
        assert forged.status_code in (400, 403) and pause.list_paused(redis_client) == []
    finally:
        console.close()
