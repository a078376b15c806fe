"""Baselines for the ingress benchmark: a bare Starlette app on the same uvicorn settings as `relay serve`.

    python bench/bare_app.py --port P [--mode bare|verify] [--secret S] [--token T]

bare    read the body, answer 202 with a small JSON body (the floor: HTTP + Starlette + 7 KB body)
verify  bare + HMAC-SHA256 check of X-Hub-Signature-256 (or, for a request with an
        Authorization header, a constant-time bearer token check: the alertmanager workload)
        + orjson parse (the relay's CPU work before it touches Redis), so the table can split the
        relay's cost into verify+parse and the rest (mapping, event record, Redis round trip)
"""

from __future__ import annotations

import argparse
import hashlib
import hmac

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def create_app(mode: str, secret: bytes, token: bytes = b"") -> Starlette:
    async def bare(request: Request) -> Response:
        await request.body()
        return JSONResponse({"ok": True}, status_code=202)

    async def verify(request: Request) -> Response:
        body = await request.body()
        authorization = request.headers.get("authorization")
        if authorization is not None:
            presented = authorization.removeprefix("Bearer ").encode()
            expected = token
        else:
            presented = request.headers.get("x-hub-signature-256", "").removeprefix("sha256=").encode()
            expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
        if not expected or not hmac.compare_digest(expected, presented):
            return JSONResponse({"ok": False}, status_code=401)
        orjson.loads(body)
        return JSONResponse({"ok": True}, status_code=202)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    handler = {"bare": bare, "verify": verify}[mode]
    return Starlette(routes=[Route("/hooks/{source}", handler, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["bare", "verify"], default="bare")
    parser.add_argument("--secret", default="")
    parser.add_argument("--token", default="")
    args = parser.parse_args()
    # The same uvicorn.run() arguments as relay.cli.run._serve: loop/http "auto" pick uvloop and
    # httptools when installed, exactly as for `relay serve`.
    uvicorn.run(
        create_app(args.mode, args.secret.encode(), args.token.encode()),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
