"""The delivery console without a browser: the gate (loopback, token, cookie, CSRF), redaction and
escaping, replays, the chart counters, and a page render with 100 000 events in the log."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis

from relay.config import Settings
from relay.console import data
from relay.errors import ConfigError
from relay.ingress.app import create_app
from relay.protocol.actions import action_id
from relay.store import keys
from relay.store.events import record_event
from tests.conftest import RedisServer
from tests.paths import ROOT

CONSOLE_TOKEN = "console-token-for-tests"
HOSTILE = "<script>window.__pwned=1</script>"


def settings(redis_url: str, **console: Any) -> Settings:
    return Settings(
        redis_url=redis_url,
        sources={"generic": {"preset": "generic", "token": "generic-token"}},
        mappings=[{"match": {"path": "generic"}, "action": "agent", "messageTemplate": "x={{payload.x}}"}],
        console={"enabled": True, "token": CONSOLE_TOKEN, **console},
    )


class Client:
    """The ingress app driven in-process, as a client at `address` (loopback by default)."""

    def __init__(self, config: Settings, address: str = "127.0.0.1") -> None:
        self.loop = asyncio.new_event_loop()
        self.redis = aioredis.Redis.from_url(config.redis_url or "")
        app = create_app(config, self.redis)
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        self.http = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080")

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.get(path, **kw))

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.http.post(path, **kw))

    def login(self, token: str = CONSOLE_TOKEN) -> httpx.Response:
        return self.post("/console/login", data={"token": token})

    def csrf(self, path: str = "/console") -> str:
        match = re.search(r'name="csrf" value="([^"]+)"', self.get(path).text)
        assert match, "no CSRF token on the page"
        return match.group(1)

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.run_until_complete(self.redis.aclose())
        self.loop.close()


@pytest.fixture
def console(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[Client]:
    client = Client(settings(redis_server.url))
    yield client
    client.close()


def record(
    r: redis.Redis,
    delivery_id: str,
    body: Any,
    headers: dict[str, str] | None = None,
    source: str = "generic",
) -> str:
    actions = orjson.dumps(
        [{"id": action_id(source, delivery_id, 0), "kind": "agent", "body": {"message": "m"}}]
    )
    recorded = record_event(
        r,
        source=source,
        delivery_id=delivery_id,
        headers=headers or {},
        body=orjson.dumps(body),
        actions=actions,
        action_count=1,
        dedupe_ttl=60,
        event_ttl=3600,
    )
    return recorded.event_id


def test_disabled_by_default_and_needs_a_token(redis_server: RedisServer) -> None:
    client = Client(Settings(redis_url=redis_server.url))
    try:
        assert client.get("/console").status_code == 404
    finally:
        client.close()
    with pytest.raises(ConfigError, match="console.token"):
        create_app(Settings(redis_url=redis_server.url, console={"enabled": True}))


def test_login_cookie_and_csrf(console: Client) -> None:
    page = console.get("/console")
    assert page.status_code == 401 and 'name="token"' in page.text
    assert console.get("/console/dead").status_code == 401
    wrong = console.login("not-the-console-token")
    assert wrong.status_code == 401 and "Wrong token" in wrong.text
    assert "set-cookie" not in wrong.headers
    ok = console.login()
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    page = console.get("/console")
    assert page.status_code == 200 and "<h1>Events</h1>" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    # A forged or missing cookie is no session.
    forged = console.http.cookies.get("relay_console", "").replace(".", ".x", 1)
    assert console.get("/console", cookies={"relay_console": forged}).status_code == 401
    # Every POST needs the session's CSRF token.
    assert console.post("/console/dead/replay", data={"ids": "act_x"}).status_code == 403
    assert console.post("/console/dead/replay", data={"ids": "act_x", "csrf": "0" * 64}).status_code == 403
    assert console.post("/console/logout", data={}).status_code == 403
    done = console.post("/console/dead/replay", data={"ids": "act_x", "csrf": console.csrf()})
    assert done.status_code == 303 and "Replayed+0+of+1" in done.headers["location"]


def test_only_loopback_clients_unless_allowed(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    remote = Client(settings(redis_server.url), address="203.0.113.9")
    allowed = Client(settings(redis_server.url, allow_remote=True), address="203.0.113.9")
    ipv6 = Client(settings(redis_server.url), address="::1")
    try:
        assert remote.get("/console").status_code == 404
        assert remote.login().status_code == 404
        assert remote.get("/console/static/console.js").status_code == 404
        assert remote.get("/healthz").status_code == 200  # the ingress itself is not affected
        assert allowed.get("/console").status_code == 401  # reachable, still behind the token
        assert allowed.login().status_code == 303
        assert ipv6.get("/console").status_code == 401
    finally:
        for client in (remote, allowed, ipv6):
            client.close()


def test_event_page_redacts_credentials_and_escapes_payloads(
    console: Client, redis_client: redis.Redis
) -> None:
    headers = {
        "Authorization": "Bearer hunter2-secret",
        "X-Hub-Signature-256": "sha256=deadbeef",
        "X-Gitlab-Token": "glt-secret",
        "Cookie": "sid=cookie-secret",
        "X-Api-Key": "key-secret",
        "X-Custom": HOSTILE,
        "User-Agent": "test-agent/1",
    }
    eid = record(redis_client, "hostile-1", {"title": HOSTILE, "n": 1}, headers)
    console.login()
    page = console.get(f"/console/events/{eid}")
    assert page.status_code == 200
    for secret in ("hunter2-secret", "deadbeef", "glt-secret", "cookie-secret", "key-secret"):
        assert secret not in page.text
    assert page.text.count("‹redacted›") == 5
    assert "test-agent/1" in page.text
    assert "<script>window" not in page.text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page.text
    assert "&#34;title&#34;: &#34;&lt;script&gt;" in page.text  # pretty-printed JSON, quotes escaped
    # A hostile delivery id in the list is escaped too.
    record(redis_client, HOSTILE, {"x": 1})
    assert "<script>window" not in console.get("/console").text
    assert console.get("/console/events/evt_missing").status_code == 404


def test_replay_a_dead_letter_and_a_parked_event(console: Client, redis_client: redis.Redis) -> None:
    eid = record(redis_client, "dead-1", {"x": 1})
    aid = action_id("generic", "dead-1", 0)
    redis_client.hset(
        keys.action(aid),
        mapping={
            "state": "dead",
            "source": "generic",
            "kind": "agent",
            "event_id": eid,
            "dead_reason": "permanent error",
            "last_status": "400",
            "dead_at": time.time(),
        },
    )
    redis_client.zadd(keys.DEAD, {aid: time.time()})
    console.login()
    dead = console.get("/console/dead")
    assert aid in dead.text and "permanent error" in dead.text
    assert eid in console.get("/console?state=dead").text
    answer = console.post(
        "/console/dead/replay", data={"source": "generic", "all": "1", "csrf": console.csrf()}
    )
    assert answer.status_code == 303 and "Replayed+1+of+1" in answer.headers["location"]
    assert redis_client.hget(keys.action(aid), "state") == b"queued"
    assert redis_client.zcard(keys.DEAD) == 0
    # A parked event, replayed after its (here: absent) transform problem went away.
    parked = record_event(
        redis_client,
        source="generic",
        delivery_id="parked-1",
        headers={},
        body=b'{"x": 2}',
        actions=b"[]",
        action_count=0,
        dedupe_ttl=60,
        event_ttl=3600,
    )
    redis_client.hset(
        keys.event(parked.event_id), mapping={"state": "parked", "error": "Traceback ...\nKeyError: 'x'"}
    )
    redis_client.zadd(keys.PARKED, {parked.event_id: time.time()})
    listing = console.get("/console/parked")
    assert parked.event_id in listing.text and "KeyError: &#39;x&#39;" in listing.text
    assert "Traceback" in console.get(f"/console/events/{parked.event_id}").text
    answer = console.post("/console/parked/replay", data={"ids": parked.event_id, "csrf": console.csrf()})
    assert answer.status_code == 303 and "Replayed+1+of+1" in answer.headers["location"]
    assert redis_client.hget(keys.event(parked.event_id), "state") == b"queued"


def test_chart_counts_events_per_minute(console: Client, redis_client: redis.Redis) -> None:
    for i in range(3):
        record(redis_client, f"chart-{i}", {"i": i})
    buckets = data.per_minute(redis_client)
    assert len(buckets) == 60 and buckets[-1][1]["received"] == 3
    assert 0 < redis_client.ttl(keys.minute(buckets[-1][0])) <= keys.MINUTE_TTL
    console.login()
    chart = console.get("/console/chart")
    assert chart.status_code == 200 and "<svg" in chart.text and "received 3" in chart.text


# ARGV: first index, last index, base time. Writes what the record script writes for an event
# (hash, event-log index, per-source index), in Redis: building 300 000 commands in Python takes
# 10-20 s, this ~1 s.
_BULK = """
local first, last, base = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = first, last do
  local eid = string.format('evt_bulk%06d', i)
  local source = 'generic'
  if i % 10 == 0 then source = 'github' end
  local at = string.format('%.6f', base + i)
  redis.call('HSET', 'relay:event:' .. eid, 'source', source, 'delivery_id', 'd' .. i, 'received_at', at,
             'state', 'queued', 'action_count', 1, 'headers', '{}', 'body', '{"i": ' .. i .. '}',
             'actions', '[]')
  redis.call('ZADD', KEYS[1], at, eid)
  redis.call('ZADD', KEYS[2] .. source, at, eid)
