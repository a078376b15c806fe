"""Property-based fuzzing of the console's routes and the hooks routes, in process against a real
redis-server: whatever the path, query, cookies, form or repeated headers, never a 5xx and never
an ERROR log line. Bounded by the HYPOTHESIS_PROFILE of tests/protocol/test_fuzz.py ("ci": 60 examples).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from relay.config import Settings
from relay.ingress.app import create_app
from tests.conftest import RedisServer
from tests.protocol import test_fuzz  # noqa: F401 - registers and loads the hypothesis profiles

TOKEN = "fuzz-console-token-0123456789"
HOOK_TOKEN = "fuzz-hook-token"
PATHS = [
    "/console",
    "/console/",
    "/console/login",
    "/console/logout",
    "/console/chart",
    "/console/dead",
    "/console/dead/replay",
    "/console/parked",
    "/console/parked/replay",
    "/console/system",
    "/console/static/console.css",
    "/console/static/x",
    "/console/events/",
    "/hooks/generic",
    "/hooks/generic/",
    "/hooks/agent",
    "/hooks/github",
    "/hooks/nope",
    "/metrics",
    "/readyz",
]
QUERY_KEYS = ["cursor", "source", "state", "done", "workers", "x"]
FORM_KEYS = ["csrf", "token", "ids", "all", "source", "new_key", "back"]

any_text = st.text(max_size=40)  # any code point, surrogates included
cursor_text = st.one_of(
    any_text,
    st.builds(
        lambda a, b: f"{a}~{b}",
        st.sampled_from(["nan", "inf", "-inf", "1e309", "-0", "1", "+inf", "NaN", "0x10", ""]),
        any_text,
    ),
)
cookie_bytes = st.binary(max_size=80).filter(lambda b: b"\r" not in b and b"\n" not in b and b"\0" not in b)


def _q(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def console_requests(draw: st.DrawFn) -> tuple[str, str, list[tuple[str, Any]], bytes]:
    path = draw(st.sampled_from(PATHS) | st.builds(lambda t: "/console/events/" + _q(t), any_text))
    params = draw(st.lists(st.tuples(st.sampled_from(QUERY_KEYS), cursor_text), max_size=4))
    query = "&".join(f"{k}={_q(v)}" for k, v in params)
    method = draw(st.sampled_from(["GET", "POST", "PUT", "HEAD"]))
    headers: list[tuple[str, Any]] = []
    cookie = draw(st.one_of(st.none(), cookie_bytes, st.just(b"relay_console=VALID")))
    if cookie is not None:
        headers.append(
            ("cookie", cookie if cookie.startswith(b"relay_console=") else b"relay_console=" + cookie)
        )
    if draw(st.booleans()):
        headers.append(("authorization", f"Bearer {HOOK_TOKEN}"))
    for name in draw(
        st.lists(
            st.sampled_from(
                ["authorization", "idempotency-key", "x-forwarded-for", "content-type", "x-github-event"]
            ),
            max_size=3,
        )
    ):
        headers.append(
            (name, draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)))
        )
    form = draw(st.lists(st.tuples(st.sampled_from(FORM_KEYS), any_text), max_size=5))
    body = "&".join(f"{k}={_q(v)}" for k, v in form).encode()
    if draw(st.booleans()):
        body = draw(st.binary(max_size=200))
    return method, f"{path}?{query}" if query else path, headers, body


class ErrorLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def console_app(
    redis_server: RedisServer,
) -> Iterator[tuple[httpx.AsyncClient, asyncio.AbstractEventLoop, str]]:
    config = Settings(
        redis_url=redis_server.url,
        ingress_token=[HOOK_TOKEN],
        auth_failures_max=100_000,
        sources={
            "generic": {"preset": "generic", "token": [HOOK_TOKEN]},
            "github": {"preset": "github", "secret": ["fuzz-console-github"]},
        },
        console={"enabled": True, "token": TOKEN},
    )
    loop = asyncio.new_event_loop()
    client = aioredis.Redis.from_url(redis_server.url)
    app = create_app(config, client)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://127.0.0.1"
    )
    login = loop.run_until_complete(http.post("/console/login", data={"token": TOKEN}))
    cookie = login.cookies.get("relay_console") or ""
    http.cookies.clear()
    yield http, loop, cookie
    loop.run_until_complete(http.aclose())
    loop.run_until_complete(client.aclose())
    loop.close()


@given(console_requests())
def test_console_and_hooks_never_answer_5xx_nor_log_an_error(
    console_app: tuple[httpx.AsyncClient, asyncio.AbstractEventLoop, str],
    request_: tuple[str, str, list[tuple[str, Any]], bytes],
) -> None:
    http, loop, valid = console_app
    method, url, headers, body = request_
    headers = [(k, v.replace(b"VALID", valid.encode()) if isinstance(v, bytes) else v) for k, v in headers]
    errors = ErrorLines()
    logging.getLogger().addHandler(errors)
    try:
        response = loop.run_until_complete(http.request(method, url, headers=headers, content=body))
    finally:
        logging.getLogger().removeHandler(errors)
        http.cookies.clear()
    assert response.status_code < 500, (method, url, response.text[:500])
    assert not errors.records, [r.getMessage() for r in errors.records]
