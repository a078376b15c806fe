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

It also has the gateway's other doors (docs/gateways.md, "The stub"): the WebSocket RPC at
`/` (the `connect` handshake needs protocol 4 in the client's range and checks the gateway token;
`send` requests are recorded with path "send" and deduped by idempotencyKey), and
`POST /tools/invoke` (recorded with path "tools/invoke"). With no `--channel`, `send` answers as
a gateway with no channel configured: no channel → INVALID_REQUEST "Channel is required",
`telegram` (the one bundled channel plugin) → UNAVAILABLE with details.code
OUTBOUND_DELIVERY_QUEUED, anything else → "unsupported channel";
a `--channel NAME` (or `--channel any`) is configured and delivers. `/tools/invoke` runs the tools
a default gateway offers over HTTP (sessions_list, session_status, agents_list) and answers 404
not_found for others (its deny list, unknown names); `{"block_tools": [...]}` makes a tool 403
tool_call_blocked and `{"throw_tools": [...]}` 500 tool_error. Injected `fail` statuses apply to
both doors: a `send` answers 400 as INVALID_REQUEST and anything else as UNAVAILABLE, uncached.
"""

from __future__ import annotations

from collections import deque

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from relay.gateway_stub.hooks import hooks_endpoint, tools_endpoint
from relay.gateway_stub.rpc import rpc_endpoint
from relay.gateway_stub.state import StubState

__all__ = ["StubState", "create_stub_app"]


def create_stub_app(state: StubState) -> Starlette:
    base = "/" + state.hooks_path.strip("/")
    hooks, tools_invoke, rpc = hooks_endpoint(state, base), tools_endpoint(state), rpc_endpoint(state)

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
