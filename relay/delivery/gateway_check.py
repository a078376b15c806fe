"""What `relay check` and `relay up`'s start-up line ask of a gateway, without starting anything.

- the hooks token: POST to the bare hooks path (the gateway checks the token, then answers 404
  for the empty hook name);
- the session-key policy: the `relay.protocol.policy.probe_body` request, which every gateway
  configuration refuses with a 400 before a run exists, and whose message tells the policy;
- the gateway's other doors: the WebSocket `connect` handshake (protocol, gateway token) and
  `POST /tools/invoke` with no tool name (token checked first, then 400 "requires name").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from relay.config import GatewayConfig
from relay.delivery import rpc
from relay.delivery.send_and_tool import TOOLS_PATH, auth_token
from relay.protocol import policy


@dataclass
class Finding:
    ok: bool  # False: deliveries will be refused or paused until it is fixed
    line: str
    fix: list[str] = field(default_factory=list)  # lines to add to the OpenClaw config


def hooks_token(gw: GatewayConfig, timeout: float = 5.0) -> Finding:
    probe = f"{gw.url}/{gw.hooks_path.strip('/')}/"
    headers = {"Authorization": f"Bearer {gw.token.get_secret_value()}"} if gw.token else {}
    try:
        answer = httpx.post(probe, headers=headers, content=b"{}", timeout=timeout)
    except httpx.HTTPError as exc:
        return Finding(
            False,
            f"cannot reach the gateway at {gw.url}: {type(exc).__name__} (events are kept until it "
            "answers; to try the relay without one: relay gateway-stub)",
        )
    if answer.status_code == 401:
        what = "gateway.token is not set" if not gw.token else "the gateway refuses gateway.token"
        return Finding(False, f"{what} (401 at {probe}); it must equal the gateway's hooks.token")
    if answer.status_code == 429:
        return Finding(False, f"the gateway is rate-limiting failed token attempts (429 at {probe})")
    return Finding(True, f"gateway ok at {gw.url}: hook token accepted")


def session_keys(gw: GatewayConfig, timeout: float = 10.0) -> Finding:
    url = f"{gw.url}/{gw.hooks_path.strip('/')}/agent"
    headers = {"Authorization": f"Bearer {gw.token.get_secret_value()}"} if gw.token else {}
    try:
        answer = httpx.post(url, headers=headers, json=policy.probe_body(), timeout=timeout)
    except httpx.HTTPError as exc:
        return Finding(False, f"cannot check the session-key policy at {url}: {type(exc).__name__}")
    accepted, why = policy.read_probe(answer.status_code, answer.text)
    if accepted:
        return Finding(True, f"session keys ok: {why}")
    if accepted is None:
        return Finding(True, f"session-key policy not shown by the gateway ({why})")
    fix = policy.SESSION_KEY_SETTING.splitlines()
    return Finding(
        False,
        f"the gateway will refuse the relay's session keys: {why}; delivery of "
        "actions with a sessionKey (every preset's) pauses until the OpenClaw config has:",
        fix,
    )


def websocket(gw: GatewayConfig, timeout: float = 10.0) -> Finding:
    result = rpc.call(gw.url, auth_token(gw), "connect", None, timeout=timeout)
    if result.status == 200:
        return Finding(
            True, f"websocket ok: handshake accepted the gateway token (protocol {result.protocol})"
        )
    if result.status is None:
        return Finding(False, f"websocket: no answer from {rpc.ws_url(gw.url)}: {result.text[:200]}")
    return Finding(
        False,
        f"websocket: the gateway refused the handshake: {result.text[:300]} "
        "(gateway.auth_token must equal the gateway's gateway.auth.token)",
    )


def tools_token(gw: GatewayConfig, timeout: float = 5.0) -> Finding:
    token = auth_token(gw)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        answer = httpx.post(f"{gw.url}{TOOLS_PATH}", headers=headers, json={"tool": ""}, timeout=timeout)
    except httpx.HTTPError as exc:
        return Finding(False, f"cannot reach {TOOLS_PATH}: {type(exc).__name__}")
    if answer.status_code in (401, 403):
        return Finding(
            False,
            f"{TOOLS_PATH} refuses the gateway token ({answer.status_code}); "
            "gateway.auth_token must equal the gateway's gateway.auth.token",
        )
    if answer.status_code == 400:
        return Finding(True, f"{TOOLS_PATH} ok: gateway token accepted")
    return Finding(False, f"{TOOLS_PATH} answered {answer.status_code}: {answer.text[:200]}")
