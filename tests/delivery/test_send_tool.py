"""The gateway's other doors (docs/gateways.md): `send` over the WebSocket RPC, `tool` over /tools/invoke."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
import redis

from relay.delivery import rpc
from relay.delivery.send_and_tool import tool_status
from relay.errors import TransformError
from relay.protocol.actions import SendAction, ToolAction, action_adapter
from relay.protocol.event import Event
from relay.protocol.mapping import MappingConfig, base_fields, merge
from relay.store import keys
from tests.conftest import GENERIC_TOKEN, HOOKS_TOKEN, Relay, dump, free_port, wait_until

SEND_MAPPING = {
    "match": {"path": "generic"},
    "action": "send",
    "channel": "telegram",
    "to": "{{payload.chat}}",
    "messageTemplate": "Build {{payload.pipeline}} {{payload.status}}",
}
TOOL_MAPPING = {
    "match": {"path": "generic"},
    "action": "tool",
    "tool": "sessions_list",
    "toolAction": "json",
    "args": {"limit": 5, "label": "{{payload.pipeline}}"},
    "sessionKey": "main",
}
BODY = dump({"pipeline": "main", "status": "failed", "chat": "-100123"})
AUTH = {"Authorization": f"Bearer {GENERIC_TOKEN}"}


def _event(payload: dict) -> Event:
    return Event(source="generic", path="generic", payload=payload, headers={}, query={})


def _action_ids(relay: Relay, client: redis.Redis, answer: httpx.Response) -> list[str]:
    """The ids of the actions the mapping stage made of an answered event (once it is mapped)."""
    event_id = relay.outcome(answer)["eventId"]
    return [a["id"] for a in orjson.loads(client.hget(keys.event(event_id), "actions"))]


def _state(client: redis.Redis, action_id: str) -> str | None:
    value = client.hget(keys.action(action_id), "state")
    return value.decode() if value else None


# --- frames and models ----------------------------------------------------------------------------


def test_connect_frame_carries_protocol_client_and_token() -> None:
    params = rpc.connect_params("gw-secret", version="1.2.3")
    frame = rpc.request_frame("1", "connect", params)
    assert frame == {"type": "req", "id": "1", "method": "connect", "params": params}
    # A range this gateway (2026.9.6: protocol 4 only) and the previous one (3) both accept.
    assert (params["minProtocol"], params["maxProtocol"]) == (3, 4) == (rpc.MIN_PROTOCOL, rpc.MAX_PROTOCOL)
    assert params["client"]["id"] == "gateway-client" and params["client"]["mode"] == "backend"
    assert params["client"]["version"] == "1.2.3"
    assert params["auth"] == {"token": "gw-secret"}
    assert params["role"] == "operator" and "operator.write" in params["scopes"]
    assert "auth" not in rpc.connect_params(None)


def test_send_frame_adds_the_idempotency_key() -> None:
    action = SendAction.model_validate(
        {"to": "+1555", "message": "hi", "channel": "whatsapp", "threadId": "7"}
    )
    params = rpc.send_params(action.body(), "act_1")
    assert params == {
        "to": "+1555",
        "message": "hi",
        "channel": "whatsapp",
        "threadId": "7",
        "idempotencyKey": "act_1",
    }
    assert rpc.request_frame("2", "send", params)["params"]["idempotencyKey"] == "act_1"
    assert rpc.request_frame("3", "health") == {"type": "req", "id": "3", "method": "health"}


def test_frames_parse_and_errors_map_onto_delivery_statuses() -> None:
    assert rpc.parse_frame(b'{"type":"res","id":"1","ok":true}')["ok"] is True
    with pytest.raises(ValueError):
        rpc.parse_frame(b"[1]")
    invalid = rpc.error_result({"code": "INVALID_REQUEST", "message": "invalid send params: to"})
    assert invalid.status == 400 and "INVALID_REQUEST" in invalid.text
    unavailable = rpc.error_result({"code": "UNAVAILABLE", "message": "boom", "retryAfterMs": 1500})
    assert unavailable.status == 503 and unavailable.retry_after == 1.5
    assert rpc.error_result({"code": "INVALID_REQUEST", "message": "x", "retryable": True}).status == 503
    assert rpc.error_result({"code": "FORBIDDEN", "message": "missing scope"}).status == 403
    assert (
        rpc.error_result({"code": "INVALID_REQUEST", "message": "unauthorized"}, handshake=True).status == 401
    )
    assert rpc.ws_url("https://gw.example:18789") == "wss://gw.example:18789"
    assert rpc.ws_url("http://127.0.0.1:18789") == "ws://127.0.0.1:18789"


def test_tool_404_not_found_is_a_refusal_but_a_bare_404_is_configuration() -> None:
    assert (
        tool_status(404, '{"ok":false,"error":{"type":"not_found","message":"Tool not available: x"}}') == 422
    )
    assert tool_status(404, "Not Found") == 404
    assert tool_status(200, "{}") == 200


def test_models_are_in_the_union_and_forbid_extra_fields() -> None:
    assert isinstance(action_adapter.validate_python({"kind": "send", "to": "x", "message": "m"}), SendAction)
    tool = action_adapter.validate_python(
        {"kind": "tool", "tool": "t", "args": {"a": 1}, "sessionKey": "main"}
    )
    assert isinstance(tool, ToolAction) and tool.body() == {
        "tool": "t",
        "args": {"a": 1},
        "sessionKey": "main",
    }
    with pytest.raises(ValueError):
        action_adapter.validate_python({"kind": "send", "to": "x", "message": "m", "deliver": True})


def test_mapping_send_and_tool_fields() -> None:
    payload = {"pipeline": "main", "status": "failed", "chat": "-100123"}
    send = merge(base_fields(MappingConfig.model_validate(SEND_MAPPING), _event(payload)), {})
    assert isinstance(send, SendAction)
    assert send.body() == {"to": "-100123", "message": "Build main failed", "channel": "telegram"}
    tool = merge(base_fields(MappingConfig.model_validate(TOOL_MAPPING), _event(payload)), {})
    assert isinstance(tool, ToolAction)
    assert tool.body() == {
        "tool": "sessions_list",
        "action": "json",
        "args": {"limit": 5, "label": "main"},
        "sessionKey": "main",
    }
    # A transform may turn an agent mapping's action into a send (the override's kind wins).
    switched = merge({"kind": "agent", "message": "m"}, {"kind": "send", "to": "x", "message": "plain"})
    assert isinstance(switched, SendAction) and switched.body() == {"to": "x", "message": "plain"}
    with pytest.raises(TransformError, match="requires to"):
        merge({"kind": "send", "message": "no recipient"}, {})
    with pytest.raises(TransformError, match="requires tool"):
        merge({"kind": "tool"}, {"args": {}})
    with pytest.raises(TransformError, match="unknown action kind"):
        merge({"kind": "agent", "message": "m"}, {"kind": "fax"})


# --- the RPC client against the stub (a real process) ---------------------------------------------


def test_rpc_client_against_the_stub(relay_factory) -> None:
    relay = relay_factory()
    stub = relay.start_stub()
    params = {"to": "x", "message": "hello", "idempotencyKey": "k1"}
    ok = rpc.call(stub.url, HOOKS_TOKEN, "send", params, timeout=10)
    assert ok.status == 200 and ok.run_id == "k1", ok
    again = rpc.call(stub.url, HOOKS_TOKEN, "send", params, timeout=10)
    assert again.status == 200 and again.payload == ok.payload  # deduped by idempotencyKey
    assert len(stub.runs("send")) == 1
    assert rpc.call(stub.url, "wrong", "send", params, timeout=10).status == 401
    bad = rpc.call(stub.url, HOOKS_TOKEN, "send", {"to": "x", "idempotencyKey": "k2"}, timeout=10)
    assert bad.status == 400 and "text or media is required" in bad.text
    refused = rpc.call(f"http://127.0.0.1:{free_port()}", HOOKS_TOKEN, "send", params, timeout=5)
    assert refused.status is None


# --- end to end: ingress → worker → stub ----------------------------------------------------------


def _start(relay: Relay) -> Relay:
    relay.start_stub()
    relay.start_ingress()
    relay.start_worker()
    return relay


def test_send_mapping_is_delivered_over_the_websocket_rpc(relay_factory, redis_client: redis.Redis) -> None:
    relay = _start(relay_factory(mappings=[SEND_MAPPING]))
    response = relay.post("/hooks/generic", BODY, AUTH)
    assert response.status_code == 202, response.text
    (action_id,) = _action_ids(relay, redis_client, response)
    sends = wait_until(lambda: relay.stub.runs("send"), timeout=15)
    assert sends[0]["key"] == action_id
    assert sends[0]["body"] == {
        "to": "-100123",
        "message": "Build main failed",
        "channel": "telegram",
        "idempotencyKey": action_id,
    }
    wait_until(lambda: _state(redis_client, action_id) == "delivered")
    assert redis_client.hget(keys.action(action_id), "run_id") == action_id.encode()
    assert not relay.stub.runs()  # no agent turn


def test_tool_mapping_is_delivered_to_tools_invoke(relay_factory, redis_client: redis.Redis) -> None:
    relay = _start(relay_factory(mappings=[TOOL_MAPPING]))
    response = relay.post("/hooks/generic", BODY, AUTH)
    assert response.status_code == 202, response.text
    (action_id,) = _action_ids(relay, redis_client, response)
    calls = wait_until(lambda: relay.stub.runs("tools/invoke"), timeout=15)
    assert calls[0]["key"] == action_id
    assert calls[0]["body"] == {
        "tool": "sessions_list",
        "action": "json",
        "args": {"limit": 5, "label": "main"},
        "sessionKey": "main",
    }
    wait_until(lambda: _state(redis_client, action_id) == "delivered")
    assert b"stub ran sessions_list" in redis_client.hget(keys.action(action_id), "answer")


def test_send_retried_after_a_lost_answer_is_received_once(relay_factory, redis_client: redis.Redis) -> None:
    relay = _start(relay_factory(mappings=[SEND_MAPPING]))
    relay.stub.control(ws_drop=1)  # handled, then the connection drops before the answer
    response = relay.post("/hooks/generic", BODY, AUTH)
    (action_id,) = _action_ids(relay, redis_client, response)
    wait_until(lambda: _state(redis_client, action_id) == "delivered", timeout=40)
    sends = [r for r in relay.stub.requests() if r["path"] == "send"]
    assert [r["replay"] for r in sends] == [False, True]
    assert {r["key"] for r in sends} == {action_id}
    assert len(relay.stub.runs("send")) == 1


def test_send_retried_after_an_error_answer(relay_factory, redis_client: redis.Redis) -> None:
    relay = _start(relay_factory(mappings=[SEND_MAPPING]))
    relay.stub.control(fail=[503])
    response = relay.post("/hooks/generic", BODY, AUTH)
    (action_id,) = _action_ids(relay, redis_client, response)
    wait_until(lambda: _state(redis_client, action_id) == "delivered", timeout=30)
    assert len(relay.stub.runs("send")) == 1
    assert {r["key"] for r in relay.stub.requests() if r["path"] == "send"} == {action_id}


def test_send_refused_as_invalid_is_dead_lettered(relay_factory, redis_client: redis.Redis) -> None:
    relay = _start(relay_factory(mappings=[SEND_MAPPING]))
    relay.stub.control(fail=[400])
    response = relay.post("/hooks/generic", BODY, AUTH)
    (action_id,) = _action_ids(relay, redis_client, response)
    wait_until(lambda: _state(redis_client, action_id) == "dead", timeout=15)
    assert b"INVALID_REQUEST" in redis_client.hget(keys.action(action_id), "last_error")


@pytest.mark.parametrize("mapping", [SEND_MAPPING, TOOL_MAPPING], ids=["send", "tool"])
def test_wrong_gateway_token_pauses_and_keeps_the_action(
    relay_factory, redis_client: redis.Redis, mapping: dict
) -> None:
    relay = _start(relay_factory(gateway={"auth_token": "not-the-gateway-token"}, mappings=[mapping]))
    response = relay.post("/hooks/generic", BODY, AUTH)
    (action_id,) = _action_ids(relay, redis_client, response)
    wait_until(lambda: _state(redis_client, action_id) == "paused", timeout=15)
    time.sleep(1.0)  # nothing changes: a dead letter or a send with the wrong token would show here
    assert _state(redis_client, action_id) == "paused"
    assert not redis_client.zscore(keys.DEAD, action_id)
    assert not relay.stub.runs("send") and not relay.stub.runs("tools/invoke")
    refused = [r for r in relay.stub.requests() if r.get("refused") == "token"]
    assert refused and refused[0]["path"] in ("connect", "tools/invoke")
