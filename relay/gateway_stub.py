"""A small OpenClaw-compatible gateway for tests and demos (`relay gateway-stub`).

It follows the hooks contract of a real gateway (OPENCLAW_CONTRACT.md): the same paths, token
rules, check order, answers, Idempotency-Key dedupe and 256 KiB body limit, and it can model the
time a gateway takes to admit an agent run. It records every request it handled, and can be told
to fail, so tests can see exactly what the relay sent:

    GET  /_stub/requests          what it received (runs, replays, wakes, refusals)
    POST /_stub/control           {"fail": [503, 500], "retry_after": 1, "admit_delay": 1.5,
                                   "hang": 2, "hang_seconds": 20}  (admit the next 2 runs, answer late)
                                  {"refuse_all": true}  (503 to every hook request, as while shutting down)
                                  {"ws_drop": 1}  (handle the next `send` RPC, then close without answering)
    POST /_stub/reset             forget requests and idempotency keys (like a restart)

Like a gateway in its default configuration, it refuses a request `sessionKey` with the gateway's
own 400 unless started with `--allow-request-session-key` (and `--session-key-prefix hook:` to
also enforce `hooks.allowedSessionKeyPrefixes`); `POST /_stub/control {"session_policy": {...}}`
changes that at run time, as the gateway hot-reloads `hooks.*`. tests/contract runs the same
cases against it and the real gateway (openclaw 2026.9.6), so it answers as that gateway does.

It also has the gateway's other doors (docs/gateways.md, "The stub"): the WebSocket RPC at `/` (the `connect`
handshake needs protocol 4 in the client's range and checks the gateway token; `send` requests are
recorded with path "send" and deduped by idempotencyKey), and `POST /tools/invoke` (recorded with
path "tools/invoke"). With no `--channel`, `send` answers as a gateway with no channel configured:
no channel → INVALID_REQUEST "Channel is required", `telegram` (the one bundled channel plugin) →
UNAVAILABLE with details.code OUTBOUND_DELIVERY_QUEUED, anything else → "unsupported channel";
a `--channel NAME` (or `--channel any`) is configured and delivers. `/tools/invoke` runs the tools
a default gateway offers over HTTP (sessions_list, session_status, agents_list) and answers 404
not_found for others (its deny list, unknown names); `{"block_tools": [...]}` makes a tool 403
tool_call_blocked and `{"throw_tools": [...]}` 500 tool_error. Injected `fail` statuses apply to
both doors: a `send` answers 400 as INVALID_REQUEST and anything else as UNAVAILABLE, uncached.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

BODY_LIMIT = 256 * 1024
AUTH_FAILURE_LIMIT = 20
AUTH_FAILURE_WINDOW = 60.0


@dataclass
class StubState:
    token: str
    hooks_path: str = "/hooks"
    admit_delay: float = 0.0
    fail: deque[int] = field(default_factory=deque)
    retry_after: int | None = None
    refuse_all: bool = False  # answer 503 to every hook request (a gateway shutting down)
    hang: int = 0  # the next `hang` agent runs are admitted but answered only after hang_seconds
    hang_seconds: float = 20.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    idempotency: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (body digest, runId)
    auth_failures: dict[str, deque[float]] = field(default_factory=dict)
    record_path: str | None = None
    auth_token: str | None = None  # gateway.auth.token (WebSocket RPC, /tools/invoke); None: `token`
    ws_drop: int = 0  # the next `ws_drop` send RPCs are handled, then the socket closes unanswered
    send_dedupe: dict[str, dict[str, Any]] = field(default_factory=dict)  # idempotencyKey -> payload
    allow_request_session_key: bool = False  # hooks.allowRequestSessionKey (the gateway's default: false)
    session_key_prefixes: list[str] | None = None  # hooks.allowedSessionKeyPrefixes
    channels: frozenset[str] = frozenset()  # configured channels; "any": every channel delivers
    block_tools: set[str] = field(default_factory=set)
    throw_tools: set[str] = field(default_factory=set)

    @property
    def gateway_token(self) -> str:
        return self.auth_token or self.token

    def record(self, entry: dict[str, Any]) -> None:
        entry["at"] = time.time()
        self.requests.append(entry)
        if self.record_path:
            with open(self.record_path, "a") as fh:
                fh.write(json.dumps(entry) + "\n")


def _presented(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    return request.headers.get("x-openclaw-token") or None


PROTOCOL_VERSION = 4  # the gateway 2026.9.6: PROTOCOL_VERSION = MIN_CLIENT_PROTOCOL_VERSION = 4
# Channel plugins bundled with openclaw 2026.9.6 that `send` knows without configuration.
BUNDLED_CHANNELS = frozenset({"telegram"})
# Tools a default gateway runs over HTTP with only the gateway token (checked: tests/contract).
HTTP_TOOLS = frozenset({"sessions_list", "session_status", "agents_list"})
SESSION_KEY_DISABLED = (
    "sessionKey is disabled for externally supplied hook payload values; "
    "set hooks.allowRequestSessionKey=true to enable"
)


def session_key_problem(state: StubState, payload: dict[str, Any], *, persistent: bool) -> str | None:
    """The gateway's `resolveHookSessionKey` (and the persistent-mode check after it)."""
    raw = payload.get("sessionKey")
    key = raw.strip() if isinstance(raw, str) else ""
    if key:
        if not state.allow_request_session_key:
            return SESSION_KEY_DISABLED
        prefixes = state.session_key_prefixes
        if prefixes and not any(key.lower().startswith(p) for p in prefixes):
            return f"sessionKey must start with one of: {', '.join(prefixes)}"
    if persistent and not state.session_key_prefixes:
        return "hooks.allowedSessionKeyPrefixes is required when direct hook sessionMode is persistent"
    return None


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


