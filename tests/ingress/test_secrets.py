"""Secrets never leave the relay: not in any log line, response body, `relay check` or `relay events`
output, nor in what the relay keeps in Redis. The whole app runs (ingress, worker, gateway stub)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable

import redis

from tests.conftest import STUB_ALLOWING, Proc, Relay, Stub, _http_ok, dump, github_fixture, sign, wait_until

GITHUB = "gh-secret-" + uuid.uuid4().hex
GENERIC = "generic-token-" + uuid.uuid4().hex
GATEWAY = "gateway-token-" + uuid.uuid4().hex
SECRETS = (GITHUB, GENERIC, GATEWAY)


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_no_secret_in_logs_responses_cli_output_or_redis(
    relay_factory: Callable[..., Relay], redis_client: redis.Redis
) -> None:
    relay = relay_factory(
        mappings=[
            {
                "match": {"path": "generic"},
                "messageTemplate": "auth was {{headers.authorization}} {{headers.x-openclaw-token}}",
            }
        ]
    )
    relay.env.update(
        {
            "GITHUB_WEBHOOK_SECRET": GITHUB,
            "GENERIC_WEBHOOK_TOKEN": GENERIC,
            "OPENCLAW_HOOKS_TOKEN": GATEWAY,
            "RELAY_LOG_LEVEL": "DEBUG",
        }
    )
    # The stub must expect the real gateway token (Relay.start_stub uses the default one).
    stub_proc = Proc(
        ["gateway-stub", "--port", str(relay.stub_port), "--token", GATEWAY, *STUB_ALLOWING],
        relay.env,
        relay.tmp / "stub.log",
    )
    relay.procs.append(stub_proc)
    relay.stub = stub = Stub(relay.stub_port, stub_proc)
    wait_until(lambda: _http_ok(f"{stub.url}/readyz"), timeout=15)
    relay.start_ingress()
    relay.start_worker()

    push = github_fixture("push.default")
    bodies: list[str] = []

    def post(path: str, body: bytes, headers: dict[str, str]) -> int:
        response = relay.post(path, body, headers)
        bodies.append(response.text)
        assert response.status_code < 500, response.text
        return response.status_code

    good = [
        post(
            "/hooks/github",
            push,
            {
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": sign(push, GITHUB),
            },
        ),
        post("/hooks/generic", dump({"a": 1}), {"Authorization": f"Bearer {GENERIC}"}),
        post("/hooks/generic", dump({"a": 2}), {"x-openclaw-token": GENERIC}),
        post("/hooks/agent", dump({"message": "hello"}), {"Authorization": f"Bearer {GATEWAY}"}),
    ]
    assert good == [202, 202, 202, 202]
    bad = [
        # Near misses and secrets presented in the wrong place: refused, never echoed.
        post(
            "/hooks/github",
            push,
            {"X-GitHub-Event": "push", "X-GitHub-Delivery": "x", "X-Hub-Signature-256": "sha256=" + GITHUB},
        ),
        post(
            "/hooks/github",
            push,
            {"X-GitHub-Event": "push", "X-GitHub-Delivery": "x", "X-Hub-Signature-256": GITHUB},
        ),
        post("/hooks/generic", b"{}", {"Authorization": f"Bearer {GENERIC}x"}),
        post("/hooks/generic", b"{}", {"Authorization": f"Bearer {GITHUB}"}),
        post("/hooks/wake", b"{}", {"Authorization": f"Bearer {GENERIC}"}),
        post("/hooks/agent", b"{nope", {"Authorization": f"Bearer {GATEWAY}"}),
        post(f"/hooks/{GENERIC}", b"{}", {"Authorization": f"Bearer {GENERIC}"}),
    ]
    assert all(400 <= s < 500 for s in bad), bad
    wait_until(lambda: len(stub.runs()) >= 4, timeout=20)
    # The agent turn from the template asking for the credential headers saw only the marker.
    messages = [r["body"].get("message", "") for r in stub.runs()]
    assert any("auth was [redacted]" in m for m in messages), messages

    cli = [sys.executable, "-m", "relay.cli"]
    outputs = [
        subprocess.run([*cli, *args], env=relay.env, capture_output=True, text=True, timeout=60)
        for args in (["check", "--offline"], ["check"], ["events", "--json"], ["events"])
    ]
    assert outputs[0].returncode == 0, outputs[0].stderr
    for proc in relay.procs:
        proc.stop()
    logs = {p.log.name: p.output() for p in relay.procs}
    assert any("refused" in text or "event" in text for text in logs.values())

    assert not _leaks("\n".join(bodies)), "a response body carries a secret"
    for name, text in logs.items():
        assert not _leaks(text), f"{name} logs a secret"
    for out in outputs:
        assert not _leaks(out.stdout + out.stderr), f"CLI output carries a secret: {out.args}"
    stored = []
    for key in redis_client.scan_iter("relay:*"):
        kind = redis_client.type(key)
        if kind == b"string":
            stored.append(repr(redis_client.get(key)))
        elif kind == b"hash":
            stored.append(repr(redis_client.hgetall(key)))
    assert stored and not _leaks("\n".join(stored)), "Redis keeps a secret"
