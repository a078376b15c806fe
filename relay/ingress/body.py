"""Reading a request body within a size limit (413) and a time limit (408): the hooks and the console."""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request

from relay.errors import PayloadTooLarge, RequestTimeout


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """Read the body, refusing (413) as soon as it passes `limit` bytes: nothing past it is read;
    and (408) when it has not all arrived within `timeout` seconds (a sender that trickles)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    # A timer that cancels this task, where asyncio.timeout would serve: the same 408, for half
    # its CPU (its context manager was ~5 µs of every webhook).
    task = asyncio.current_task()
    assert task is not None
    cancelling = task.cancelling()
    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        task.cancel()

    timer = asyncio.get_running_loop().call_later(timeout, expire) if timeout is not None else None
    try:
        # ASGI's receive() directly: Starlette's request.stream() wraps it in an async generator,
        # a cost on every webhook.
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body is larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except asyncio.CancelledError:
        if not expired or task.uncancel() > cancelling:
            raise  # cancelled by someone else too (the server, a shutdown): not a timeout
        raise RequestTimeout(f"the body did not arrive within {timeout:g} s") from None
    finally:
        if timer is not None:
            timer.cancel()
    if expired:  # fired as the last chunk came: its cancel is withdrawn, as asyncio.timeout does
        task.uncancel()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
