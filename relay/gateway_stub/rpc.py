"""The stub's WebSocket RPC at `/`: the `connect` handshake (protocol, gateway token) and `send`."""

from __future__ import annotations

import hmac
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from relay.gateway_stub.state import StubState

PROTOCOL_VERSION = 4  # the gateway 2026.9.6: PROTOCOL_VERSION = MIN_CLIENT_PROTOCOL_VERSION = 4
# Channel plugins bundled with openclaw 2026.9.6 that `send` knows without configuration.
BUNDLED_CHANNELS = frozenset({"telegram"})


# SendParamsSchema (additionalProperties: false): `to` and `idempotencyKey` required.
SEND_FIELDS = frozenset(
    {
        "to",
        "message",
        "mediaUrl",
        "mediaUrls",
        "gifPlayback",
        "channel",
        "accountId",
        "agentId",
        "replyToId",
        "threadId",
        "silent",
        "sessionKey",
        "idempotencyKey",
    }
)


def _rpc_error(req_id: str, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "res", "id": req_id, "ok": False, "error": {"code": code, "message": message, **extra}}


def _send_params_problem(params: Any) -> str | None:
    if not isinstance(params, dict):
        return "params must be an object"
    unknown = sorted(set(params) - SEND_FIELDS)
    if unknown:
        return f"unexpected property {unknown[0]!r}"
    for name in ("to", "idempotencyKey"):
        if not isinstance(params.get(name), str) or not params[name]:
            return f"{name} is required"
    message = params.get("message")
    if (
        not (isinstance(message, str) and message.strip())
        and not params.get("mediaUrl")
        and not params.get("mediaUrls")
    ):
        return "text or media is required"
    return None


