"""The stub's HTTP doors: `/hooks/agent` and `/hooks/wake` (the hooks contract) and `POST /tools/invoke`."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from relay.gateway_stub.state import StubState

Endpoint = Callable[[Request], Awaitable[Response]]

BODY_LIMIT = 256 * 1024
AUTH_FAILURE_LIMIT = 20
AUTH_FAILURE_WINDOW = 60.0


def _presented(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return auth[7:].strip()
    return request.headers.get("x-openclaw-token") or None


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


def _session_field_problem(payload: dict[str, Any]) -> str | None:
    raw = payload.get("sessionKey")
    if raw is not None and not (isinstance(raw, str) and raw.strip()):
        return "sessionKey must be a non-empty string"
    return None


def hooks_endpoint(state: StubState, base: str) -> Endpoint:
    """The handler of `base` and everything under it, as the gateway's hooks handler answers."""

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

    return hooks


def tools_endpoint(state: StubState) -> Endpoint:
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

    return tools_invoke
