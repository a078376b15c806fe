"""Running it like infrastructure: /metrics, /readyz, logs, the CLI's error paths, scaling out."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from relay.store import keys
from tests.conftest import HOOKS_TOKEN, Relay, dump, free_port, github_fixture, wait_until

PUSH = github_fixture("push.default")


def scrape(relay: Relay) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(relay.metrics_url).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


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


def test_metrics_count_what_was_sent(relay: Relay, redis_client: redis.Redis) -> None:
    assert relay.post_github(PUSH, "m-1").status_code == 202
    assert relay.post_github(PUSH, "m-2").status_code == 202
    assert relay.post_github(PUSH, "m-2").status_code == 200  # duplicate
    ping = relay.post_github(PUSH, "m-3", event="ping")
    assert ping.status_code == 202 and relay.outcome(ping)["skipped"]  # stored, then skipped by the mapping
    assert relay.post_github(PUSH, "m-4", secret="wrong").status_code == 401
    assert relay.post("/hooks/no-such-source", b"{}", {}).status_code == 404
    wait_until(lambda: len(relay.stub.runs()) == 2)
    wait_until(
        lambda: scrape(relay).get(("relay_actions_total", (("kind", "agent"), ("outcome", "delivered")))) == 2
    )
    m = scrape(relay)
    assert m[("relay_events_total", (("outcome", "accepted"), ("source", "github")))] == 2
    assert m[("relay_events_total", (("outcome", "duplicate"), ("source", "github")))] == 1
    assert m[("relay_events_total", (("outcome", "skipped"), ("source", "github")))] == 1
    # The ingress counts what it stored; relay_events_total counts each webhook once, by outcome.
    assert m[("relay_events_received_total", (("source", "github"),))] == 3
    assert not any(name == "relay_events_total" and ("outcome", "received") in labels for name, labels in m)
    assert m[("relay_events_refused_total", (("source", "github"), ("status", "401")))] == 1
    assert m[("relay_events_refused_total", (("source", "(unknown)"), ("status", "404")))] == 1
    assert m[("relay_actions_total", (("kind", "agent"), ("outcome", "enqueued")))] == 2
    assert m[("relay_delivery_latency_seconds_count", ())] == 2
    assert m[("relay_delivery_latency_seconds_bucket", (("le", "+Inf"),))] == 2
    assert m[("relay_gateway_circuit", (("state", "closed"),))] == 1
    assert m[("relay_queue_depth", (("state", "inbox"),))] == 0
    assert m[("relay_workers", ())] >= 1
    assert not any(
        name == "relay_events_refused_total" and ("source", "no-such-source") in labels for name, labels in m
    )


def test_delivered_log_line_carries_the_ids(relay: Relay, redis_client: redis.Redis) -> None:
    event_id = relay.post_github(PUSH, "log-1").json()["eventId"]
    wait_until(lambda: relay.stub.runs())
    worker_log = next(p for p in relay.procs if p.args[0] == "worker").log

    def delivered_line() -> dict | None:
        for line in worker_log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "action delivered":
                return json.loads(line)
        return None

    line = wait_until(delivered_line)
    assert line["event_id"] == event_id
    assert line["source"] == "github" and line["delivery_id"] == "log-1"
    assert line["action_id"].startswith("act_") and line["outcome"] == "delivered" and line["status"] == 200


def test_readyz_reports_workers_and_can_require_them(relay_factory, redis_client: redis.Redis) -> None:
    relay = relay_factory()
    relay.start_ingress()
    assert httpx.get(f"{relay.url}/readyz").json() == {"ok": True, "workers": 0}
    assert httpx.get(f"{relay.url}/readyz?workers=1").status_code == 503
    relay.start_worker()
    wait_until(lambda: httpx.get(f"{relay.url}/readyz?workers=1").status_code == 200)
    assert httpx.get(f"{relay.url}/healthz").json() == {"ok": True}


def test_cli_error_paths(relay_factory, redis_client: redis.Redis) -> None:
    relay = relay_factory()
    # Bad config: the file and the key are named, exit 2.
    env = {**relay.env, "GITHUB_WEBHOOK_SECRET": ""}
    env.pop("GITHUB_WEBHOOK_SECRET")
    bad = relay_cli(relay, "check", env=env)
    assert bad.returncode == 2
    assert str(relay.config_path) in bad.stderr and "sources.github.secret" in bad.stderr
    # Redis down: exit 3 with a clear message.
    down = {**relay.env, "RELAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    for args in (["events"], ["dlq", "list"], ["check"]):
        result = relay_cli(relay, *args, env=down)
        assert result.returncode == 3, (args, result.stderr)
        assert "cannot reach Redis" in result.stderr
    # Gateway unreachable, then a wrong token, then all good.
    unreachable = relay_cli(relay, "check")
    assert unreachable.returncode == 3 and "cannot reach the gateway" in unreachable.stderr
    relay.start_stub()
    wrong = relay_cli(relay, "check", env={**relay.env, "OPENCLAW_HOOKS_TOKEN": "nope"})
    assert wrong.returncode == 3 and "refuses gateway.token" in wrong.stderr and "nope" not in wrong.stderr
    good = relay_cli(relay, "check")
    assert good.returncode == 0, good.stderr
    assert "hook token accepted" in good.stdout and HOOKS_TOKEN not in good.stdout + good.stderr
    # The probes started nothing at the gateway: a refused token, then a refused policy probe.
    assert [r.get("refused", "")[:28] for r in relay.stub.requests()[-2:]] == [
        "token",
        "hooks.allowedSessionKeyPrefi",
    ]
    assert not relay.stub.runs("agent") and not relay.stub.runs("wake")
    assert "session keys ok" in good.stdout and "websocket ok" in good.stdout


def test_every_command_has_help() -> None:
    from relay.cli.main import cli

    def walk(group, path):  # type: ignore[no-untyped-def]
        for name, command in group.commands.items():
            yield [*path, name]
            if hasattr(command, "commands"):
                yield from walk(command, [*path, name])

    for path in walk(cli, []):
        result = subprocess.run(
            [sys.executable, "-m", "relay.cli", *path, "--help"], capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0 and "Usage: relay" in result.stdout, path
        assert len(result.stdout.splitlines()) > 3, path


def test_two_ingress_and_three_workers_lose_nothing_and_double_nothing(relay_factory, redis_client) -> None:
    relay = relay_factory()
    stub = relay.start_stub()
    second = free_port()
    relay.start_ingress()
    relay.start_ingress(second)
    for _ in range(3):
        relay.start_worker()
    urls = [relay.url, f"http://127.0.0.1:{second}"]
    accepted: list[str] = []
    lock = threading.Lock()

    def send(offset: int) -> None:
        with httpx.Client(timeout=10) as client:
            for i in range(150):
                n = offset + i
                body = dump({"message": f"scale {n % 240}", "sessionKey": f"hook:scale:{n % 12}"})
                # Each message is sent twice, to different ingress processes: one delivery.
                for url in (urls[n % 2], urls[(n + 1) % 2]) if n % 5 == 0 else (urls[n % 2],):
                    r = client.post(
                        f"{url}/hooks/agent",
                        content=body,
                        headers={"Authorization": f"Bearer {HOOKS_TOKEN}", "Idempotency-Key": f"k{n % 240}"},
                    )
                    assert r.status_code in (200, 202), r.text
                    if r.status_code == 202:
                        with lock:
                            accepted.append(f"scale {n % 240}")

    threads = [threading.Thread(target=send, args=(o,)) for o in (0, 150)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = sorted(set(accepted))
    assert len(expected) == len(accepted) == 240
    wait_until(lambda: len(stub.runs()) >= 240, timeout=120)
    time.sleep(1.0)  # nothing more arrives: a duplicate would show here
    got = sorted(r["body"]["message"] for r in stub.runs())
    assert got == expected
    assert redis_client.xlen(keys.INBOX) == 0


def test_sigterm_during_a_delivery_finishes_it_then_stops(relay_factory, redis_client) -> None:
    relay = relay_factory()
    stub = relay.start_stub("--admit-delay", "2")
    relay.start_ingress()
    worker = relay.start_worker()
    event_id = relay.post_github(PUSH, "stop-1").json()["eventId"]
    wait_until(lambda: stub.runs())  # admitted; the worker now waits 2 s for the answer
    started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    worker.wait(timeout=20)
    assert time.monotonic() - started < 8  # a warm shutdown: the delivery ends, nothing waits for a next job
    assert worker.proc.returncode == 0
    (action,) = json.loads(redis_client.hget(keys.event(event_id), "actions"))
    assert redis_client.hget(keys.action(action["id"]), "state") == b"delivered"  # recorded before exiting


def test_events_shows_one_event_by_the_id_the_answer_gave(relay: Relay) -> None:
    ping = relay.post_github(PUSH, "one-by-id", event="ping")
    push = relay.post_github(PUSH, "one-by-id-2")
    assert ping.status_code == push.status_code == 202
    ping_id, push_id = ping.json()["eventId"], push.json()["eventId"]
    relay.outcome(ping)
    wait_until(lambda: "delivered" in relay_cli(relay, "events", push_id).stdout, timeout=20)
    shown = relay_cli(relay, "events", ping_id)
    assert shown.returncode == 0 and [line.split()[2] for line in shown.stdout.splitlines()] == [ping_id]
    assert "skipped: ping" in shown.stdout
    both = relay_cli(relay, "events", "--json", ping_id, push_id, "evt_gone")
    assert [json.loads(line)["id"] for line in both.stdout.splitlines()] == [ping_id, push_id]
    # Asked for by id, an event shows each action: its attempts and the gateway's answer.
    (summary, action_line) = relay_cli(relay, "events", push_id).stdout.splitlines()
    assert summary.split()[2] == push_id
    assert "delivered" in action_line and "attempts 1" in action_line and "last status 200" in action_line
    assert "runId " in action_line
    assert "evt_gone: no such event" in both.stderr
