"""Property-based fuzzing of the ingress (in-process, against a real redis-server) and of every preset.

Properties: no 500 and no unhandled exception, whatever the headers, body, encoding or signature;
every refusal is `{"ok": false, "error": ...}`; an acknowledged event (`eventId` in a 2xx) is in
Redis. Examples per test come from the HYPOTHESIS_PROFILE profile: "ci" (default, bounded) or
"long": `HYPOTHESIS_PROFILE=long .venv/bin/pytest tests/protocol/test_fuzz.py`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_plus

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import presets
from relay.config import Settings, SourceConfig
from relay.errors import RelayError, TransformError
from relay.ingress.app import create_app
from relay.protocol.event import Event
from relay.protocol.mapping import Mapper
from tests.conftest import RedisServer

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

GITHUB_SECRET = "fuzz-github-secret"
TOKEN = "fuzz-token"
HMAC_SECRET = "fuzz-hmac-secret"
STRIPE_SECRET = "whsec_fuzz"
SW_SECRET = "whsec_" + base64.b64encode(b"fuzz-standard-webhooks").decode()

SOURCES: dict[str, dict[str, Any]] = {
    "github": {"preset": "github", "secret": [GITHUB_SECRET]},
    "generic": {"preset": "generic", "token": [TOKEN]},
    "raw": {"preset": "generic", "token": [TOKEN], "content": "raw"},
    "signed": {
        "preset": "generic",
        "signature_header": "X-Signature",
        "signature_prefix": "sha256=",
        "secret": [HMAC_SECRET],
    },
    "stripe": {"preset": "stripe", "secret": [STRIPE_SECRET]},
    "sw": {"preset": "standard-webhooks", "secret": [SW_SECRET]},
    "gitlab": {"preset": "gitlab", "token": [TOKEN]},
    "alerts": {"preset": "alertmanager", "token": [TOKEN]},
    "gmail": {"preset": "gmail", "token": [TOKEN]},
}
MAPPINGS = [
    {"match": {"path": "raw"}, "messageTemplate": "{{payload.body}} {{headers.content-type}}"},
    {
        "match": {"path": "signed"},
        "action": "wake",
        "textTemplate": "{{payload}} {{payload.a[0].b}} {{query.q}}",
    },
    {"match": {"path": "generic"}, "messageTemplate": "{{payload}}", "sessionKey": "hook:{{payload.id}}"},
]


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # unlike orjson, takes integers past 64 bits


# Printable ASCII header text (what an HTTP client can send), with some structure around it.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(_dumps),
    st.integers(1, 120).map(lambda n: b"[" * n + b"]" * n),
    json_values.map(lambda v: b"payload=" + quote_plus(_dumps(v)).encode()),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "",
        "application/vnd.api+json",
        "multipart/form-data; boundary=x",
    ]
)
header_names = st.sampled_from(
    [
        "x-github-event",
        "x-github-delivery",
        "x-hub-signature-256",
        "x-hub-signature",
        "authorization",
        "x-openclaw-token",
        "x-signature",
        "stripe-signature",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "svix-id",
        "x-gitlab-token",
        "x-gitlab-event",
        "x-gitlab-event-uuid",
        "idempotency-key",
        "x-request-id",
        "content-encoding",
        "x-random",
    ]
)


def signed_headers(kind: str, body: bytes, msg_id: str) -> dict[str, str]:
    """Valid credentials for `kind`, so the fuzzing reaches parsing, mapping and recording too."""
    now = str(int(time.time()))
    if kind == "github":
        return {
            "x-hub-signature-256": "sha256="
            + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        }
    if kind == "signed":
        return {"x-signature": "sha256=" + hmac.new(HMAC_SECRET.encode(), body, hashlib.sha256).hexdigest()}
    if kind == "stripe":
        mac = hmac.new(STRIPE_SECRET.encode(), now.encode() + b"." + body, hashlib.sha256).hexdigest()
        return {"stripe-signature": f"t={now},v1={mac}"}
    if kind == "sw":
        key = base64.b64decode(SW_SECRET.removeprefix("whsec_"))
        mac = base64.b64encode(hmac.new(key, f"{msg_id}.{now}.".encode() + body, hashlib.sha256).digest())
        return {"webhook-id": msg_id, "webhook-timestamp": now, "webhook-signature": "v1," + mac.decode()}
    if kind == "gitlab":
        return {"x-gitlab-token": TOKEN}
    return {"authorization": f"Bearer {TOKEN}"}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, dict[str, str], bytes]:
    source = draw(
        st.sampled_from([*SOURCES, "agent", "wake"]) | st.text("abcxyz-_.%", min_size=1, max_size=12)
    )
    body = draw(bodies)
    headers = draw(st.dictionaries(header_names, header_text, max_size=6))
    ctype = draw(content_types)
    if ctype:
        headers["content-type"] = ctype
    if draw(st.booleans()):
        headers.update(signed_headers(source, body, draw(header_text)))
    if source == "github" and draw(st.booleans()):
        headers["x-github-delivery"] = draw(st.uuids()).hex
        headers["x-github-event"] = draw(st.sampled_from(["push", "pull_request", "issues", "ping", "x"]))
    return source, headers, body


class InProcess:
    """The ingress app driven through httpx.ASGITransport on one event loop kept for the module."""

    def __init__(self, config: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.redis = aioredis.Redis.from_url(config.redis_url or "")
        app = create_app(config, self.redis)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://relay")

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.loop.run_until_complete(self.http.post(path, content=body, headers=headers))

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.run_until_complete(self.redis.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def app(redis_server: RedisServer) -> Iterator[tuple[InProcess, redis.Redis]]:
    config = Settings(
        redis_url=redis_server.url,
        sources=SOURCES,
        mappings=MAPPINGS,
        ingress_token=[TOKEN],
        auth_failures_max=1000,
    )
    client = redis.Redis.from_url(redis_server.url)
    ingress = InProcess(config)
    yield ingress, client
    ingress.close()
    client.close()


@given(requests())
def test_ingress_never_fails_and_never_loses_an_acknowledged_event(
    app: tuple[InProcess, redis.Redis], request_: tuple[str, dict[str, str], bytes]
) -> None:
    ingress, client = app
    source, headers, body = request_
    response = ingress.post(f"/hooks/{quote_plus(source)}", body, headers)
    assert response.status_code in {200, 202, 400, 401, 404, 413, 415, 429}, response.text
    answer = response.json()
    if response.status_code >= 400:
        assert answer["ok"] is False and isinstance(answer["error"], str) and answer["error"]
    else:
        assert answer["ok"] is True
        assert client.exists(f"relay:event:{answer['eventId']}"), answer


# Payloads shaped like each sender's, with random values where the transforms look.
KEYS = [
    "action",
    "repository",
    "organization",
    "sender",
    "pusher",
    "ref",
    "commits",
    "compare",
    "pull_request",
    "review",
    "comment",
    "issue",
    "workflow_run",
    "check_run",
    "release",
    "object_kind",
    "project",
    "object_attributes",
    "user",
    "merge_request",
    "builds",
    "alerts",
    "status",
    "groupKey",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "message",
    "messages",
    "subscription",
    "type",
    "id",
    "data",
    "livemode",
    "created",
    "timestamp",
    "source",
    "text",
    "mode",
    "name",
    "sessionKey",
    "body",
    "title",
    "number",
    "html_url",
    "conclusion",
    "labels",
    "annotations",
    "fingerprint",
    "startsAt",
]
shaped = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(KEYS), children, max_size=6)
    ),
    max_leaves=40,
)
PRESET_CONFIGS = {name: SourceConfig.model_validate(cfg) for name, cfg in SOURCES.items()}
PRESET_CONFIGS["agent"] = PRESET_CONFIGS["wake"] = SourceConfig(preset="generic", token=[TOKEN])


@given(
    st.sampled_from(sorted(PRESET_CONFIGS)),
    st.dictionaries(header_names, header_text, max_size=6),
    bodies | shaped.map(_dumps),
    content_types,
)
def test_presets_parse_verify_delivery_id_and_transform_raise_only_relay_errors(
    source: str, headers: dict[str, str], body: bytes, ctype: str
) -> None:
    cfg = PRESET_CONFIGS[source]
    preset = presets.for_source(presets.REGISTRY[source if source in ("agent", "wake") else cfg.preset], cfg)
    headers = {**headers, "content-type": ctype}
    for signed in (False, True):
        if signed:
            headers.update(signed_headers(source, body, "msg_fuzz"))
        try:
            preset.verify(headers, body, cfg)
        except RelayError:
            pass
    try:
        payload = preset.parse(headers, body)
        delivery_id = preset.delivery_id(headers, payload, body)
        preset.skip(headers, payload, cfg)
    except RelayError:
        return
    assert isinstance(delivery_id, str) and delivery_id
    event = Event(
        source=source, payload=payload, headers=headers, query={}, path=source, delivery_id=delivery_id
    )
    try:
        actions = Mapper([], {}).map(event, preset.transform)
    except (RelayError, TransformError):  # any other exception fails: every preset reads payloads defensively
        return
    for action in actions:
        text = action.text if action.kind == "wake" else action.message  # type: ignore[union-attr]
        assert "\x00" not in text and "\r" not in text
        assert "allowUnsafeExternalContent" not in orjson.dumps(action.body()).decode()


@pytest.mark.parametrize("source", sorted(k for k in PRESET_CONFIGS if k not in ("agent", "wake")))
@given(payload=shaped)
def test_preset_transforms_take_hostile_payloads(source: str, payload: Any) -> None:
    """The default transforms on payloads that parse but are not what the sender documents."""
    cfg = PRESET_CONFIGS[source]
    preset = presets.for_source(presets.REGISTRY[cfg.preset], cfg)
    headers = {"x-github-event": "push", "x-gitlab-event": "Push Hook", "content-type": "application/json"}
    try:
        parsed = preset.parse(headers, _dumps(payload))  # what the preset lets through to its transform
    except RelayError:
        return
    event = Event(source=source, payload=parsed, headers=headers, query={}, path=source, delivery_id="d")
    try:
        Mapper([], {}).map(event, preset.transform)
    except (RelayError, TransformError):  # any other exception fails: every preset reads payloads defensively
        pass