def _session_field_problem(payload: dict[str, Any]) -> str | None:
    raw = payload.get("sessionKey")
    if raw is not None and not (isinstance(raw, str) and raw.strip()):
        return "sessionKey must be a non-empty string"
    return None


def create_stub_app(state: StubState) -> Starlette:
    base = "/" + state.hooks_path.strip("/")

    async def hooks(request: Request) -> Response:
        sub = request.url.path[len(base) :].strip("/")
        if "token" in request.query_params:
            return JSONResponse({"ok": False, "error": "token in query string is not allowed"}, 400)
        if request.method != "POST":
            return PlainTextResponse("Method Not Allowed", 405, headers={"Allow": "POST"})
        client = request.client.host if request.client else "?"
        presented = _presented(request)
        if presented is None or not hmac.compare_digest(presented.encode(), state.token.encode()):
            failures = state.auth_failures.setdefault(client, deque())
            now = time.monotonic()
            while failures and now - failures[0] > AUTH_FAILURE_WINDOW:
                failures.popleft()
            failures.append(now)
            state.record({"path": sub, "status": 401, "refused": "token"})
            if len(failures) > AUTH_FAILURE_LIMIT:
                return PlainTextResponse("Too Many Requests", 429, headers={"Retry-After": "60"})
            return PlainTextResponse("Unauthorized", 401)
        state.auth_failures.pop(client, None)
        if not sub:
            return PlainTextResponse("Not Found", 404)
        body = await request.body()
        if len(body) > BODY_LIMIT:
            state.record({"path": sub, "status": 413, "refused": "too large"})
            return JSONResponse({"ok": False, "error": "payload too large"}, 413)
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return JSONResponse({"ok": False, "error": "invalid JSON"}, 400)
        if not isinstance(payload, dict):
            return JSONResponse({"ok": False, "error": "invalid JSON"}, 400)
        if sub not in ("wake", "agent"):
            return PlainTextResponse("Not Found", 404)

        key = (
            request.headers.get("idempotency-key")
            or request.headers.get("x-openclaw-idempotency-key")
            or payload.get("idempotencyKey")
        )
        if state.refuse_all:
            return JSONResponse({"ok": False, "error": "shutting down"}, 503)
        if state.fail:
            status = state.fail.popleft()
            state.record({"path": sub, "status": status, "injected": True, "key": key, "body": payload})
            headers = {"Retry-After": str(state.retry_after)} if state.retry_after is not None else None
            return JSONResponse({"ok": False, "error": f"injected failure {status}"}, status, headers=headers)

        if sub == "wake":
            text = payload.get("text")
            if not isinstance(text, str) or not text.strip():
                return JSONResponse({"ok": False, "error": "text required"}, 400)
            problem = _session_field_problem(payload)
            if problem is None and payload.get("mode") == "next-heartbeat" and payload.get("sessionKey"):
                problem = "sessionKey requires mode=now"
            problem = problem or session_key_problem(state, payload, persistent=False)
            if problem:
                state.record({"path": "wake", "status": 400, "refused": problem, "body": payload})
                return JSONResponse({"ok": False, "error": problem}, 400)
            mode = payload.get("mode") if payload.get("mode") in ("now", "next-heartbeat") else "now"
            state.record({"path": "wake", "status": 200, "key": key, "body": payload})
            return JSONResponse({"ok": True, "mode": mode, "eventOutcome": "queued"})

        message = payload.get("message")
        if not isinstance(message, str) or not message.strip():
            return JSONResponse({"ok": False, "error": "message required"}, 400)
        mode = payload.get("sessionMode")
        problem = _session_field_problem(payload)
        if problem is None and mode is not None and mode not in ("isolated", "persistent"):
            problem = "sessionMode must be isolated or persistent"
        if problem is None and mode == "persistent" and not payload.get("sessionKey"):
            problem = "sessionKey is required when sessionMode is persistent"
        problem = problem or session_key_problem(state, payload, persistent=mode == "persistent")
        if problem:
            state.record({"path": "agent", "status": 400, "refused": problem, "body": payload})
            return JSONResponse({"ok": False, "error": problem}, 400)
        digest = json.dumps(payload, sort_keys=True)
        if key and key in state.idempotency and state.idempotency[key][0] == digest:
            run_id = state.idempotency[key][1]
            state.record(
                {
                    "path": "agent",
                    "status": 200,
                    "key": key,
                    "runId": run_id,
                    "replay": True,
                    "body": payload,
                    "traceparent": request.headers.get("traceparent"),
                }
            )
            return JSONResponse({"ok": True, "runId": run_id})
        run_id = str(uuid.uuid4())
        if key:
            state.idempotency[key] = (digest, run_id)
        # The run is admitted (it exists) before the answer is sent, as on a real gateway.
        state.record(
            {
                "path": "agent",
                "status": 200,
                "key": key,
                "runId": run_id,
                "replay": False,
                "body": payload,
                "traceparent": request.headers.get("traceparent"),
            }
        )
        delay = state.admit_delay
        if state.hang > 0:
            state.hang -= 1
            delay = state.hang_seconds
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse({"ok": True, "runId": run_id})

    async def tools_invoke(request: Request) -> Response:
        """The gateway's `handleToolsInvokeHttpRequest`: bearer token, `{tool, action?, args?,
        sessionKey?}`, answer `{"ok": true, "result": ...}`."""
        if request.method != "POST":
            return PlainTextResponse("Method Not Allowed", 405, headers={"Allow": "POST"})
        auth = request.headers.get("authorization", "")
        presented = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not presented or not hmac.compare_digest(presented.encode(), state.gateway_token.encode()):
            state.record({"path": "tools/invoke", "status": 401, "refused": "token"})
            return JSONResponse({"error": {"message": "Unauthorized", "type": "unauthorized"}}, 401)
        key = request.headers.get("idempotency-key")
        try:
            payload = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"error": {"message": "invalid JSON", "type": "invalid_request_error"}}, 400)
        if not isinstance(payload, dict):
            payload = {}
        raw_tool = payload.get("tool")
        tool = raw_tool.strip() if isinstance(raw_tool, str) else ""
        if not tool:
            return JSONResponse(
                {"ok": False, "error": {"type": "invalid_request", "message": "tools.invoke requires name"}},
                400,
            )
        if state.fail:
            status = state.fail.popleft()
            state.record(
                {"path": "tools/invoke", "status": status, "injected": True, "key": key, "body": payload}
            )
            return JSONResponse(
                {"ok": False, "error": {"type": "tool_error", "message": f"injected failure {status}"}},
                status,
            )
        args = payload.get("args") if isinstance(payload.get("args"), dict) else {}
        refusal: tuple[int, str, str] | None = None
        if tool not in HTTP_TOOLS:  # the HTTP deny list (sessions_send, ...) and unknown names
            refusal = (404, "not_found", f"Tool not available: {tool}")
        elif tool in state.block_tools:
            refusal = (403, "tool_call_blocked", f"{tool} blocked by policy")
        elif tool in state.throw_tools:
            refusal = (500, "tool_error", "tool execution failed")
        if refusal:
            status, kind, message = refusal
            state.record(
                {"path": "tools/invoke", "status": status, "refused": kind, "key": key, "body": payload}
            )
            return JSONResponse({"ok": False, "error": {"type": kind, "message": message}}, status)
        state.record({"path": "tools/invoke", "status": 200, "key": key, "body": payload})
        result = {
            "content": [{"type": "text", "text": f"stub ran {tool}"}],
            "details": {"tool": tool, "args": args},
        }
        return JSONResponse({"ok": True, "result": result})

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

    async def requests(request: Request) -> Response:
        return JSONResponse(state.requests)

    async def control(request: Request) -> Response:
        data = await request.json()
        if "fail" in data:
            state.fail = deque(int(s) for s in data["fail"])
        if "retry_after" in data:
            state.retry_after = data["retry_after"]
        if "refuse_all" in data:
            state.refuse_all = bool(data["refuse_all"])
        if "hang" in data:
            state.hang = int(data["hang"])
            state.hang_seconds = float(data.get("hang_seconds", state.hang_seconds))
        if "ws_drop" in data:
            state.ws_drop = int(data["ws_drop"])
        if "session_policy" in data:  # like the gateway's hot reload of hooks.*
            policy = data["session_policy"] or {}
            state.allow_request_session_key = bool(policy.get("allowRequestSessionKey", False))
            prefixes = policy.get("allowedSessionKeyPrefixes")
            state.session_key_prefixes = [str(p).lower() for p in prefixes] if prefixes else None
        if "block_tools" in data:
            state.block_tools = set(data["block_tools"])
        if "throw_tools" in data:
            state.throw_tools = set(data["throw_tools"])
        if "admit_delay" in data:
            state.admit_delay = float(data["admit_delay"])
        return JSONResponse({"ok": True})

    async def reset(request: Request) -> Response:
        state.requests.clear()
        state.idempotency.clear()
        state.send_dedupe.clear()
        state.fail.clear()
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/_stub/requests", requests),
            Route("/_stub/control", control, methods=["POST"]),
            Route("/_stub/reset", reset, methods=["POST"]),
            Route("/readyz", readyz),
            Route("/tools/invoke", tools_invoke, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
            WebSocketRoute("/", rpc),
            Route(base, hooks, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
            Route(base + "/{rest:path}", hooks, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]
    )
