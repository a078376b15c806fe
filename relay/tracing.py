"""OpenTelemetry tracing, optional: `pip install 'openclaw-relay[otel]'` and set the standard
`OTEL_*` variables (an exporter or an OTLP endpoint); otherwise every function here does nothing.

One trace per event: `relay.webhook` (the ingress request) with children `relay.protocol.verify`
and `relay.record`; the worker continues the same trace from the `traceparent` kept on the event:
`relay.map` (the mapping stage, after the ingress has answered), `relay.store.events` (from
routing to the first attempt) and one `relay.deliver` per attempt, whose W3C `traceparent` is
sent to the gateway with the action. Sampling follows the SDK's standard `OTEL_TRACES_SAMPLER` /
`OTEL_TRACES_SAMPLER_ARG`. Spans carry ids, kinds, states and HTTP statuses, never payload content.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

_tracer: Any = None  # an opentelemetry Tracer once configured
_event_context: contextvars.ContextVar[Any] = contextvars.ContextVar("relay_event_context", default=None)


def wanted() -> bool:
    """Tracing is on when the environment names an exporter or an OTLP endpoint (and the SDK is
    not disabled)."""
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "")
    return (bool(exporter) and exporter != "none") or bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure_from_env(service: str) -> bool:
    """Set up tracing with the OTLP/HTTP exporter when the environment asks for it."""
    if _tracer is not None or not wanted():
        return _tracer is not None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        import logging

        logging.getLogger("relay.tracing").warning(
            "OTEL_* is set but the otel extra is not installed "
            "(pip install 'openclaw-relay[otel]'); tracing off"
        )
        return False
    setup(BatchSpanProcessor(OTLPSpanExporter()), service)
    return True


def setup(processor: Any, service: str = "openclaw-relay") -> Any:
    """Trace through `processor` (tests pass a SimpleSpanProcessor over an InMemorySpanExporter).
    The sampler comes from OTEL_TRACES_SAMPLER; the resource from OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES, `service` being the default name. Returns the TracerProvider."""
    global _tracer
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    _tracer = provider.get_tracer("openclaw-relay")
    return provider


def disable() -> None:
    global _tracer
    _tracer = None


def enabled() -> bool:
    return _tracer is not None


def span(name: str, attributes: dict[str, Any] | None = None, *, event: bool = False) -> Any:
    """A span around a block (a no-op without tracing). `event=True` marks the event's root span,
    whose context `traceparent()` returns for the record."""
    if _tracer is None:
        return nullcontext()
    return (
        _root(name, attributes)
        if event
        else _tracer.start_as_current_span(name, attributes=_clean(attributes))
    )


@contextmanager
def _root(name: str, attributes: dict[str, Any] | None) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(name, kind=SpanKind.SERVER, attributes=_clean(attributes)) as current:
        token = _event_context.set(current.get_span_context())
        try:
            yield current
        finally:
            _event_context.reset(token)


def traceparent() -> str | None:
    """The W3C traceparent of the event's root span (stored with the event), or None."""
    context = _event_context.get()
    if _tracer is None or context is None or not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def continued(name: str, stored_traceparent: str | None, attributes: dict[str, Any] | None = None) -> Any:
    """A span of a later stage of an event's trace (the mapping stage, in a worker): a child of the
    event's root span when its traceparent was stored; a no-op without tracing."""
    if _tracer is None:
        return nullcontext()
    from opentelemetry.propagate import extract

    parent = extract({"traceparent": stored_traceparent}) if stored_traceparent else None
    return _tracer.start_as_current_span(name, context=parent, attributes=_clean(attributes))


@contextmanager
def delivery(
    stored_traceparent: str | None, queued_at: float | None, attributes: dict[str, Any]
) -> Iterator[None]:
    """One delivery attempt's span, a child of the event's root span when its traceparent was
    stored; before the first attempt, a `relay.store.events` span covers the wait since routing."""
    if _tracer is None:
        yield
        return
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    parent = extract({"traceparent": stored_traceparent}) if stored_traceparent else None
    if queued_at and attributes.get("relay.attempt") == 1:
        queued = _tracer.start_span(
            "relay.store.events",
            context=parent,
            start_time=int(queued_at * 1e9),
            attributes=_clean(attributes),
        )
        queued.end()
    with _tracer.start_as_current_span(
        "relay.deliver", context=parent, kind=SpanKind.CLIENT, attributes=_clean(attributes)
    ):
        yield


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Add the current span's W3C `traceparent` (and `tracestate`) to outgoing headers."""
    if _tracer is not None:
        from opentelemetry.propagate import inject as otel_inject

        otel_inject(headers)
    return headers


def set_attributes(**attributes: Any) -> None:
    if _tracer is None:
        return
    from opentelemetry import trace

    trace.get_current_span().set_attributes(_clean(attributes))


def _clean(attributes: dict[str, Any] | None) -> dict[str, Any]:
    return {k.replace("__", "."): v for k, v in (attributes or {}).items() if v is not None and v != ""}
