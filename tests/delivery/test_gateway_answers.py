"""How the relay reads the gateway's answers (pure logic; the same answers, from the real gateway
2026.9.6 and the stub, are checked end to end in tests/contract)."""

from __future__ import annotations

import orjson
import pytest

from relay.delivery import rpc
from relay.delivery.answers import Answer, classify, is_configuration
from relay.delivery.send_and_tool import tool_status
from relay.protocol import policy

DISABLED = orjson.dumps(
    {
        "ok": False,
        "error": "sessionKey is disabled for externally supplied hook payload values; "
        "set hooks.allowRequestSessionKey=true to enable",
    }
).decode()


def test_send_error_codes_map_onto_delivery_statuses() -> None:
    queued = rpc.error_result(
        {
            "code": "UNAVAILABLE",
            "message": "OutboundDeliveryError: no token",
            "details": {"code": "OUTBOUND_DELIVERY_QUEUED"},
        }
    )
    assert queued.status == 202 and "handed over" in queued.text  # accepted: never resent
    assert classify(Answer(queued.status, queued.text)) == "delivered"
    # retryable: false is final for every code, not only INVALID_REQUEST.
    final = rpc.error_result({"code": "UNAVAILABLE", "message": "partial delivery", "retryable": False})
    assert final.status == 422 and classify(Answer(final.status, final.text)) == "dead"
    assert rpc.error_result({"code": "UNAVAILABLE", "message": "busy"}).status == 503
    # Auth and scope refusals pause the gateway; channel-level refusals dead-letter the action.
    scope = rpc.error_result(
        {
            "code": "INVALID_REQUEST",
            "message": "missing scope: operator.write",
            "details": {"code": "MISSING_SCOPE"},
        }
    )
    assert scope.status == 403 and is_configuration(Answer(scope.status, scope.text))
    assert rpc.error_result({"code": "FORBIDDEN", "message": "missing scope"}).status == 403
    token = rpc.error_result({"code": "INVALID_REQUEST", "message": "unauthorized: gateway token mismatch"})
    assert token.status == 401
    channel = rpc.error_result({"code": "INVALID_REQUEST", "message": "unsupported channel: whatsapp"})
    assert channel.status == 400 and classify(Answer(channel.status, channel.text)) == "dead"
    mismatch = rpc.error_result(
        {"code": "INVALID_REQUEST", "message": "protocol mismatch", "details": {"code": "PROTOCOL_MISMATCH"}},
        handshake=True,
    )
    assert mismatch.status == 401  # a handshake refusal is configuration, whatever its code


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (404, "not_found", 422),
        (403, "tool_call_blocked", 422),
        (500, "tool_error", 422),
        (400, "tool_error", 400),
        (401, "unauthorized", 401),
    ],
)
def test_tool_refusals_are_this_actions_alone(status: int, error_type: str, expected: int) -> None:
    text = orjson.dumps({"ok": False, "error": {"type": error_type, "message": "m"}}).decode()
    assert tool_status(status, text) == expected


def test_bare_tool_answers_keep_their_meaning() -> None:
    assert tool_status(404, "Not Found") == 404  # no route: configuration
    assert tool_status(500, "Internal Server Error") == 500  # not the tool: retried
    assert tool_status(403, "Forbidden") == 403


@pytest.mark.parametrize(
    ("message", "setting"),
    [
        (
            "sessionKey is disabled for externally supplied hook payload values; "
            "set hooks.allowRequestSessionKey=true to enable",
            'hooks.allowRequestSessionKey: true and hooks.allowedSessionKeyPrefixes: ["hook:"]',
        ),
        ("sessionKey must start with one of: agent:", "hooks.allowedSessionKeyPrefixes"),
        ("agentId is not allowed by hooks.allowedAgentIds", "hooks.allowedAgentIds"),
        ("agentId is required when multiple agents are configured", "set agentId on the relay mapping"),
    ],
)
def test_policy_refusals_pause_and_name_the_setting(message: str, setting: str) -> None:
    text = orjson.dumps({"ok": False, "error": message}).decode()
    hint = policy.refusal_hint(400, text)
    assert hint is not None and setting in hint
    assert is_configuration(Answer(400, text)) and classify(Answer(400, text)) == "retry"
    assert policy.gateway_message(text) == message
    # The same text with another status, or another 400, is not a policy refusal.
    assert policy.refusal_hint(500, text) is None
    assert classify(Answer(400, '{"ok":false,"error":"message required"}')) == "dead"


def test_the_session_key_probe_reads_each_policy() -> None:
    assert policy.read_probe(400, DISABLED)[0] is False
    allowed_any = '{"ok":false,"error":"' + policy.PERSISTENT_NEEDS_PREFIXES + '"}'
    assert policy.read_probe(400, allowed_any)[0] is True
    assert (
        policy.read_probe(400, '{"ok":false,"error":"sessionKey must start with one of: hook:, cron:"}')[0]
        is True
    )
    only_other = policy.read_probe(400, '{"ok":false,"error":"sessionKey must start with one of: agent:"}')
    assert only_other[0] is False and "agent:" in only_other[1]
    assert policy.read_probe(401, "Unauthorized")[0] is None
    body = policy.probe_body()
    assert body["sessionMode"] == "persistent" and not str(body["sessionKey"]).startswith("hook:")


def test_a_mapping_may_retry_tools_that_threw() -> None:
    from relay.protocol.actions import ToolAction
    from relay.protocol.event import Event
    from relay.protocol.mapping import MappingConfig, base_fields, merge

    thrown = orjson.dumps(
        {"ok": False, "error": {"type": "tool_error", "message": "tool execution failed"}}
    ).decode()
    assert tool_status(500, thrown) == 422  # by default a tool that ran is not run again
    assert tool_status(500, thrown, retry_tool_errors=True) == 503  # opted in: retried
    assert tool_status(403, '{"error":{"type":"tool_call_blocked"}}', retry_tool_errors=True) == 422
    mapping = MappingConfig.model_validate(
        {"action": "tool", "tool": "sessions_list", "retryToolErrors": True}
    )
    event = Event(source="s", path="s", payload={}, headers={}, query={})
    action = merge(base_fields(mapping, event), {})
    assert isinstance(action, ToolAction) and action.body()["retryToolErrors"] is True
    plain = merge(base_fields(MappingConfig.model_validate({"action": "tool", "tool": "t"}), event), {})
    assert "retryToolErrors" not in plain.body()
