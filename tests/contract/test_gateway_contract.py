"""The relay against the real OpenClaw gateway (npm `openclaw` 2026.9.6) and `relay gateway-stub`.

Each case runs against both (`target`) and asserts the same classification, so the stub is proven
equal to the gateway wherever the rest of the suite relies on it. Where the stub cannot be compared
the case says why.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import redis
from websockets.sync.client import connect

from relay.delivery import circuit as health
from relay.delivery import rpc
from relay.protocol.policy import SESSION_KEY_SETTING
from relay.store import keys

from ..conftest import GENERIC_TOKEN, Relay, dump, github_fixture, wait_until
from .conftest import CONTRACT, Target, contract_relay

pytestmark = CONTRACT

AUTH = {"Authorization": f"Bearer {GENERIC_TOKEN}"}
GENERIC = {"preset": "generic", "token": "env:GENERIC_WEBHOOK_TOKEN"}
# One generic source per action the suite sends through the relay's doors.
DOOR_SOURCES = {
    name: GENERIC
    for name in ("send-telegram", "send-nochannel", "tool-ok", "tool-denied", "agent-turn", "tool-retry")
}
DOOR_MAPPINGS = [
    {
        "match": {"path": "send-telegram"},
        "action": "send",
        "channel": "telegram",
        "to": "{{payload.to}}",
        "messageTemplate": "contract {{payload.to}}",
    },
    {"match": {"path": "send-nochannel"}, "action": "send", "to": "{{payload.to}}", "messageTemplate": "hi"},
    {"match": {"path": "tool-ok"}, "action": "tool", "tool": "sessions_list", "args": {"limit": 1}},
    {"match": {"path": "tool-denied"}, "action": "tool", "tool": "sessions_send", "args": {"message": "x"}},
    {"match": {"path": "tool-retry"}, "action": "tool", "tool": "sessions_list", "retryToolErrors": True},
    {"match": {"path": "agent-turn"}, "action": "agent", "messageTemplate": "contract agent {{payload.to}}"},
]


def _cli(relay: Relay, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args],
        env=env or relay.env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def _record(client: redis.Redis, action_id: str) -> dict[str, str]:
    return {k.decode(): v.decode(errors="replace") for k, v in client.hgetall(keys.action(action_id)).items()}


def _state(client: redis.Redis, action_id: str) -> str | None:
    return _record(client, action_id).get("state")


def _post(relay: Relay, source: str, payload: dict[str, Any]) -> str:
    """Post to a relay source; the one action id it queued."""
    body = dump({**payload, "nonce": uuid.uuid4().hex})  # each post a new event, not a duplicate
    response = relay.post(f"/hooks/{source}", body, {**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    event = response.json()["eventId"]
    return wait_until(lambda: _action_id(relay, event), timeout=10)


def _action_id(relay: Relay, event_id: str) -> str | None:
    client = redis.Redis.from_url(relay.redis_url)
    raw = client.hget(keys.event(event_id), "actions")
    return orjson.loads(raw)[0]["id"] if raw and orjson.loads(raw) else None


def _door_relay(relay_factory: Callable[..., Relay], target: Target) -> Relay:
    relay = contract_relay(relay_factory, target, sources=DOOR_SOURCES, mappings=DOOR_MAPPINGS)
    relay.start_ingress()
    relay.start_worker()
    return relay


# --- hooks ------------------------------------------------------------------------------------------


def test_agent_and_wake_are_delivered_with_a_run_id(
    relay_factory, redis_client: redis.Redis, target: Target
) -> None:
    """`relay agent` / `relay wake` (no session key: a default-config gateway takes them)."""
    target.set_policy(allowing=False)
    relay = contract_relay(relay_factory, target)
    relay.start_worker()
    agent = _cli(
        relay, "agent", "-m", "contract: agent via the relay", "--wait", "--json", "--wait-timeout", "60"
    )
    assert agent.returncode == 0, agent.stdout + agent.stderr
    wake = _cli(
        relay, "wake", "-t", "contract: wake via the relay", "--wait", "--json", "--wait-timeout", "60"
    )
    assert wake.returncode == 0, wake.stdout + wake.stderr
    agent_id, wake_id = (orjson.loads(r.stdout.splitlines()[-1])["actionId"] for r in (agent, wake))
    agent_record, wake_record = _record(redis_client, agent_id), _record(redis_client, wake_id)
    assert agent_record["state"] == wake_record["state"] == "delivered"
    assert agent_record["last_status"] == wake_record["last_status"] == "200"
    uuid.UUID(agent_record["run_id"])  # the gateway's runId
    assert orjson.loads(wake_record["answer"])["ok"] is True


def test_same_idempotency_key_gives_the_same_run_id(target: Target) -> None:
    target.set_policy(allowing=False)
    key = f"contract-{uuid.uuid4()}"
    body = {"message": "contract: idempotent agent", "name": "contract"}
    first, again = target.agent(body, key), target.agent(body, key)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["runId"] == again.json()["runId"]
    other = target.agent(body, f"{key}-2")
    assert other.status_code == 200 and other.json()["runId"] != first.json()["runId"]


def test_wrong_token_is_401_then_429_after_the_limit(target: Target) -> None:
    body = {"message": "contract: wrong token"}
    statuses = [target.agent(body, token="not-the-token").status_code for _ in range(21)]
    assert statuses[:20] == [401] * 20 and statuses[20] == 429, statuses
    limited = target.agent(body, token="not-the-token")
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    # A request with the right token still gets through and resets the counter.
    assert target.agent({"message": "contract: after the limit"}).status_code == 200
    assert target.agent(body, token="not-the-token").status_code == 401


def test_query_token_and_content_type_less_json(target: Target) -> None:
    in_query = httpx.post(f"{target.url}/hooks/agent?token={target.hooks_token}", json={"message": "x"})
    assert in_query.status_code == 400
    bare = httpx.post(
        f"{target.url}/hooks/wake",
        content=b'{"text": "contract: no content-type"}',
        headers={"Authorization": f"Bearer {target.hooks_token}"},
    )
    assert bare.status_code == 200 and bare.json()["ok"] is True


# --- the session-key policy ---------------------------------------------------------------------------


def test_default_config_pauses_a_github_push_then_delivers_it_once_allowed(
    relay_factory, redis_client: redis.Redis, target: Target
) -> None:
    target.set_policy(allowing=False)
    relay = contract_relay(relay_factory, target)
    check = _cli(relay, "check")  # names the setting before the first event
    assert check.returncode == 3, check.stdout + check.stderr
    assert (
        SESSION_KEY_SETTING.splitlines()[0] in check.stderr
        and 'hooks.allowedSessionKeyPrefixes: ["hook:"]' in check.stderr
    )
    relay.start_ingress()
    relay.start_worker()
    response = relay.post_github(github_fixture("push.default"), f"contract-{uuid.uuid4()}")
    assert response.status_code == 202, response.text
    event_id = response.json()["eventId"]
    action_id = wait_until(lambda: _action_id(relay, event_id), timeout=10)
    wait_until(
        lambda: (
            _state(redis_client, action_id) == "paused"
            and "to fix" in _record(redis_client, action_id).get("last_error", "")
        ),
        timeout=30,
    )
    record = _record(redis_client, action_id)
    assert "sessionKey is disabled" in record["last_error"]
    assert "hooks.allowRequestSessionKey: true" in record["last_error"]
    assert 'hooks.allowedSessionKeyPrefixes: ["hook:"]' in record["last_error"]
    assert health.circuit_state(redis_client).open or _state(redis_client, action_id) == "paused"
    assert not redis_client.zscore(keys.DEAD, action_id)

    target.set_policy(allowing=True)  # the setting is made (the gateway reloads hooks.* by itself)
    wait_until(lambda: _state(redis_client, action_id) == "delivered", timeout=75)
    record = _record(redis_client, action_id)
    assert record["last_status"] == "200" and record["run_id"]
    assert not redis_client.zcard(keys.DEAD)
    after = _cli(relay, "check")
    assert after.returncode == 0 and "session keys ok" in after.stdout, after.stdout + after.stderr


# --- the other doors ----------------------------------------------------------------------------------


def test_websocket_handshake_offers_a_range_and_reads_hello_ok(target: Target) -> None:
    hello = rpc.call(target.url, target.gateway_token, "connect", None, timeout=20)
    assert hello.status == 200 and hello.protocol == 4, hello
    assert hello.payload["type"] == "hello-ok"
    # A client that offers only protocol 3 is refused at the handshake: a configuration problem.
    params = {**rpc.connect_params(target.gateway_token), "minProtocol": 3, "maxProtocol": 3}
    with connect(rpc.ws_url(target.url)) as ws:
        session = rpc._Session(ws, time.monotonic() + 20)
        with pytest.raises(rpc.RpcFailure) as refused:
            session.recv(5)
            session.request("connect", params, handshake=True)
    assert refused.value.result.status == 401 and "protocol mismatch" in refused.value.result.text
    wrong = rpc.call(
        target.url,
        "not-the-gateway-token",
        "send",
        {"to": "x", "message": "m", "idempotencyKey": "k"},
        timeout=20,
    )
    assert wrong.status == 401 and "unauthorized" in wrong.text


def test_send_and_tool_answers_are_classified_per_action(
    relay_factory, redis_client: redis.Redis, target: Target
) -> None:
    """send reaches the gateway's `send` method; tool runs sessions_list; the refusals of single
    actions dead-letter those actions only and pause nothing."""
    target.set_policy(allowing=False)
    relay = _door_relay(relay_factory, target)
    to = f"contract-{uuid.uuid4().hex[:8]}"
    queued = _post(relay, "send-telegram", {"to": to})
    no_channel = _post(relay, "send-nochannel", {"to": to})
    denied = _post(relay, "tool-denied", {})
    tool = _post(relay, "tool-ok", {})
    agent = _post(relay, "agent-turn", {"to": to})
    final = {"delivered", "dead"}
    wait_until(
        lambda: all(_state(redis_client, a) in final for a in (queued, no_channel, denied, tool, agent)),
        timeout=60,
    )
    records = {
        name: _record(redis_client, a)
        for name, a in [
            ("queued", queued),
            ("no_channel", no_channel),
            ("denied", denied),
            ("tool", tool),
            ("agent", agent),
        ]
    }
    # `send` with a bundled channel that has no account: the gateway queued it (OUTBOUND_DELIVERY_QUEUED)
    # and owns its retries: handed over, sent once.
    assert records["queued"]["state"] == "delivered" and records["queued"]["last_status"] == "202", records[
        "queued"
    ]
    assert records["queued"]["attempts"] == "1" and "OUTBOUND_DELIVERY_QUEUED" in records["queued"]["answer"]
    # No channel configured: the channel-level refusal comes from `send` itself: dead-letter this one.
    assert records["no_channel"]["state"] == "dead", records["no_channel"]
    assert "Channel is required" in records["no_channel"]["last_error"]
    # sessions_send is on the default HTTP deny list: 404 not_found, a dead letter, not a pause.
    assert records["denied"]["state"] == "dead" and "not_found" in records["denied"]["last_error"]
    assert records["tool"]["state"] == "delivered" and records["tool"]["answer"].startswith('{"ok":true')
    assert records["agent"]["state"] == "delivered" and records["agent"]["run_id"]
    assert not health.circuit_state(redis_client).open  # nobody paused the gateway


def test_relay_check_proves_hooks_token_websocket_and_gateway_token(relay_factory, target: Target) -> None:
    target.set_policy(allowing=True)
    relay = contract_relay(relay_factory, target, sources=DOOR_SOURCES, mappings=DOOR_MAPPINGS)
    good = _cli(relay, "check")
    assert good.returncode == 0, good.stdout + good.stderr
    for line in (
        "hook token accepted",
        "session keys ok",
        "websocket ok",
        "protocol 4",
        "/tools/invoke ok: gateway token accepted",
    ):
        assert line in good.stdout, good.stdout
    wrong = _cli(relay, "check", env={**relay.env, "OPENCLAW_GATEWAY_TOKEN": "not-the-gateway-token"})
    assert wrong.returncode == 3 and "websocket: the gateway refused the handshake" in wrong.stderr
    assert "/tools/invoke refuses the gateway token (401)" in wrong.stderr
    assert "not-the-gateway-token" not in wrong.stdout + wrong.stderr


def test_stub_only_tool_refusals_dead_letter_one_action(
    relay_factory, redis_client: redis.Redis, stub_gateway: Target
) -> None:
    """403 tool_call_blocked and 500 tool_error: the real gateway gives them only for a plugin's
    before-tool-call hook or a tool that throws, neither of which a bare install has; the stub
    answers with the same bodies (tools-invoke-shared in the gateway's dist/)."""
    relay = _door_relay(relay_factory, stub_gateway)
    httpx.post(
        f"{stub_gateway.url}/_stub/control", json={"throw_tools": ["sessions_list"]}
    ).raise_for_status()
    try:
        thrown = _post(relay, "tool-ok", {})
        wait_until(lambda: _state(redis_client, thrown) == "dead", timeout=30)
        httpx.post(
            f"{stub_gateway.url}/_stub/control", json={"throw_tools": [], "block_tools": ["sessions_list"]}
        ).raise_for_status()
        blocked = _post(relay, "tool-ok", {})
        wait_until(lambda: _state(redis_client, blocked) == "dead", timeout=30)
        # A mapping that opts in (retryToolErrors: true) has a thrown tool retried.
        httpx.post(
            f"{stub_gateway.url}/_stub/control", json={"throw_tools": ["sessions_list"], "block_tools": []}
        ).raise_for_status()
        retried = _post(relay, "tool-retry", {})
        wait_until(lambda: _state(redis_client, retried) == "retrying", timeout=30)
        httpx.post(f"{stub_gateway.url}/_stub/control", json={"throw_tools": []}).raise_for_status()
        wait_until(lambda: _state(redis_client, retried) == "delivered", timeout=30)
    finally:
        httpx.post(f"{stub_gateway.url}/_stub/control", json={"throw_tools": [], "block_tools": []})
    assert _record(redis_client, thrown)["attempts"] == "1"  # a tool that ran and threw is not run again
    assert "tool_error" in _record(redis_client, thrown)["last_error"]
    assert "tool_call_blocked" in _record(redis_client, blocked)["last_error"]
    assert int(_record(redis_client, retried)["attempts"]) >= 2
    sent = [
        r["body"]
        for r in httpx.get(f"{stub_gateway.url}/_stub/requests").json()
        if r["path"] == "tools/invoke" and "body" in r  # refused tokens (relay check) carry no body
    ]
    assert sent and all("retryToolErrors" not in body for body in sent)  # the relay's own field stays home
    assert not health.circuit_state(redis_client).open
