"""OpenTelemetry tracing (relay.tracing, the `otel` extra), with the SDK's in-memory exporter:
a real webhook through the ingress app, mapped, routed and delivered in this process to a real
gateway stub over HTTP, becomes one trace, and the gateway receives its W3C traceparent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from relay import tracing
from relay.config import load_settings
from relay.delivery import attempt as delivery
from relay.ingress.app import create_app
from relay.worker.dispatch import Router, ensure_group
from tests.conftest import GENERIC_TOKEN, GITHUB_SECRET, HOOKS_TOKEN, Relay, github_fixture, sign

pytest.importorskip("opentelemetry.sdk", reason="the otel extra (make install installs it)")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

PUSH = github_fixture("push.default")


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    for name, value in (
        ("OPENCLAW_HOOKS_TOKEN", HOOKS_TOKEN),
        ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
        ("GENERIC_WEBHOOK_TOKEN", GENERIC_TOKEN),
    ):
        monkeypatch.setenv(name, value)
    memory = InMemorySpanExporter()
    tracing.setup(SimpleSpanProcessor(memory), "relay-test")
    yield memory
    tracing.disable()


def webhook(relay: Relay, delivery_id: str) -> dict[str, Any]:
    """POST a signed GitHub push to the ingress app in this process; map and route its event (a
    router step, as the worker holding the mapping lease would), and deliver its action."""
    settings = load_settings(relay.config_path)

    async def post() -> httpx.Response:
        client = aioredis.Redis.from_url(relay.redis_url)
        transport = httpx.ASGITransport(app=create_app(settings, client), client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as http:
            answer = await http.post(
                "/hooks/github",
                content=PUSH,
                headers={
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": delivery_id,
                    "X-Hub-Signature-256": sign(PUSH),
                },
            )
        await client.aclose()
        return answer

    answer = asyncio.run(post())
    assert answer.status_code == 202, answer.text
    sync = redis.Redis.from_url(relay.redis_url)
    ensure_group(sync)
    assert Router(sync, settings, consumer="trace-test").step() == 1
    delivery.configure(settings)
    try:
        assert delivery.deliver(_first_action(sync, answer.json()["eventId"])) == "delivered"
    finally:
        delivery.context().http.close()
        sync.close()
    return dict(answer.json())


def _first_action(r: redis.Redis, event_id: str) -> str:
    import orjson

    return str(orjson.loads(r.hget(f"relay:event:{event_id}", "actions"))[0]["id"])


def test_a_webhook_is_one_trace_from_ingress_to_the_gateway(
    relay_factory: Any, redis_client: redis.Redis, exporter: InMemorySpanExporter
) -> None:
    relay = relay_factory()
    stub = relay.start_stub()
    event_id = webhook(relay, "trace-1")["eventId"]

    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {
        "relay.webhook",
        "relay.protocol.verify",
        "relay.map",
        "relay.record",
        "relay.store.events",
        "relay.deliver",
    }
    root = spans["relay.webhook"]
    assert root.parent is None and root.attributes["relay.event_id"] == event_id
    assert root.resource.attributes["service.name"] == "relay-test"
    for name in ("relay.protocol.verify", "relay.map", "relay.record", "relay.store.events", "relay.deliver"):
        assert spans[name].context.trace_id == root.context.trace_id, name
        assert spans[name].parent.span_id == root.context.span_id, name
    # The mapping runs after the ingress has answered (in the router that holds the mapping lease):
    # its span continues the trace stored with the event, once the request's span has ended.
    mapped = spans["relay.map"]
    assert mapped.parent.is_remote and mapped.start_time >= root.end_time >= spans["relay.record"].end_time
    assert mapped.attributes["relay.event_id"] == event_id and mapped.attributes["relay.source"] == "github"
    assert mapped.attributes["relay.state"] == "queued" and mapped.attributes["relay.actions"] == 1
    deliver = spans["relay.deliver"]
    assert deliver.attributes["relay.attempt"] == 1 and deliver.attributes["relay.outcome"] == "delivered"
    assert deliver.attributes["http.response.status_code"] == 200

    (run,) = stub.runs()
    version, trace_id, parent_id, flags = run["traceparent"].split("-")
    assert (version, trace_id, parent_id) == (
        "00",
        f"{root.context.trace_id:032x}",
        f"{deliver.context.span_id:016x}",
    )
    assert int(flags, 16) & 1  # sampled
    # Ids, kinds and statuses only: nothing of the payload is in any attribute.
    values = " ".join(str(v) for span in spans.values() for v in span.attributes.values())
    assert "Codertocat" not in values and "gitignore" not in values


def test_sampling_follows_the_standard_variables(
    relay_factory: Any, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    for name, value in (
        ("OPENCLAW_HOOKS_TOKEN", HOOKS_TOKEN),
        ("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET),
        ("GENERIC_WEBHOOK_TOKEN", GENERIC_TOKEN),
    ):
        monkeypatch.setenv(name, value)
    memory = InMemorySpanExporter()
    tracing.setup(SimpleSpanProcessor(memory))
    try:
        relay = relay_factory()
        stub = relay.start_stub()
        webhook(relay, "trace-2")
    finally:
        tracing.disable()
    assert memory.get_finished_spans() == ()
    (run,) = stub.runs()
    assert not int(run["traceparent"].split("-")[3], 16) & 1  # propagated, marked not sampled


def test_tracing_is_off_unless_the_environment_configures_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing.wanted() and not tracing.configure_from_env("x") and not tracing.enabled()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing.wanted()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing.wanted()
    assert tracing.inject({"a": "b"}) == {"a": "b"}  # off: headers untouched
