"""The Starlette ingress: a thin HTTP adapter around `relay.ingress.intake`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.exceptions
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from rq.worker_registration import WORKERS_BY_QUEUE_KEY
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from relay import tracing
from relay.config import Settings
from relay.errors import (
    HeadersTooLarge,
    RelayError,
    Unauthorized,
    Unavailable,
)
from relay.ingress.body import read_body
from relay.ingress.intake import Ingress
from relay.ingress.lockout import AuthGuard
from relay.ingress.proxies import TrustedProxies, parse_networks
from relay.metrics import RedisCollector
from relay.store import keys
from relay.store.connection import connect, connect_async
from relay.store.events import EventStore

log = logging.getLogger("relay.app")
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


class Answer(JSONResponse):
    """A JSON answer rendered by orjson: the same compact UTF-8 text as Starlette's, for less CPU."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: RelayError) -> JSONResponse:
    return Answer({"ok": False, "error": exc.message}, status_code=exc.status_code, headers=exc.headers)


def create_app(settings: Settings, redis_client: aioredis.Redis | None = None) -> Starlette:
    client = redis_client or connect_async(settings.redis_url or DEFAULT_REDIS, settings)
    tracing.configure_from_env("openclaw-relay")  # relay.tracing: only when OTEL_* asks for it
    store = EventStore(
        client,
        dedupe_ttl=settings.dedupe_ttl_seconds,
        event_ttl=settings.event_ttl_seconds,
        min_replicas=settings.durability.min_replicas,
        replica_timeout_ms=settings.durability.replica_timeout_ms,
    )
    ingress = Ingress(settings, store)
    current = [ingress]  # relay.reload swaps in a new Ingress; a request keeps the one it started with
    guard = AuthGuard(
        client, max_failures=settings.auth_failures_max, window_seconds=settings.auth_failures_window_seconds
    )

    async def hook(request: Request) -> Response:
        ingress = current[0]
        try:
            if request.method != "POST":
                return JSONResponse(
                    {"ok": False, "error": "method not allowed"}, 405, headers={"Allow": "POST"}
                )
            raw_headers = request.scope["headers"]
            if len(raw_headers) > settings.max_headers:
                raise HeadersTooLarge(f"more than {settings.max_headers} request headers")
            headers, repeated = header_map(raw_headers)
            source = ingress.source(request.path_params["source"])
            body = await read_body(request, source.config.max_body_bytes, settings.body_timeout_seconds)
            address = (
                request.client.host if request.client else "unknown"
            )  # relay.ingress.proxies resolved it
            try:
                with tracing.span("relay.webhook", {"relay.source": source.name}, event=True):
                    outcome = await ingress.handle(
                        source,
                        headers,
                        request.query_params if request.scope.get("query_string") else {},
                        body,
                        repeated=repeated,
                    )
                    tracing.set_attributes(
                        relay__event_id=outcome.body.get("eventId"),
                        http__response__status_code=outcome.status,
                    )
            except Unauthorized as exc:
                raise await guard.failed(address, source.name, exc) from None
            await guard.succeeded(address, source.name)
            return Answer(outcome.body, status_code=outcome.status)
        except RelayError as exc:
            await count_refusal(request.path_params["source"], exc)
            return error_response(exc)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.error("redis unavailable: %s", exc)
            return error_response(Unavailable("storage unavailable; nothing was accepted, retry later"))
        except ClientDisconnect:
            # The sender went away mid-body: nothing was accepted and nobody is left to answer.
            log.info("client disconnected before sending the whole body", extra={"status": 499})
            return Response(status_code=400)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def count_refusal(name: str, exc: RelayError) -> None:
        # Unknown names are the sender's text: one label for all of them, never the name itself.
        label = name if name in current[0].sources else "(unknown)"
        try:
            await client.hincrby(keys.STATS, f"refused|{exc.status_code}|{label}", 1)
        except redis.exceptions.RedisError:
            pass
        log.info("refused: %s", exc.message, extra={"source": label, "status": exc.status_code})

    async def readyz(request: Request) -> Response:
        """Ready when Redis answers. Workers are reported, and required only with ?workers=1:
        the ingress keeps accepting (durably) while delivery is down, which is the point."""
        try:
            await client.ping()
            workers = await client.scard(WORKERS_BY_QUEUE_KEY % settings.queue)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return JSONResponse({"ok": False, "error": "redis unreachable"}, status_code=503)
        if not workers and request.query_params.get("workers") == "1":
            return JSONResponse({"ok": False, "error": "no delivery worker is running", "workers": 0}, 503)
        return JSONResponse({"ok": True, "workers": workers})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from relay.reload import IngressReloader  # SIGHUP and `relay reload` (docs/operations.md)

        reloader = IngressReloader(current, settings, client, lambda new: Ingress(new, store))
        await reloader.start()
        yield
        await reloader.stop()
        await client.aclose()

    methods = ["POST", "GET", "PUT", "DELETE", "PATCH"]
    routes: list[BaseRoute] = [
        Route("/hooks/{source}", hook, methods=methods),
        Route("/hooks/{source}/", hook, methods=methods),  # the same answer, never a redirect
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
    from relay.console import console_routes  # the delivery console (docs/console.md); [] unless enabled

    routes += console_routes(settings)
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    # No redirect for a trailing slash: Starlette builds its Location from the sender's Host header.
    app.router.redirect_slashes = False
    networks = parse_networks(settings.trusted_proxies)
    if networks:
        app.add_middleware(TrustedProxies, networks=networks)
    return app


def header_map(raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], frozenset[str]]:
    """The request's headers as a dict (names in lower case, as ASGI gives them; a repeated header's
    first value, as Starlette's `Headers.get`), and the names of those it carries more than once."""
    headers: dict[str, str] = {}
    twice: set[str] = set()
    for name, value in raw:
        key = name.decode("latin-1")
        if key in headers:
            twice.add(key)
        else:
            headers[key] = value.decode("latin-1")
    return headers, frozenset(twice)


def create_metrics_app(settings: Settings) -> Starlette:
    """/metrics alone, for its own listener (`metrics.host`/`metrics.port`, loopback by default): the
    public hooks listener does not serve it, since its labels name every configured source."""
    # /metrics runs in Starlette's thread pool with a plain client; see relay.metrics.
    sync_client = connect(settings.redis_url or DEFAULT_REDIS, settings)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(sync_client, settings.queue))

    def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        sync_client.close()

    return Starlette(routes=[Route("/metrics", metrics)], lifespan=lifespan)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route: 404, wrong method: 405) in the relay's JSON shape."""
    assert isinstance(exc, HTTPException)
    message = "no such hook" if exc.status_code == 404 else str(exc.detail).lower()
    return JSONResponse({"ok": False, "error": message}, status_code=exc.status_code, headers=exc.headers)
