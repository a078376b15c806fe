"""The Starlette ingress: a thin HTTP adapter around `relay.ingress`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
import redis.exceptions
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import Settings
from .errors import PayloadTooLarge, RelayError, Unavailable
from .ingress import Ingress
from .queue import EventStore

log = logging.getLogger("relay.app")


def error_response(exc: RelayError) -> JSONResponse:
    return JSONResponse({"ok": False, "error": exc.message}, status_code=exc.status_code, headers=exc.headers)


async def read_body(request: Request, limit: int) -> bytes:
    """Read the body, refusing (413) as soon as it passes `limit` bytes: nothing past it is read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: Settings, redis_client: aioredis.Redis | None = None) -> Starlette:
    client = redis_client or aioredis.Redis.from_url(settings.redis_url or "redis://127.0.0.1:6379/0")
    store = EventStore(client, dedupe_ttl=settings.dedupe_ttl_seconds, event_ttl=settings.event_ttl_seconds)
    ingress = Ingress(settings, store)

    async def hook(request: Request) -> Response:
        try:
            if request.method != "POST":
                return JSONResponse(
                    {"ok": False, "error": "method not allowed"}, 405, headers={"Allow": "POST"}
                )
            source = ingress.source(request.path_params["source"])
            body = await read_body(request, source.config.max_body_bytes)
            outcome = await ingress.handle(source, request.headers, request.query_params, body)
            return JSONResponse(outcome.body, status_code=outcome.status)
        except RelayError as exc:
            return error_response(exc)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            log.error("redis unavailable: %s", exc)
            return error_response(Unavailable("storage unavailable; nothing was accepted, retry later"))

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        try:
            await client.ping()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            return JSONResponse({"ok": False, "error": "redis unreachable"}, status_code=503)
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    routes = [
        Route("/hooks/{source}", hook, methods=["POST", "GET", "PUT", "DELETE", "PATCH"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
