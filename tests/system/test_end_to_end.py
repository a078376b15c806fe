"""The whole path with real processes: ingress → Redis → router → RQ worker → gateway stub."""

from __future__ import annotations

import time

import httpx
import orjson
import redis

from relay.store import keys
from tests.conftest import GENERIC_TOKEN, HOOKS_TOKEN, Relay, dump, github_fixture, wait_until

PUSH = github_fixture("push.default")


def delivered_state(client: redis.Redis, action_id: str) -> str | None:
    state = client.hget(keys.action(action_id), "state")
    return state.decode() if state else None


def only_action_id(relay: Relay, client: redis.Redis, answer: httpx.Response) -> str:
    """The id of the one action the mapping stage made of an answered event (once it is mapped)."""
    event_id = relay.outcome(answer)["eventId"]
    actions = orjson.loads(client.hget(keys.event(event_id), "actions"))
    assert len(actions) == 1
    return str(actions[0]["id"])


def test_signed_push_is_delivered_once_with_idempotency_key(relay: Relay, redis_client: redis.Redis) -> None:
    started = time.monotonic()
    response = relay.post_github(PUSH, "delivery-1")
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "received"  # answered before the mapping, which follows
    body = relay.outcome(response)  # the answer, with what the mapping stage made of its event
    assert body["ok"] is True and body["actions"] == 1
    runs = wait_until(lambda: relay.stub.runs(), timeout=10)
    elapsed = time.monotonic() - started
    assert len(runs) == 1
    run = runs[0]
    action_id = only_action_id(relay, redis_client, response)
    assert run["key"] == action_id
    assert "Codertocat/Hello-World" in run["body"]["message"]
    assert run["body"]["sessionKey"] == "hook:github:Codertocat/Hello-World"
    assert elapsed < 5, f"delivery took {elapsed:.2f}s"
    wait_until(lambda: delivered_state(redis_client, action_id) == "delivered")
    time.sleep(0.5)  # nothing more arrives: a second send would show here
    assert len(relay.stub.runs()) == 1


def test_bad_or_missing_signature_is_refused_and_nothing_is_queued(
    relay: Relay, redis_client: redis.Redis
) -> None:
    wrong = relay.post_github(PUSH, "delivery-bad", secret="not-the-secret")
    assert wrong.status_code == 401
    assert wrong.json() == {"ok": False, "error": "invalid X-Hub-Signature-256"}
    missing = relay.post(
        "/hooks/github",
        PUSH,
        {"Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": "delivery-none"},
    )
    assert missing.status_code == 401
    assert missing.json()["error"] == "missing X-Hub-Signature-256 header"
    tampered = relay.post(
        "/hooks/github",
        PUSH + b" ",
        {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "delivery-t",
            "X-Hub-Signature-256": relay_sign(PUSH),
        },
    )
    assert tampered.status_code == 401
    assert redis_client.zcard(keys.EVENTS) == 0
    assert redis_client.xlen(keys.INBOX) == 0
    assert not redis_client.keys("rq:job:*")
    time.sleep(0.3)  # nothing arrives: a refused request that was delivered anyway would show here
    assert relay.stub.requests() == []


def relay_sign(body: bytes) -> str:
    from tests.conftest import sign

    return sign(body)


def test_same_delivery_id_twice_is_delivered_once(relay: Relay, redis_client: redis.Redis) -> None:
    first = relay.post_github(PUSH, "delivery-dup")
    second = relay.post_github(PUSH, "delivery-dup")
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == {"ok": True, "duplicate": True, "eventId": first.json()["eventId"]}
    wait_until(lambda: relay.stub.runs())
    time.sleep(0.5)  # nothing more arrives: a duplicate would show here
    assert len(relay.stub.runs()) == 1
    assert redis_client.zcard(keys.EVENTS) == 1


def test_gateway_503_then_200_is_delivered_once(relay: Relay, redis_client: redis.Redis) -> None:
    relay.stub.control(fail=[503])
    response = relay.post_github(PUSH, "delivery-503")
    action_id = only_action_id(relay, redis_client, response)
    wait_until(lambda: delivered_state(redis_client, action_id) == "delivered", timeout=15)
    requests = [r for r in relay.stub.requests() if r.get("key") == action_id]
    assert [r["status"] for r in requests] == [503, 200]
    assert len(relay.stub.runs()) == 1
    assert redis_client.hget(keys.action(action_id), "attempts") == b"2"


