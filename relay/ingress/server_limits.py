"""uvicorn's httptools protocol with limits on the request head, so hostile senders get bounded memory.

httptools (llhttp) accepts request heads of any size and uvicorn waits for them as long as the
sender trickles them. This protocol refuses, with the relay's JSON error body and the connection
closed: a request line plus headers over `max_head_bytes` (431), more than `max_headers` headers
(431), and a head not complete within `head_timeout` seconds of its first byte or of the
connection's opening (408). Bodies are limited by the app (`relay.ingress.body.read_body`).

An answer sent before the body was fully read (404, 405, 413, 401, 429, 408) ends the connection
(`connection: close`): uvicorn would otherwise keep reading and discarding the rest, and a sender
dribbling a byte a second would hold the connection forever. As a backstop, a body still
incomplete `head_timeout + BODY_GRACE` seconds after its head closes the connection whatever the
app is doing.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024
BODY_GRACE = 2.0  # past the app's own 408 (body_timeout_seconds), before the protocol closes


class _Refused(Exception):
    pass


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = MAX_HEAD_BYTES
    max_headers = 100
    head_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._refusal: tuple[int, str] | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_body()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self._refuse(408, f"the request head did not arrive within {self.head_timeout:g} s")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        if self._head_timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if len(self.headers) >= self.max_headers:
            self._refusal = (431, f"more than {self.max_headers} request headers")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle is before:
            return  # an upgrade request: no cycle was made
        original = cycle.send

        async def send(message: Any) -> None:
            # Answered before the whole body arrived: close after the answer, read nothing more.
            if message["type"] == "http.response.start" and cycle.more_body:
                cycle.keep_alive = False
            await original(message)

        cycle.send = send  # type: ignore[method-assign]
        self._disarm_body()
        self._body_timer = self.loop.call_later(self.head_timeout + BODY_GRACE, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._disarm_body()
        super().on_message_complete()

    def _disarm_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.cycle is None:
            return
        self.cycle.keep_alive = False
        if self.cycle.response_started:
            self.transport.close()
        else:
            self._refuse(408, f"the request body did not arrive within {self.head_timeout:g} s")

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._refusal = (431, f"request head larger than {self.max_head_bytes} bytes")
            raise _Refused

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this for any parser error, including the ones raised above.
        status, text = self._refusal or (400, "malformed HTTP request")
        self._refuse(status, text)

    def _refuse(self, status: int, text: str) -> None:
        self._disarm()
        self._disarm_body()
        body = orjson.dumps({"ok": False, "error": text})
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def protocol(*, max_headers: int, head_timeout: float) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for `uvicorn.run(http=...)`, with these limits."""
    return type(
        "RelayHttpProtocol",
        (LimitedHttpToolsProtocol,),
        {"max_headers": max_headers, "head_timeout": head_timeout},
    )
