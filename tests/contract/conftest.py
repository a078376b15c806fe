"""Fixtures of the contract suite: the real OpenClaw gateway and `relay gateway-stub`, side by side.

Every test takes `target` (parametrized: "real", "stub") and asserts the same classification
against both. Each gateway is booted once per session, and all the cases live in one module:
with `--dist loadfile` (pytest addopts) one xdist worker runs them and boots the real gateway
once. (They also carry an xdist_group mark, for when `--dist loadgroup` works again:
pytest-dev/pytest-xdist#1386.) The real
gateway's hooks token is the suite's HOOKS_TOKEN, so `Relay`'s config reaches either.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import HOOKS_TOKEN, Proc, Relay, _http_ok, free_port, wait_until
from .real_gateway import ALLOWING_HOOKS, DEFAULT_HOOKS, GATEWAY_TOKEN, Gateway, Install

# Every contract test module sets `pytestmark = CONTRACT`.
CONTRACT = [pytest.mark.contract, pytest.mark.xdist_group("openclaw-gateway")]
# Where the last session's install/boot figures are written (docs/contract-tests.md quotes them).
FIGURES = (
    Path(os.environ.get("OPENCLAW_RELAY_GATEWAY_FIGURES", ""))
    if os.environ.get("OPENCLAW_RELAY_GATEWAY_FIGURES")
    else None
)


class Target:
    """One gateway under contract: its address, tokens, and how to switch its session-key policy."""

    name: str
    url: str
    hooks_token = HOOKS_TOKEN
    gateway_token = GATEWAY_TOKEN

    def set_policy(self, allowing: bool) -> None:
        raise NotImplementedError

    def agent(self, body: dict[str, Any], key: str | None = None, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.hooks_token}"}
        if key:
            headers["Idempotency-Key"] = key
        return httpx.post(f"{self.url}/hooks/agent", json=body, headers=headers, timeout=30)


def _probe_allows(url: str, allowing: bool) -> Callable[[], bool]:
    """True once the gateway answers the session-key policy `allowing` asks for."""

    def probe() -> bool:
        answer = httpx.post(
            f"{url}/hooks/agent",
            headers={"Authorization": f"Bearer {HOOKS_TOKEN}"},
            json={"message": "policy probe", "sessionKey": "relay-probe:x", "sessionMode": "persistent"},
            timeout=10,
        )
        disabled = "sessionKey is disabled" in answer.text
        return answer.status_code == 400 and disabled != allowing

    return probe


class RealTarget(Target):
    name = "real"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.url = gateway.url
        self.allowing = False

    def set_policy(self, allowing: bool) -> None:
        if allowing != self.allowing:
            self.gateway.configure(
                ALLOWING_HOOKS if allowing else DEFAULT_HOOKS, _probe_allows(self.url, allowing)
            )
            self.allowing = allowing


class StubTarget(Target):
    name = "stub"

    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    def set_policy(self, allowing: bool) -> None:
        policy = ALLOWING_HOOKS if allowing else DEFAULT_HOOKS
        httpx.post(f"{self.url}/_stub/control", json={"session_policy": policy}).raise_for_status()


@pytest.fixture(scope="session")
def real_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealTarget]:
    install = Install()
    started = time.monotonic()
    install.ensure()
    gateway = Gateway(install, tmp_path_factory.mktemp("openclaw"))
    gateway.start()
    figures = {
        "install_seconds": install.seconds,
        "boot_seconds": gateway.boot_seconds,
        "total_seconds": time.monotonic() - started,
        "cached": install.seconds is None,
    }
    if FIGURES:
        FIGURES.write_text(json.dumps(figures))
    try:
        yield RealTarget(gateway)
    finally:
        gateway.stop()


@pytest.fixture(scope="session")
def stub_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubTarget]:
    """`relay gateway-stub` as a default-config gateway: no session-key flags, no channel."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = tmp_path_factory.mktemp("stub") / "stub.log"
    proc = Proc(
        ["gateway-stub", "--port", str(port), "--token", HOOKS_TOKEN, "--auth-token", GATEWAY_TOKEN], env, log
    )
    wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"), timeout=15)
    try:
        yield StubTarget(proc, port)
    finally:
        proc.stop()


@pytest.fixture(params=["real", "stub"])
def target(request: pytest.FixtureRequest) -> Target:
    gateway: Target = request.getfixturevalue(f"{request.param}_gateway")
    return gateway


def contract_relay(factory: Callable[..., Relay], target: Target, **overrides: Any) -> Relay:
    """A relay (config only; start its processes) delivering to `target`."""
    gateway = {"url": target.url, "auth_token": "env:OPENCLAW_GATEWAY_TOKEN", **overrides.pop("gateway", {})}
    relay = factory(gateway=gateway, **overrides)
    relay.env["OPENCLAW_GATEWAY_TOKEN"] = GATEWAY_TOKEN
    return relay
