"""A minimal client of the OpenClaw gateway's WebSocket RPC: connect, authenticate, one request.

The protocol (docs/gateways.md; from OpenClaw's source, checked against the real gateway):

    server → {"type": "event", "event": "connect.challenge", "payload": {"nonce": ..., "ts": ...}}
    client → {"type": "req", "id": "1", "method": "connect", "params": {"minProtocol": 3, "maxProtocol": 4,
              "client": {...}, "role": "operator", "scopes": [...], "auth": {"token": <gateway.auth.token>}}}
    server → {"type": "res", "id": "1", "ok": true, "payload": {"type": "hello-ok", "protocol": 4, ...}}
             or ok: false, error {"code": "INVALID_REQUEST", "message": "unauthorized: ..."}, then close 1008
    client → {"type": "req", "id": "2", "method": "send",
              "params": {"to": ..., "message": ..., "idempotencyKey": ...}}
    server → {"type": "res", "id": "2", "ok": true, "payload": {"runId": <idempotencyKey>, "messageId": ...}}
             or ok: false, error {"code", "message", "details"?, "retryable"?, "retryAfterMs"?}

Other frames (events such as `tick` or `presence`) may arrive in between and are skipped.

Checked against the real gateway 2026.9.6 (tests/contract): it speaks protocol 4 and refuses a
client range without 4 (`protocol mismatch`, close 1002); the previous release spoke 3 (not run
here). The client offers 3..4 and reads the protocol the server picked from `hello-ok`.

`call` returns an `RpcResult` whose `status` is HTTP-like, so the delivery job classifies it as it
does a hooks answer (`error_result`): None = no answer (refused, reset, timed out: retry behind
the circuit); 401/403 = configuration (a refused token, handshake or scope: pause the gateway);
400/422 = the gateway refused this request for good (INVALID_REQUEST, or `retryable: false` on any
code: dead letter); 202 = `UNAVAILABLE` with `details.code OUTBOUND_DELIVERY_QUEUED`, which means
the gateway has queued the message and owns its retries (handed over: never resend it); 503 = any
other error (retry with backoff, same idempotencyKey).
"""

from __future__ import annotations

import itertools
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.sync.client import ClientConnection, connect

# The range offered in `connect`: 2026.9.6 speaks 4 only; 3 keeps the previous release reachable.
MIN_PROTOCOL = 3
MAX_PROTOCOL = 4
PROTOCOL_VERSION = MAX_PROTOCOL
CLIENT_ID = "gateway-client"  # GATEWAY_CLIENT_IDS.GATEWAY_CLIENT
CLIENT_MODE = "backend"  # GATEWAY_CLIENT_MODES.BACKEND
ROLE = "operator"
SCOPES = ("operator.write",)
CHALLENGE_WAIT = 2.0  # seconds to wait for `connect.challenge` before connecting without it
MAX_FRAME = 25 * 1024 * 1024

# The gateway's ErrorCodes (src/gateway/protocol/schema/error-codes.ts) as HTTP-like statuses.
ERROR_STATUS = {
    "INVALID_REQUEST": 400,
    "FORBIDDEN": 403,
    "NOT_PAIRED": 401,
    "NOT_LINKED": 503,
    "AGENT_TIMEOUT": 503,
    "UNAVAILABLE": 503,
}
# Close codes that mean "you may not connect" (policy, protocol) rather than "gone".
AUTH_CLOSE_CODES = frozenset({1002, 1008, 4001})  # 1002: protocol mismatch


@dataclass(frozen=True, slots=True)
class RpcResult:
    status: int | None  # HTTP-like (see the module docstring); None: no answer
    text: str
    retry_after: float | None = None
    run_id: str | None = None
    payload: Any = None
    protocol: int | None = None  # the protocol the server chose in hello-ok


class RpcFailure(Exception):
    """The call ended without an answer to the request; `result` says how."""

    def __init__(self, result: RpcResult) -> None:
        super().__init__(result.text)
        self.result = result


def ws_url(http_url: str) -> str:
    """The gateway's WebSocket address: the same host and port as its HTTP server."""
    if http_url.startswith("https://"):
        return "wss://" + http_url[len("https://") :]
    if http_url.startswith("http://"):
        return "ws://" + http_url[len("http://") :]
    return http_url


def request_frame(req_id: str, method: str, params: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "req", "id": req_id, "method": method}
    if params is not None:
        frame["params"] = params
    return frame


def connect_params(token: str | None, version: str = "0.1.0") -> dict[str, Any]:
    """The `connect` request's params (ConnectParamsSchema), authenticating with the gateway token."""
    params: dict[str, Any] = {
        "minProtocol": MIN_PROTOCOL,
        "maxProtocol": MAX_PROTOCOL,
        "client": {
            "id": CLIENT_ID,
            "displayName": "openclaw-relay",
            "version": version,
            "platform": sys.platform,
            "mode": CLIENT_MODE,
            "instanceId": uuid.uuid4().hex,
        },
        "caps": [],
        "role": ROLE,
        "scopes": list(SCOPES),
        "userAgent": f"openclaw-relay/{version}",
    }
    if token:
        params["auth"] = {"token": token}
    return params


