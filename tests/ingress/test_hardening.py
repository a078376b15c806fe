"""Where the internet touches the relay: held connections, forwarded headers, long ids, repeated
headers, /metrics, the JWKS fetch and Retry-After, each against real processes over loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import psutil
import pytest
import redis

from relay.client import RelayClient
from relay.ingress.proxies import parse_networks, resolve
from tests.conftest import (
    GENERIC_TOKEN,
    HOOKS_TOKEN,
    RedisServer,
    Relay,
    _http_ok,
    free_port,
    github_fixture,
    sign,
    wait_until,
)
from tests.paths import FIXTURES

PUSH = github_fixture("push.default")
CONSOLE_TOKEN = "console-token-hardening-0123456789"


# -- 1. an early answer ends the connection -------------------------------------------------------


def _dribblers(port: int, count: int, heads: list[bytes]) -> list[socket.socket]:
    socks = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(heads[i % len(heads)])
        sock.setblocking(False)
        socks.append(sock)
    return socks


def test_dribbling_senders_cannot_hold_connections(relay_factory: Callable[..., Relay]) -> None:
    """Hundreds of clients answered early (404, 405, 413) or never finishing their body (408), each
    sending a byte every 0.3 s: every connection is closed by the relay within body_timeout + 3 s."""
    timeout = 1.0
    relay = relay_factory(
        body_timeout_seconds=timeout,
        sources={"small": {"preset": "generic", "token": GENERIC_TOKEN, "max_body_bytes": 1000}},
    )
    proc = relay.start_ingress()
    server = psutil.Process(proc.proc.pid)
    baseline = server.num_fds()

    def head(method: str, path: str, length: int, token: bool = False) -> bytes:
        auth = f"Authorization: Bearer {GENERIC_TOKEN}\r\n" if token else ""
        return (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n{{"
        ).encode()

    heads = [
        head("POST", "/hooks/nope", 100_000),  # 404 at once
        head("PUT", "/hooks/small", 100_000),  # 405 at once
        head("POST", "/hooks/small", 100_000, token=True),  # 413 from Content-Length
        head("POST", "/hooks/small", 900, token=True),
    ]  # 408 after body_timeout
    count = 300
    started = time.monotonic()
    socks = _dribblers(relay.port, count, heads)
    answers: dict[int, bytes] = {i: b"" for i in range(count)}
    closed: dict[int, float] = {}
    selector = selectors.DefaultSelector()
    for i, sock in enumerate(socks):
        selector.register(sock, selectors.EVENT_READ, i)
    deadline = started + timeout + 3 + 0.1 * count / 100  # the clients' own start-up time on top
    last_drip = 0.0
    try:
        while len(closed) < count and time.monotonic() < deadline + 2:
            if time.monotonic() - last_drip > 0.3:  # one byte from every open connection
                last_drip = time.monotonic()
                for i, sock in enumerate(socks):
                    if i not in closed:
                        try:
                            sock.send(b" ")
                        except OSError:
                            pass
            for key, _ in selector.select(timeout=0.05):
                i = key.data
                try:
                    data = socks[i].recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    answers[i] += data
                else:
                    closed[i] = time.monotonic() - started
                    selector.unregister(socks[i])
        assert len(closed) == count, (
            f"{count - len(closed)} connections still open after {deadline - started:.1f} s"
        )
        assert max(closed.values()) <= deadline - started
        statuses = {answers[i].split(b" ", 2)[1] for i in range(count)}
        assert statuses == {b"404", b"405", b"413", b"408"}, statuses
        assert all(b"connection: close" in answers[i].lower() for i in range(count))
    finally:
        for sock in socks:
            sock.close()
        selector.close()

    def held() -> int:
        return sum(
            1
            for c in server.net_connections("tcp")
            if c.laddr and c.laddr.port == relay.port and c.status != psutil.CONN_LISTEN
        )

    wait_until(lambda: held() == 0, timeout=5)
    # What stays is the Redis connection pool, grown by the concurrent refusals it counted.
    redis_conns = sum(1 for c in server.net_connections("tcp") if c.raddr and c.raddr.port != relay.port)
    assert server.num_fds() <= baseline + redis_conns + 5, (baseline, redis_conns, server.num_fds())


# -- 2. forwarded headers only from trusted proxies ----------------------------------------------


def test_resolve_believes_forwarded_headers_only_from_a_trusted_peer() -> None:
    nets = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    assert resolve("127.0.0.1", ["8.8.8.8"], ["https"], "http", []) == ("127.0.0.1", "http")
    assert resolve("192.0.2.1", ["8.8.8.8"], ["https"], "http", nets) == ("192.0.2.1", "http")
    assert resolve("127.0.0.1", ["8.8.8.8"], ["https"], "http", nets) == ("8.8.8.8", "https")
    # The right-most untrusted hop is the client: what the sender wrote on the left is not believed.
    assert resolve("127.0.0.1", ["1.1.1.1, 8.8.8.8, 10.1.2.3"], [], "http", nets) == ("8.8.8.8", "http")
    assert resolve("127.0.0.1", ["not-an-ip"], ["gopher"], "http", nets) == ("127.0.0.1", "http")
    with pytest.raises(ValueError, match="not an IP address"):
        parse_networks(["example.com"])


def _bad_github(relay: Relay, xff: str) -> httpx.Response:
    return relay.post_github(PUSH, str(uuid.uuid4()), secret="wrong", **{"X-Forwarded-For": xff})


def test_spoofed_forwarded_for_changes_nothing_without_trusted_proxies(
    relay_factory: Callable[..., Relay], redis_client: redis.Redis
) -> None:
    relay = relay_factory(auth_failures_max=3, console={"enabled": True, "token": CONSOLE_TOKEN})
    relay.start_ingress()
    answers = [_bad_github(relay, f"203.0.113.{i}").status_code for i in range(5)]
    assert answers == [401, 401, 401, 429, 429]  # rotating the header does not dodge the lockout
    assert redis_client.exists("relay:authfail:addr:127.0.0.1")
    assert not list(redis_client.scan_iter("relay:authfail:addr:203.*"))
    # The console's loopback rule and the cookie's Secure flag ignore the headers too.
    spoof = {"X-Forwarded-For": "8.8.8.8", "X-Forwarded-Proto": "https"}
    assert httpx.get(f"{relay.url}/console/login", headers=spoof).status_code == 200
    login = httpx.post(f"{relay.url}/console/login", data={"token": CONSOLE_TOKEN}, headers=spoof)
    assert login.status_code == 303 and "secure" not in login.headers["set-cookie"].lower()


def test_a_trusted_proxy_names_the_client(
    relay_factory: Callable[..., Relay], redis_client: redis.Redis
) -> None:
    relay = relay_factory(
        auth_failures_max=3, trusted_proxies=["127.0.0.1"], console={"enabled": True, "token": CONSOLE_TOKEN}
    )
    relay.start_ingress()
    assert [_bad_github(relay, "203.0.113.7").status_code for _ in range(4)] == [401, 401, 401, 429]
    assert redis_client.exists("relay:authfail:addr:203.0.113.7")
    assert not redis_client.exists("relay:authfail:addr:127.0.0.1")
    assert httpx.get(f"{relay.url}/console/login", headers={"X-Forwarded-For": "8.8.8.8"}).status_code == 404
    login = httpx.post(
        f"{relay.url}/console/login",
        data={"token": CONSOLE_TOKEN},
        headers={"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"},
    )
    assert login.status_code == 303 and "secure" in login.headers["set-cookie"].lower()


# -- 3. ids over the limit are never shortened into a collision -----------------------------------

LINEAR_SECRET = "lin_wh_hardening"
STRIPE_SECRET = "whsec_hardening"
SW_SECRET = "whsec_" + base64.b64encode(b"hardening-standard-webhooks").decode()
GITLAB_TOKEN = "gitlab-hardening-token"


def _linear(delivery: str) -> tuple[str, dict[str, str], bytes]:
    payload = orjson.loads((FIXTURES / "linear" / "issue.create.json").read_bytes())
    body = orjson.dumps({**payload, "webhookTimestamp": int(time.time() * 1000)})
    sig = hmac.new(LINEAR_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return (
        "/hooks/linear",
        {
            "Content-Type": "application/json",
            "Linear-Signature": sig,
            "Linear-Delivery": delivery,
            "Linear-Event": "Issue",
        },
        body,
    )


def _stripe(event_id: str) -> tuple[str, dict[str, str], bytes]:
    body = orjson.dumps({"id": event_id, "type": "invoice.paid", "data": {"object": {"id": "in_1"}}})
    ts = int(time.time())
    mac = hmac.new(STRIPE_SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return "/hooks/stripe", {"Content-Type": "application/json", "Stripe-Signature": f"t={ts},v1={mac}"}, body


def _sw(msg_id: str) -> tuple[str, dict[str, str], bytes]:
    body = b'{"type": "user.created", "data": {"id": "u1"}}'
    ts = str(int(time.time()))
    key = base64.b64decode(SW_SECRET.removeprefix("whsec_"))
    mac = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return (
        "/hooks/sw",
        {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": ts,
            "webhook-signature": f"v1,{mac}",
        },
        body,
    )


def _gmail(message_id: str) -> tuple[str, dict[str, str], bytes]:
    data = base64.b64encode(b'{"emailAddress": "me@example.org", "historyId": 42}').decode()
    body = orjson.dumps({"message": {"data": data, "messageId": message_id}, "subscription": "projects/p/s"})
    return (
        "/hooks/gmail",
        {"Content-Type": "application/json", "Authorization": "Bearer gmail-hardening"},
        body,
    )


SENDERS: dict[str, Callable[[str], tuple[str, dict[str, str], bytes]]] = {
    "github": lambda d: (
        "/hooks/github",
        {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": d,
            "X-Hub-Signature-256": sign(PUSH),
        },
        PUSH,
    ),
    "generic": lambda d: (
        "/hooks/generic",
        {"Authorization": f"Bearer {GENERIC_TOKEN}", "Idempotency-Key": d},
        b'{"text": "hello"}',
    ),
    "gitlab": lambda d: (
        "/hooks/gitlab",
        {"X-Gitlab-Token": GITLAB_TOKEN, "X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": d},
        (FIXTURES / "gitlab" / "push.json").read_bytes(),
    ),
    "stripe": _stripe,
    "standard-webhooks": _sw,
    "linear": _linear,
    "gmail": _gmail,
    "agent": lambda d: (
        "/hooks/agent",
        {"Authorization": f"Bearer {HOOKS_TOKEN}"},
        orjson.dumps({"message": "hi", "idempotencyKey": d}),
    ),
}
ID_SOURCES = {
    "github": {"preset": "github", "secret": "env:GITHUB_WEBHOOK_SECRET"},
    "generic": {"preset": "generic", "token": "env:GENERIC_WEBHOOK_TOKEN"},
    "gitlab": {"preset": "gitlab", "token": GITLAB_TOKEN},
    "stripe": {"preset": "stripe", "secret": STRIPE_SECRET},
    "sw": {"preset": "standard-webhooks", "secret": SW_SECRET},
    "linear": {"preset": "linear", "secret": LINEAR_SECRET},
    "gmail": {"preset": "gmail", "token": "gmail-hardening"},
}
ID_MAPPINGS = [{"match": {"path": "generic"}, "action": "agent", "messageTemplate": "{{payload.text}}"}]


@pytest.fixture(scope="module")
def full_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    # Its own Redis: its worker must not route the other tests' events (they share the inbox stream).
    server = RedisServer(tmp_path_factory.mktemp("hardening-redis"), appendonly=False)
    server.start()
    relay = Relay(
        tmp_path_factory.mktemp("hardening"), server.url, {"sources": ID_SOURCES, "mappings": ID_MAPPINGS}
    )
    relay.start_stub()
    relay.start_ingress()
    relay.start_worker()
    yield relay
    relay.stop()
    server.stop()


@pytest.mark.parametrize("preset", sorted(SENDERS))
def test_two_ids_sharing_a_long_prefix_are_two_delivered_events(full_relay: Relay, preset: str) -> None:
    prefix = f"{preset}-{uuid.uuid4().hex}-".ljust(200, "x")
    keys = set()
    for tail in ("first", "second"):
        path, headers, body = SENDERS[preset](prefix + tail)
        answer = full_relay.post(path, body, headers)
        assert answer.status_code in (200, 202), answer.text  # gmail answers Pub/Sub's ack, 200
        assert not answer.json().get("duplicate")
        assert full_relay.outcome(answer)["actions"] == 1  # once the worker has mapped it
        keys.add(answer.json()["eventId"])
    assert len(keys) == 2
    client = redis.Redis.from_url(full_relay.redis_url)
    delivery_ids = {client.hget(f"relay:event:{k}", "delivery_id") for k in keys}
    assert len(delivery_ids) == 2 and all(len(d) <= 220 for d in delivery_ids if d)
    assert all(prefix[:100].encode() in d for d in delivery_ids if d)  # the id itself, shown truncated

    wait_until(lambda: _all_delivered(client, keys), timeout=20)
    client.close()


def _all_delivered(client: redis.Redis, event_ids: set[str]) -> bool:
    from relay.protocol.actions import action_id

    for eid in event_ids:
        source, delivery_id, count = client.hmget(
            f"relay:event:{eid}", "source", "delivery_id", "action_count"
        )
        if not count or int(count) < 1:
            return False
        for i in range(int(count)):
            aid = action_id(source.decode(), delivery_id.decode(), i)
            if client.hget(f"relay:action:{aid}", "state") != b"delivered":
                return False
    return True


# -- 6. /metrics is not on the public listener -----------------------------------------------------


def test_metrics_only_on_the_loopback_metrics_listener(full_relay: Relay) -> None:
    assert httpx.get(f"{full_relay.url}/metrics").status_code == 404
    text = httpx.get(full_relay.metrics_url).text
    assert "relay_" in text and 'source="github"' in text


def test_a_taken_metrics_port_leaves_the_hooks_served_and_says_why(full_relay: Relay) -> None:
    # Two ingresses on one host with the default metrics port: the second still takes webhooks.
    port = free_port()
    proc = full_relay._start(
        ["serve", "--port", str(port), "--metrics-port", str(full_relay.metrics_port)], f"ingress-{port}"
    )
    try:
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=20)
        assert f"/metrics not served: cannot listen on 127.0.0.1:{full_relay.metrics_port}" in proc.output()
        assert "relay_" in httpx.get(full_relay.metrics_url).text  # the first one's listener is unaffected
    finally:
        proc.stop()


# -- 5. a client leaving mid-body is one INFO line ------------------------------------------------


def test_client_disconnecting_mid_body_logs_no_traceback(full_relay: Relay) -> None:
    proc = next(p for p in full_relay.procs if p.args[0] == "serve")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", full_relay.port)) as sock:
            sock.sendall(
                b"POST /hooks/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + GENERIC_TOKEN.encode()
                + b'\r\nContent-Length: 1000\r\n\r\n{"a":'
            )
            time.sleep(0.05)  # let the app start reading the body
    assert httpx.get(f"{full_relay.url}/healthz").status_code == 200
    wait_until(
        lambda: proc.output().count("client disconnected before sending the whole body") >= 3, timeout=10
    )
    output = proc.output()
    assert "Traceback" not in output and "Exception in ASGI application" not in output


# -- 7. a slow JWKS server does not delay other sources ---------------------------------------------


def _jwks_body() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    return orjson.dumps({"keys": [{**json.loads(RSAAlgorithm.to_jwk(key)), "kid": "k2", "alg": "RS256"}]})


JWKS_BODY = _jwks_body()


class _SlowJwks(http.server.BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        type(self).hits += 1
        time.sleep(3)
        body = JWKS_BODY
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_slow_jwks_server_does_not_delay_other_sources(relay_factory: Callable[..., Relay]) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowJwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/certs"
        relay = relay_factory(
            sources={
                "gmail": {"preset": "gmail", "audience": "https://relay.example/hooks/gmail", "jwks": url},
                "generic": {"preset": "generic", "token": GENERIC_TOKEN},
            }
        )
        relay.start_ingress()
        jwt_like = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJ4IjoxfQ.c2ln"  # {"alg":"RS256","kid":"k1"}
        results: list[int] = []

        def gmail_call() -> None:
            results.append(
                relay.post("/hooks/gmail", b"{}", {"Authorization": f"Bearer {jwt_like}"}).status_code
            )

        callers = [threading.Thread(target=gmail_call) for _ in range(5)]
        for t in callers:
            t.start()
        wait_until(lambda: _SlowJwks.hits >= 1, timeout=5)
        started = time.monotonic()
        answer = relay.post("/hooks/generic", b'{"a": 1}', {"Authorization": f"Bearer {GENERIC_TOKEN}"})
        assert answer.status_code == 202 and time.monotonic() - started < 1.0
        for t in callers:
            t.join(timeout=15)
        assert results == [401] * 5  # the set has no key k1
        assert _SlowJwks.hits == 1  # one fetch for all five
    finally:
        server.shutdown()
        server.server_close()


# -- 8. Retry-After is honoured exactly -------------------------------------------------------------


def test_a_retry_never_comes_before_retry_after(relay_factory: Callable[..., Relay]) -> None:
    relay = relay_factory()
    stub = relay.start_stub()
    relay.start_ingress()
    relay.start_worker()
    stub.control(fail=[429], retry_after=2)
    body = orjson.dumps({"message": "retry me"})
    assert relay.post("/hooks/agent", body, {"Authorization": f"Bearer {HOOKS_TOKEN}"}).status_code == 202
    wait_until(lambda: len(stub.runs()) == 1, timeout=40)
    attempts = [r for r in stub.requests() if r["path"] == "agent"]
    assert [r["status"] for r in attempts] == [429, 200], attempts
    assert attempts[1]["at"] - attempts[0]["at"] >= 2.0


# -- 9. events_max bounds the memory ----------------------------------------------------------------


def test_events_past_events_max_give_their_memory_back(
    relay_factory: Callable[..., Relay], redis_client: redis.Redis
) -> None:
    from relay.config import Settings
    from relay.worker.dispatch import Router

    relay = relay_factory(events_max=20)
    relay.start_ingress()
    headers = {"Authorization": f"Bearer {GENERIC_TOKEN}"}
    answers = []
    for n in range(60):
        big = orjson.dumps({"n": n, "blob": "x" * 200_000})
        answers.append(relay.post("/hooks/generic", big, headers))
        assert answers[-1].status_code == 202
    router = Router(redis_client, Settings(redis_url=relay.redis_url, events_max=20), consumer="trim-test")
    router.trim()  # none is mapped yet: the mapping stage still reads their bodies
    assert redis_client.zcard("relay:events") == 60
    before = redis_client.info("memory")["used_memory"]
    for answer in answers:  # mapped, as a worker's router maps them (and then trims)
        relay.outcome(answer)
    router.trim()
    after = redis_client.info("memory")["used_memory"]
    assert redis_client.zcard("relay:events") == 20
    assert before - after > 35 * 200_000  # the trimmed events' bodies are gone, not only their index
    assert after < 30 * 200_000 + 20_000_000


# -- 9. control characters from a sender's ids never reach the terminal raw -------------------------


def test_cli_listings_escape_control_characters_in_ids(relay_factory, redis_server) -> None:
    relay = relay_factory()
    hostile = "job-\x1b[2J\x1b]0;pwned\x07-1"  # clear screen, set the terminal title
    with RelayClient(redis_server.url) as client:
        client.agent(message="hi", idempotency_key=hostile)
    events = subprocess.run(
        [sys.executable, "-m", "relay.cli", "events"],
        env=relay.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert events.returncode == 0, events.stderr
    assert "\x1b" not in events.stdout and "\x07" not in events.stdout
    assert "job-\\x1b[2J" in events.stdout  # shown, escaped