def test_gateway_400_is_dead_lettered_with_its_error_text(relay: Relay, redis_client: redis.Redis) -> None:
    relay.stub.control(fail=[400])
    response = relay.post_github(PUSH, "delivery-400")
    action_id = only_action_id(relay, redis_client, response)
    wait_until(lambda: delivered_state(redis_client, action_id) == "dead", timeout=10)
    record = {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.action(action_id)).items()}
    assert record["last_status"] == "400"
    assert "injected failure 400" in record["last_error"]
    assert redis_client.zscore(keys.DEAD, action_id) is not None
    time.sleep(1.5)  # nothing more arrives: a retry would show here
    assert [r["status"] for r in relay.stub.requests()] == [400]  # never retried


def test_worker_killed_after_the_gateway_admitted_the_run_does_not_start_a_second(
    relay_factory, redis_client: redis.Redis
) -> None:
    relay = relay_factory()
    relay.start_stub("--admit-delay", "4")
    relay.start_ingress()
    worker = relay.start_worker()
    response = relay.post_github(PUSH, "delivery-kill")
    action_id = only_action_id(relay, redis_client, response)
    # The stub records the run when it admits it, then holds the answer for 4 s: kill the
    # worker while it waits, so the gateway has the run but the relay never heard back.
    wait_until(lambda: relay.stub.runs(), timeout=10)
    worker.kill()
    assert delivered_state(redis_client, action_id) == "delivering"
    relay.start_worker()
    wait_until(lambda: delivered_state(redis_client, action_id) == "delivered", timeout=40)
    runs = relay.stub.runs()
    assert len(runs) == 1, runs
    resent = [r for r in relay.stub.requests() if r.get("key") == action_id]
    assert all(r["runId"] == runs[0]["runId"] for r in resent)  # a resend reuses the key: same run
    assert redis_client.hget(keys.action(action_id), "run_id").decode() == runs[0]["runId"]


def test_delivered_action_is_not_sent_again_when_its_job_runs_twice(
    relay: Relay, redis_client: redis.Redis
) -> None:
    from rq import Queue

    response = relay.post_github(PUSH, "delivery-rerun")
    action_id = only_action_id(relay, redis_client, response)
    wait_until(lambda: delivered_state(redis_client, action_id) == "delivered")
    # A second job for the same action (a crash between send and record, a manual re-queue)
    # finds the delivered record and sends nothing.
    job = Queue("relay", connection=redis_client).enqueue("relay.delivery.deliver", action_id)
    wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=10)
    assert len([r for r in relay.stub.requests() if r.get("key") == action_id]) == 1


def test_generic_source_with_bearer_token(relay_factory, redis_client: redis.Redis) -> None:
    relay = relay_factory(
        mappings=[
            {
                "match": {"path": "generic"},
                "action": "agent",
                "name": "CI",
                "sessionKey": "hook:ci:{{payload.pipeline}}",
                "messageTemplate": "Build {{payload.pipeline}} {{payload.status}} ({{headers.x-ci-run}})",
            }
        ]
    )
    relay.start_stub()
    relay.start_ingress()
    relay.start_worker()
    body = dump({"pipeline": "main", "status": "failed"})
    refused = relay.post("/hooks/generic", body, {"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    ok = relay.post("/hooks/generic", body, {"Authorization": f"Bearer {GENERIC_TOKEN}", "X-CI-Run": "77"})
    assert ok.status_code == 202, ok.text
    runs = wait_until(lambda: relay.stub.runs())
    assert runs[0]["body"] == {
        "message": "Build main failed (77)",
        "name": "CI",
        "sessionKey": "hook:ci:main",
        "wakeMode": "now",
    }


def test_gateway_shaped_agent_and_wake_bodies_are_relayed_as_they_are(relay: Relay) -> None:
    auth = {"Authorization": f"Bearer {HOOKS_TOKEN}"}
    agent_body = {
        "message": "Summarise the inbox",
        "name": "Email",
        "sessionKey": "hook:email:1",
        "wakeMode": "next-heartbeat",
        "deliver": False,
        "thinking": "low",
        "timeoutSeconds": 120,
    }
    assert relay.post("/hooks/agent", dump(agent_body), auth).status_code == 202
    assert relay.post("/hooks/wake", dump({"text": "New email", "mode": "now"}), auth).status_code == 202
    assert relay.post("/hooks/wake", dump({"mode": "now"}), auth).json() == {
        "ok": False,
        "error": "text required",
    }
    assert relay.post("/hooks/agent", dump(agent_body), {"x-openclaw-token": "nope"}).status_code == 401
    wait_until(lambda: relay.stub.runs() and relay.stub.runs("wake"))
    assert relay.stub.runs()[0]["body"] == agent_body
    assert relay.stub.runs("wake")[0]["body"] == {"text": "New email", "mode": "now"}
