"""`relay send` and `relay tool`: the durable counterparts of `openclaw message send` and of a tool
call, with real processes (a worker and `relay gateway-stub`; no ingress: the CLI records into Redis)."""

from __future__ import annotations

import orjson
import redis

from relay.client import RelayClient
from relay.store import keys
from tests.conftest import Relay, free_port
from tests.worker.test_scripts import relay_cli


def _recorded_body(client: redis.Redis, event_id: str) -> dict:
    [action] = orjson.loads(client.hget(keys.event(event_id), "actions"))
    return dict(action["body"])


def test_send_with_openclaw_message_send_flags_waits_for_the_gateway(
    relay_factory, redis_client: redis.Redis
) -> None:
    relay: Relay = relay_factory()
    stub = relay.start_stub()
    relay.start_worker()
    flags = [
        "--target",
        "-100123",
        "--channel",
        "telegram",
        "-m",
        "Deploy of v2 done",
        "--media",
        "https://example.com/graph.png",
        "--reply-to",
        "4711",
        "--thread-id",
        "7",
        "--account",
        "ops-bot",
        "--silent",
    ]
    params = {
        "to": "-100123",
        "message": "Deploy of v2 done",
        "mediaUrl": "https://example.com/graph.png",
        "channel": "telegram",
        "accountId": "ops-bot",
        "replyToId": "4711",
        "threadId": "7",
        "silent": True,
    }

    dry = relay_cli(relay, "send", *flags, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert orjson.loads(dry.stdout) == {"ok": True, "dryRun": True, "kind": "send", "params": params}
    assert redis_client.xlen(keys.INBOX) == 0  # a dry run records nothing

    done = relay_cli(relay, "send", *flags, "--idempotency-key", "deploy-v2", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    out = orjson.loads(done.stdout)
    assert out["ok"] and out["state"] == "delivered" and out["runId"] == out["actionId"]
    assert _recorded_body(redis_client, out["eventId"]) == params
    [sent] = stub.runs("send")
    assert sent["body"] == {**params, "idempotencyKey": out["actionId"]}  # the gateway's send params

    again = relay_cli(relay, "send", *flags, "--idempotency-key", "deploy-v2")
    assert (
        again.returncode == 0 and again.stdout.strip() == out["actionId"] and "already used" in again.stderr
    )
    assert len(stub.runs("send")) == 1  # sent once

    # Several media are mediaUrls; media alone (no text) is a valid send.
    media_only = relay_cli(
        relay, "send", "--to", "+15550001", "--media", "a.png", "--media", "b.png", "--dry-run"
    )
    assert orjson.loads(media_only.stdout)["params"] == {"to": "+15550001", "mediaUrls": ["a.png", "b.png"]}

    # Refused for good by the gateway: exit 1 with its error, as `relay agent --wait`.
    stub.control(fail=[400])
    refused = relay_cli(relay, "send", "--target", "x", "-m", "bad", "--wait", "--wait-timeout", "30")
    assert refused.returncode == 1, refused.stderr
    assert "dead-lettered" in refused.stderr and "INVALID_REQUEST" in refused.stderr
    assert refused.stdout.strip().startswith("act_")

    # Usage errors: exit 2; Redis unreachable: exit 3.
    assert relay_cli(relay, "send", "--target", "x").returncode == 2  # neither message nor media
    assert relay_cli(relay, "send", "-m", "no target").returncode == 2
    unreachable = relay_cli(
        relay,
        "send",
        "--to",
        "x",
        "-m",
        "y",
        env={**relay.env, "RELAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
    )
    assert unreachable.returncode == 3 and "cannot reach Redis" in unreachable.stderr


def test_tool_call_waits_for_the_gateway_and_reports_a_dead_letter(
    relay_factory, redis_client: redis.Redis
) -> None:
    relay: Relay = relay_factory()
    stub = relay.start_stub()
    relay.start_worker()
    done = relay_cli(
        relay,
        "tool",
        "sessions_list",
        "--args",
        '{"limit": 5}',
        "--action",
        "json",
        "--session-key",
        "main",
        "--wait",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    out = orjson.loads(done.stdout)
    assert out["state"] == "delivered"
    [call] = stub.runs("tools/invoke")
    assert call["body"] == {
        "tool": "sessions_list",
        "action": "json",
        "args": {"limit": 5},
        "sessionKey": "main",
    }
    assert call["key"] == out["actionId"]
    assert b"stub ran sessions_list" in redis_client.hget(keys.action(out["actionId"]), "answer")

    stub.control(fail=[400])
    refused = relay_cli(relay, "tool", "agents_list", "--wait", "--wait-timeout", "30", "--json")
    assert refused.returncode == 1, refused.stderr
    failed = orjson.loads(refused.stdout)
    assert failed["ok"] is False and failed["state"] == "dead" and failed["status"] == 400

    for bad in ("[1]", "not json", '"text"'):
        usage = relay_cli(relay, "tool", "sessions_list", "--args", bad)
        assert usage.returncode == 2 and "--args must be a JSON object" in usage.stderr
    assert len(stub.runs("tools/invoke")) == 1

    # The Python client records the same actions.
    with RelayClient(relay.redis_url) as client:
        tool_id = client.tool("session_status", {"sessionKey": "main"}, idempotency_key="py-tool")
        send_id = client.send("+1555", "hi", channel="whatsapp", silent=True, idempotency_key="py-send")
        assert client.wait(tool_id, timeout=30).state == "delivered"
        assert client.wait(send_id, timeout=30).state == "delivered"
    assert stub.runs("send")[0]["body"] == {
        "to": "+1555",
        "message": "hi",
        "channel": "whatsapp",
        "silent": True,
        "idempotencyKey": send_id,
    }
