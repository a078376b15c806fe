"""A small OpenClaw-compatible gateway for tests and demos (`relay gateway-stub`).

It follows the hooks contract of a real gateway (OPENCLAW_CONTRACT.md): the same paths, token
rules, check order, answers, Idempotency-Key dedupe and 256 KiB body limit, and it can model the
time a gateway takes to admit an agent run. It records every request it handled, and can be told
to fail, so tests can see exactly what the relay sent:

    GET  /_stub/requests          what it received (runs, replays, wakes, refusals)
    POST /_stub/control           {"fail": [503, 500], "retry_after": 1, "admit_delay": 1.5,
                                   "hang": 2, "hang_seconds": 20}  (admit the next 2 runs, answer late)
                                  {"refuse_all": true}  (503 to every hook request, as while shutting down)
    POST /_stub/reset             forget requests and idempotency keys (like a restart)
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
from starlette.routing import Route

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

        key = (request.headers.get("idempotency-key") or request.headers.get("x-openclaw-idempotency-key")
               or payload.get("idempotencyKey"))  # fmt: skip
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
            mode = payload.get("mode") if payload.get("mode") in ("now", "next-heartbeat") else "now"
            state.record({"path": "wake", "status": 200, "key": key, "body": payload})
            return JSONResponse({"ok": True, "mode": mode, "eventOutcome": "queued"})

        message = payload.get("message")
        if not isinstance(message, str) or not message.strip():
            return JSONResponse({"ok": False, "error": "message required"}, 400)
        digest = json.dumps(payload, sort_keys=True)
        if key and key in state.idempotency and state.idempotency[key][0] == digest:
            run_id = state.idempotency[key][1]
            state.record({"path": "agent", "status": 200, "key": key, "runId": run_id, "replay": True,
                          "body": payload})  # fmt: skip
            return JSONResponse({"ok": True, "runId": run_id})
        run_id = str(uuid.uuid4())
        if key:
            state.idempotency[key] = (digest, run_id)
        # The run is admitted (it exists) before the answer is sent, as on a real gateway.
        state.record({"path": "agent", "status": 200, "key": key, "runId": run_id, "replay": False,
                      "body": payload})  # fmt: skip
        delay = state.admit_delay
        if state.hang > 0:
            state.hang -= 1
            delay = state.hang_seconds
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse({"ok": True, "runId": run_id})

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
        if "admit_delay" in data:
            state.admit_delay = float(data["admit_delay"])
        return JSONResponse({"ok": True})

    async def reset(request: Request) -> Response:
        state.requests.clear()
        state.idempotency.clear()
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
            Route(base, hooks, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
            Route(base + "/{rest:path}", hooks, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ]
    )
