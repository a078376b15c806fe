"""Reading a request body within a size limit (413) and a time limit (408): the hooks and the console."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from relay.errors import PayloadTooLarge, RequestTimeout


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """Read the body, refusing (413) as soon as it passes `limit` bytes: nothing past it is read;
    and (408) when it has not all arrived within `timeout` seconds (a sender that trickles)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"body is larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {timeout:g} s") from None
    return b"".join(chunks)