def rpc_endpoint(state: StubState) -> Callable[[WebSocket], Awaitable[None]]:
    """The WebSocket handler: one connection, its handshake, then `send` requests until it closes."""

    async def rpc(ws: WebSocket) -> None:
        await ws.accept()
        conn_id = str(uuid.uuid4())
        await ws.send_json(
            {
                "type": "event",
                "event": "connect.challenge",
                "payload": {"nonce": str(uuid.uuid4()), "ts": int(time.time() * 1000)},
            }
        )
        try:
            if not await _rpc_handshake(ws, conn_id):
                return
            while True:
                frame = await ws.receive_json()
                if not isinstance(frame, dict) or frame.get("type") != "req":
                    continue
                req_id = str(frame.get("id"))
                if frame.get("method") != "send":
                    await ws.send_json(
                        _rpc_error(req_id, "INVALID_REQUEST", f"unknown method: {frame.get('method')}")
                    )
                    continue
                answer = _rpc_send(req_id, frame.get("params"))
                if answer is None:
                    await ws.close(1011)  # handled, then "lost": the client sees no answer
                    return
                await ws.send_json(answer)
        except WebSocketDisconnect:
            return

    async def _rpc_handshake(ws: WebSocket, conn_id: str) -> bool:
        frame = await ws.receive_json()
        if not isinstance(frame, dict) or frame.get("type") != "req" or frame.get("method") != "connect":
            await ws.close(1008, "invalid handshake: first request must be connect")
            return False
        req_id = str(frame.get("id"))
        raw_params = frame.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        low, high = params.get("minProtocol", 0), params.get("maxProtocol", 0)
        if (
            not isinstance(low, int)
            or not isinstance(high, int)
            or low > PROTOCOL_VERSION
            or high < PROTOCOL_VERSION
        ):
            state.record({"path": "connect", "status": 400, "refused": "protocol"})
            await ws.send_json(
                _rpc_error(
                    req_id,
                    "INVALID_REQUEST",
                    "protocol mismatch",
                    details={
                        "code": "PROTOCOL_MISMATCH",
                        "clientMinProtocol": low,
                        "clientMaxProtocol": high,
                        "expectedProtocol": PROTOCOL_VERSION,
                    },
                )
            )
            await ws.close(1002, "protocol mismatch")
            return False
        raw_auth = params.get("auth")
        auth: dict[str, Any] = raw_auth if isinstance(raw_auth, dict) else {}
        token = auth["token"] if isinstance(auth.get("token"), str) else ""
        if not token or not hmac.compare_digest(token.encode(), state.gateway_token.encode()):
            reason = "token_mismatch" if token else "token_missing"
            message = f"unauthorized: gateway token {reason.split('_')[1]} (provide gateway auth token)"
            state.record({"path": "connect", "status": 401, "refused": "token"})
            await ws.send_json(
                _rpc_error(
                    req_id,
                    "INVALID_REQUEST",
                    message,
                    details={"code": f"AUTH_{reason.upper()}", "authReason": reason},
                )
            )
            await ws.close(1008, message[:120])
            return False
        await ws.send_json(
            {
                "type": "res",
                "id": req_id,
                "ok": True,
                "payload": {
                    "type": "hello-ok",
                    "protocol": PROTOCOL_VERSION,
                    "server": {"version": "stub", "connId": conn_id},
                    "features": {"methods": ["send"], "events": ["tick"]},
                    "snapshot": {},
                    "policy": {
                        "maxPayload": 25 * 1024 * 1024,
                        "maxBufferedBytes": 50 * 1024 * 1024,
                        "tickIntervalMs": 30_000,
                    },
                },
            }
        )
        return True

    def _rpc_send(req_id: str, params: Any) -> dict[str, Any] | None:
        """Like the gateway's `send` handler; None: drop the connection instead of answering."""
        problem = _send_params_problem(params)
        if problem:
            return _rpc_error(req_id, "INVALID_REQUEST", f"invalid send params: {problem}")
        key = params["idempotencyKey"]
        if key in state.send_dedupe:  # `context.dedupe.get("send:" + idem)`: the cached answer
            payload = state.send_dedupe[key]
            state.record(
                {"path": "send", "status": 200, "key": key, "runId": key, "replay": True, "body": params}
            )
            return {"type": "res", "id": req_id, "ok": True, "payload": payload}
        if state.refuse_all:
            return _rpc_error(req_id, "UNAVAILABLE", "shutting down", retryable=True)
        if state.fail:
            status = state.fail.popleft()
            state.record({"path": "send", "status": status, "injected": True, "key": key, "body": params})
            if status == 400:
                return _rpc_error(req_id, "INVALID_REQUEST", f"injected failure {status}")
            return _rpc_error(req_id, "UNAVAILABLE", f"injected failure {status}")
        channel = params.get("channel") if isinstance(params.get("channel"), str) else ""
        configured = "any" in state.channels or channel in state.channels
        if not channel and not state.channels:
            message = "Error: Channel is required (no configured channels detected)."
            state.record({"path": "send", "status": 400, "refused": "channel", "key": key, "body": params})
            return _rpc_error(req_id, "INVALID_REQUEST", message)
        if channel and not configured and channel not in BUNDLED_CHANNELS:
            state.record({"path": "send", "status": 400, "refused": "channel", "key": key, "body": params})
            return _rpc_error(req_id, "INVALID_REQUEST", f"unsupported channel: {channel}")
        if channel and not configured:  # a bundled plugin without an account: queued for retries
            state.record({"path": "send", "status": 202, "queued": True, "key": key, "body": params})
            return _rpc_error(
                req_id,
                "UNAVAILABLE",
                f"OutboundDeliveryError: {channel} account not configured",
                details={"code": "OUTBOUND_DELIVERY_QUEUED"},
            )
        payload = {"runId": key, "messageId": str(uuid.uuid4()), "channel": channel or "last"}
        state.send_dedupe[key] = payload
        state.record(
            {"path": "send", "status": 200, "key": key, "runId": key, "replay": False, "body": params}
        )
        if state.ws_drop > 0:
            state.ws_drop -= 1
            return None
        return {"type": "res", "id": req_id, "ok": True, "payload": payload}

    return rpc
