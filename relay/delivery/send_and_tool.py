"""The gateway's other doors (docs/gateways.md): `send` through the WebSocket RPC, `tool` through
`POST /tools/invoke`. Called by `relay.delivery.attempt.send` for those kinds; each returns the same
`Answer` as a hooks POST, so the delivery job's idempotency, records and retries apply unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import orjson

from relay.delivery import rpc
from relay.delivery.answers import Answer, parse_retry_after

if TYPE_CHECKING:
    from relay.config import GatewayConfig

DOORS = frozenset({"send", "tool"})
TOOLS_PATH = "/tools/invoke"


def auth_token(gw: GatewayConfig) -> str | None:
    """gateway.auth.token: `auth_token`, else the hooks `token`."""
    secret = gw.auth_token or gw.token
    return secret.get_secret_value() if secret else None


def send(http: httpx.Client, kind: str, idempotency_key: str, body: bytes, gw: GatewayConfig) -> Answer:
    if kind == "send":
        return send_message(gw, idempotency_key, body)
    return invoke_tool(http, gw, idempotency_key, body)


def send_message(gw: GatewayConfig, idempotency_key: str, body: bytes) -> Answer:
    """RPC `send` with the action's idempotency key: the gateway answers a repeat from its cache."""
    params = rpc.send_params(orjson.loads(body), idempotency_key)
    result = rpc.call(gw.url, auth_token(gw), "send", params, timeout=gw.timeout_seconds)
    return Answer(result.status, result.text, result.retry_after, result.run_id)


# `/tools/invoke` error types (gateway 2026.9.6, tools-invoke-shared) that refuse this one call for
# good: a tool its policy does not offer (404), a call its policy or a hook blocked (403), a tool
# that ran and threw (500: running it again would repeat its side effects).
REFUSED_TOOL_CALL = frozenset({"not_found", "tool_call_blocked", "tool_error"})


RETRY_FLAG = "retryToolErrors"  # relay-only body field (ToolAction.retry_tool_errors), never sent


def tool_status(status: int, text: str, retry_tool_errors: bool = False) -> int:
    """The delivery status of a `/tools/invoke` answer. A typed refusal of this call is 422 (dead
    letter, replay after fixing the policy), never the 403/404 that pause the whole gateway (a
    bare 404 is a missing route: configuration) nor a 500 that is retried — unless the mapping
    set `retryToolErrors: true`, which retries a 500 tool_error."""
    if status in (403, 404, 500):
        try:
            error = (orjson.loads(text) or {}).get("error")
        except (ValueError, AttributeError):
            return status
        if isinstance(error, dict) and error.get("type") in REFUSED_TOOL_CALL:
            return 503 if status == 500 and retry_tool_errors else 422
    return status


def invoke_tool(http: httpx.Client, gw: GatewayConfig, idempotency_key: str, body: bytes) -> Answer:
    """`POST /tools/invoke` with the gateway token. The gateway has no idempotency for tools: the
    relay's delivered record is the only guard (a lost answer means the tool may run again)."""
    payload = orjson.loads(body)
    retry_tool_errors = False
    if isinstance(payload, dict) and RETRY_FLAG in payload:  # the relay's own field: not for the gateway
        retry_tool_errors = payload.pop(RETRY_FLAG) is True
        body = orjson.dumps(payload)
    headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
    token = auth_token(gw)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    timeout = httpx.Timeout(gw.timeout_seconds, connect=5.0)
    try:
        response = http.post(f"{gw.url}{TOOLS_PATH}", content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:500])
    text = response.text[:2000]
    return Answer(
        tool_status(response.status_code, text, retry_tool_errors),
        text,
        parse_retry_after(response.headers.get("retry-after")),
    )