def send_params(body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    """The `send` method's params (SendParamsSchema): the action's body and its idempotency key."""
    return {**body, "idempotencyKey": idempotency_key}


def parse_frame(raw: str | bytes) -> dict[str, Any]:
    frame = orjson.loads(raw)
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ValueError("not a gateway frame")
    return frame


QUEUED_CODE = "OUTBOUND_DELIVERY_QUEUED"  # GatewayErrorDetailCodes: queued, the gateway retries it


def error_result(error: Any, *, handshake: bool = False) -> RpcResult:
    """An `ok: false` answer as an RpcResult. Any refusal of `connect` is a configuration problem
    (wrong or missing token, pairing required, unsupported protocol): never a dead letter."""
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or "UNAVAILABLE")
    message = str(error.get("message") or "error")
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    retry_ms = error.get("retryAfterMs")
    retry_after = retry_ms / 1000 if isinstance(retry_ms, int | float) and retry_ms >= 0 else None
    text = f"{code}: {message}"[:2000]
    if handshake:
        return RpcResult(403 if code == "FORBIDDEN" else 401, text, retry_after)
    if details.get("code") == QUEUED_CODE:
        # The gateway holds the message in its outbound queue and retries it itself ("do not resend").
        return RpcResult(202, f"{text} ({QUEUED_CODE}: handed over, the gateway retries it)", retry_after)
    if code == "FORBIDDEN" or details.get("code") == "MISSING_SCOPE":
        # A missing scope is the gateway's configuration (device pairing), not this action's fault.
        return RpcResult(403, text, retry_after)
    if code == "INVALID_REQUEST" and message.startswith("unauthorized"):
        return RpcResult(401, text, retry_after)
    status = ERROR_STATUS.get(code, 503)
    if error.get("retryable") is False and status >= 500:
        status = 422  # final, whatever the code: the gateway says resending cannot help
    elif status == 400 and error.get("retryable") is True:
        status = 503
    return RpcResult(status, text, retry_after)


class _Session:
    def __init__(self, ws: ClientConnection, deadline: float) -> None:
        self.ws = ws
        self.deadline = deadline
        self.ids = itertools.count(1)

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("gateway did not answer in time")
        return left

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        wait = self._left() if timeout is None else min(timeout, self._left())
        return parse_frame(self.ws.recv(timeout=wait))

    def request(self, method: str, params: Any, *, handshake: bool = False) -> Any:
        req_id = str(next(self.ids))
        self.ws.send(orjson.dumps(request_frame(req_id, method, params)).decode())
        while True:
            frame = self.recv()
            if frame.get("type") != "res" or frame.get("id") != req_id:
                continue  # events (tick, presence, ...) and answers to nothing we asked
            if frame.get("ok") is True:
                return frame.get("payload")
            raise RpcFailure(error_result(frame.get("error"), handshake=handshake))

    def handshake(self, token: str | None, version: str) -> Any:
        # The gateway opens with a `connect.challenge` event; its nonce is only signed by clients
        # with a device identity, which a token-authenticated backend client does not need.
        try:
            self.recv(CHALLENGE_WAIT)
        except TimeoutError:
            pass  # a gateway that sends no challenge: connect all the same
        try:
            return self.request("connect", connect_params(token, version), handshake=True)
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code in AUTH_CLOSE_CODES:
                raise RpcFailure(
                    RpcResult(401, f"connect refused: {exc.rcvd.code} {exc.rcvd.reason}")
                ) from exc
            raise


def call(
    url: str, token: str | None, method: str, params: Any, *, timeout: float = 30.0, version: str = "0.1.0"
) -> RpcResult:
    """Connect to the gateway at `url` (ws:// or http://), authenticate, make one request, close."""
    deadline = time.monotonic() + timeout
    try:
        with connect(
            ws_url(url),
            open_timeout=min(timeout, 10.0),
            close_timeout=1.0,
            max_size=MAX_FRAME,
            user_agent_header=f"openclaw-relay/{version}",
        ) as ws:
            session = _Session(ws, deadline)
            hello = session.handshake(token, version)
            protocol = hello.get("protocol") if isinstance(hello, dict) else None
            if not isinstance(protocol, int) or not MIN_PROTOCOL <= protocol <= MAX_PROTOCOL:
                return RpcResult(
                    401, f"hello-ok: protocol {protocol!r} is outside {MIN_PROTOCOL}..{MAX_PROTOCOL}"
                )
            if method == "connect":  # a handshake check only (relay check)
                return RpcResult(200, orjson.dumps(hello).decode()[:2000], payload=hello, protocol=protocol)
            payload = session.request(method, params)
    except RpcFailure as failure:
        return failure.result
    except InvalidStatus as exc:  # the HTTP upgrade was answered with a status
        status = exc.response.status_code
        return RpcResult(status if status in (401, 403, 404) else None, f"upgrade refused: HTTP {status}")
    except InvalidURI as exc:
        return RpcResult(404, f"invalid gateway url: {exc}")
    except (OSError, TimeoutError, InvalidHandshake, WebSocketException, ValueError) as exc:
        # Refused, reset, timed out, closed mid-call or an unreadable frame: no answer. The request
        # may have been handled, so it is retried with the same idempotency key.
        return RpcResult(None, f"{type(exc).__name__}: {exc}"[:500])
    text = orjson.dumps(payload).decode()[:2000]
    run_id = payload.get("runId") if isinstance(payload, dict) else None
    return RpcResult(200, text, None, str(run_id) if run_id else None, payload, protocol)