end
"""


def mass_insert(r: redis.Redis, count: int, chunk: int = 10_000) -> None:
    """`count` events written by a pipeline of script calls, `chunk` events each."""
    assert keys.event("x") == "relay:event:x"
    patient = redis.Redis(port=r.connection_pool.connection_kwargs["port"], socket_timeout=120)
    script = patient.register_script(_BULK)
    base = int(time.time()) - count
    with patient.pipeline(transaction=False) as pipe:
        for first in range(0, count, chunk):
            script(
                keys=[keys.EVENTS, keys.events_by_source("")],
                args=[first, min(count, first + chunk) - 1, base],
                client=pipe,
            )
        pipe.execute()
    patient.close()


def test_pages_stay_fast_with_100k_events(console: Client, redis_client: redis.Redis) -> None:
    started = time.perf_counter()
    mass_insert(redis_client, 100_000)
    assert redis_client.zcard(keys.EVENTS) == 100_000
    inserted = time.perf_counter() - started
    redis_client.hset(keys.action(action_id("generic", "d99999", 0)), "state", "delivered")
    console.login()
    timings = {}
    for path in (
        "/console",
        "/console?source=github",
        "/console?state=delivered",
        "/console?state=parked",
        "/console?state=dead",
        "/console?source=github&state=pending",
        "/console/dead",
        "/console/system",
    ):
        started = time.perf_counter()
        page = console.get(path)
        timings[path] = time.perf_counter() - started
        assert page.status_code == 200, path
    assert max(timings.values()) < 1.0, (timings, inserted)
    newest = console.get("/console").text
    assert "evt_bulk099999" in newest and "evt_bulk099950" in newest  # 50 per page, newest first
    assert "evt_bulk099949" not in newest
    older = re.search(r'href="(/console\?cursor=[^"]+)">older', newest)
    assert older
    second = console.get(older.group(1).replace("&amp;", "&")).text
    assert "evt_bulk099949" in second and "evt_bulk099950" not in second
    github = console.get("/console?source=github").text
    assert "evt_bulk099990" in github and "evt_bulk099999" not in github
    delivered = console.get("/console?state=delivered").text
    assert "evt_bulk099999" in delivered and "Filtered among the" in delivered


def test_grafana_dashboard_covers_the_documented_metrics() -> None:
    dashboard = orjson.loads((ROOT / "grafana" / "relay.json").read_bytes())
    exprs = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    for metric in (
        "relay_events_total",
        "relay_events_refused_total",
        "relay_actions_total",
        "relay_delivery_latency_seconds_bucket",
        "relay_queue_depth",
        "relay_parked_events",
        "relay_dead_letters",
        "relay_gateway_circuit",
        "relay_workers",
    ):
        assert metric in exprs, metric
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])
