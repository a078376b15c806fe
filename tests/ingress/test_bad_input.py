"""Every bad input the relay was tried with, and its answer, against a real ingress process.

`CASES` is the one list: each case is run here, and docs/security.md's bad-input table is generated from it
(`python -m tests.ingress.test_bad_input` prints the table, `--write` writes it; a test checks the doc holds
exactly that).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import httpx
import orjson
import pytest
import redis

from tests.conftest import GENERIC_TOKEN, GITHUB_SECRET, HOOKS_TOKEN, RedisServer, Relay, github_fixture, sign
from tests.paths import FIXTURES, ROOT

DOC = ROOT / "docs" / "security.md"
TABLE_START = (
    "<!-- bad-input-table:start (generated from tests/ingress/test_bad_input.py: "
    "python -m tests.ingress.test_bad_input --write) -->"
)
TABLE_END = "<!-- bad-input-table:end -->"

OLD_GITHUB_SECRET = "old-github-secret-still-valid"
HMAC_SECRETS = ("hmac-secret-new", "hmac-secret-old")
STRIPE_SECRET = "whsec_bad_input_stripe"
SW_SECRETS = [
    "whsec_" + base64.b64encode(b"standard-webhooks-secret-1").decode(),
    "whsec_" + base64.b64encode(b"standard-webhooks-secret-2").decode(),
]
GITLAB_TOKEN = "gitlab-token-bad-input"
ALERTS_TOKEN = "alerts-token-bad-input"
LINEAR_SECRET = "linear-secret-bad-input"
SMALL_LIMIT = 1024
BODY_TIMEOUT = 1.0
LOCKOUT_AFTER = 5

SOURCES: dict[str, Any] = {
    "github": {"preset": "github", "secret": ["env:GITHUB_WEBHOOK_SECRET", OLD_GITHUB_SECRET]},
    "generic": {"preset": "generic", "token": "env:GENERIC_WEBHOOK_TOKEN"},
    "raw": {"preset": "generic", "token": "env:GENERIC_WEBHOOK_TOKEN", "content": "raw"},
    "small": {"preset": "generic", "token": "env:GENERIC_WEBHOOK_TOKEN", "max_body_bytes": SMALL_LIMIT},
    "signed": {
        "preset": "generic",
        "signature_header": "X-Signature",
        "signature_prefix": "sha256=",
        "secret": list(HMAC_SECRETS),
    },
    "stripe": {"preset": "stripe", "secret": STRIPE_SECRET},
    "sw": {"preset": "standard-webhooks", "secret": SW_SECRETS},
    "gitlab": {"preset": "gitlab", "token": GITLAB_TOKEN},
    "alerts": {"preset": "alertmanager", "token": ALERTS_TOKEN},
    "gmail": {"preset": "gmail", "token": "gmail-token-bad-input"},
    "linear": {"preset": "linear", "secret": LINEAR_SECRET},
}
CONSOLE_TOKEN = "console-token-bad-input-0123456789"
MAPPINGS = [
    {"match": {"path": "raw"}, "action": "agent", "messageTemplate": "Raw: {{payload.body}}"},
    {"match": {"path": "signed"}, "action": "wake", "textTemplate": "signed {{payload.n}}"},
]


@dataclass(frozen=True)
class Req:
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    method: str = "POST"
    again: tuple[tuple[str, str | bytes], ...] = ()  # headers sent after `headers` (repeats, raw bytes)


Wire = Callable[[int], tuple[int, dict[str, str], bytes]]


@dataclass(frozen=True)
class Case:
    id: str
    preset: str
    what: str
    status: int
    error: str = ""  # what the error says (a substring); "" for an accepted request
    request: Req | None = None
    prelude: tuple[Req, ...] = ()  # sent first (a first delivery, earlier failures)
    wire: Wire | None = None  # a raw-socket exchange for what httpx cannot send
    html: bool = False  # a console page: the answer is HTML, `error` a substring of it


def _id() -> str:
    return str(uuid.uuid4())


def gh(
    body: bytes,
    *,
    secret: str = GITHUB_SECRET,
    delivery: str | None = None,
    event: str = "push",
    ctype: str = "application/json",
    **extra: str,
) -> Req:
    headers = {
        "Content-Type": ctype,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": _id() if delivery is None else delivery,
        "X-Hub-Signature-256": sign(body, secret),
        **extra,
    }
    return Req("/hooks/github", {k: v for k, v in headers.items() if v}, body)


def generic(
    body: bytes = b'{"a": 1}',
    token: str | None = GENERIC_TOKEN,
    path: str = "/hooks/generic",
    ctype: str = "application/json",
    **extra: str,
) -> Req:
    headers = {"Content-Type": ctype, **extra}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return Req(path, headers, body)


def stripe(body: bytes, *, t: int | None = None, secret: str = STRIPE_SECRET, sig: str | None = None) -> Req:
    ts = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    header = sig if sig is not None else f"t={ts},v1={mac}"
    return Req("/hooks/stripe", {"Content-Type": "application/json", "Stripe-Signature": header}, body)


def sw(
    body: bytes,
    *,
    msg_id: str | None = None,
    t: int | None = None,
    secret: str = SW_SECRETS[0],
    drop: str = "",
) -> Req:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = str(int(time.time()) if t is None else t)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": f"v1,{mac}",
    }
    headers.pop(drop, None)
    return Req("/hooks/sw", headers, body)


def _exchange(
    port: int, head: bytes, chunks: list[bytes], pause: float = 0.0, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """Send `head` then `chunks` (with `pause` between), never finishing unless told; read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the relay answered and closed while we were still sending
            time.sleep(pause)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < _expected_length(data):
            try:
                more = sock.recv(65536)
            except TimeoutError:
                break
            if not more:
                break
            data += more
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0] else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def _expected_length(data: bytes) -> int:
    head, sep, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + len(sep) + int(line.split(b":")[1])
    return 1 << 30


def _request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunked_past_limit(port: int) -> tuple[int, dict[str, str], bytes]:
    """A chunked body that never ends: the relay must answer once it passes the limit."""
    head = _request_head(
        "/hooks/small",
        {
            "Authorization": f"Bearer {GENERIC_TOKEN}",
            "Transfer-Encoding": "chunked",
            "Content-Type": "application/json",
        },
    )
    chunk = b"%x\r\n%s\r\n" % (256, b"x" * 256)
    started = time.monotonic()
    answer = _exchange(port, head, [chunk] * (SMALL_LIMIT // 256 + 2), timeout=5)
    assert time.monotonic() - started < 4, "the relay waited for the end of a body it had refused"
    return answer


def trickled_body(port: int) -> tuple[int, dict[str, str], bytes]:
    head = _request_head(
        "/hooks/generic",
        {
            "Authorization": f"Bearer {GENERIC_TOKEN}",
            "Content-Length": "100",
            "Content-Type": "application/json",
        },
    )
    return _exchange(port, head, [b"{"] * 3, pause=0.2, timeout=BODY_TIMEOUT + 4)


def trickled_head(port: int) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT + 4) as sock:
        sock.sendall(b"POST /hooks/generic HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        sock.sendall(b"X-Slow: 1\r\n")
        data = b""
        while True:
            try:
                more = sock.recv(65536)
            except TimeoutError:
                break
            if not more:
                break
            data += more
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]) if head else 0, {}, body


def huge_header(port: int) -> tuple[int, dict[str, str], bytes]:
    head = _request_head(
        "/hooks/generic",
        {"Authorization": f"Bearer {GENERIC_TOKEN}", "Content-Length": "2", "X-Big": "a" * 100_000},
    )
    return _exchange(port, head, [b"{}"])


def many_headers(port: int) -> tuple[int, dict[str, str], bytes]:
    extra = {f"X-Extra-{i}": "1" for i in range(101)}
    head = _request_head(
        "/hooks/generic", {"Authorization": f"Bearer {GENERIC_TOKEN}", "Content-Length": "2", **extra}
    )
    return _exchange(port, head, [b"{}"])


def malformed_request_line(port: int) -> tuple[int, dict[str, str], bytes]:
    return _exchange(port, b"POST /hooks/generic HTTP/9.9 garbage\r\n\r\n", [])


def _dup(req: Req, name: str, value: str | bytes) -> Req:
    """`req` with `name` sent a second time."""
    return Req(req.path, req.headers, req.body, req.method, ((name, value),))


def linear(body: bytes = b"", delivery: str | None = None) -> Req:
    body = body or orjson.dumps(
        {
            "type": "Issue",
            "action": "create",
            "data": {"id": "i1", "title": "t"},
            "webhookTimestamp": int(time.time() * 1000),
        }
    )
    sig = hmac.new(LINEAR_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return Req(
        "/hooks/linear",
        {
            "Content-Type": "application/json",
            "Linear-Signature": sig,
            "Linear-Delivery": delivery or _id(),
            "Linear-Event": "Issue",
        },
        body,
    )


def agent(body: dict[str, Any]) -> Req:
    return generic(orjson.dumps(body), token=HOOKS_TOKEN, path="/hooks/agent")


def early_answer_closes(port: int) -> tuple[int, dict[str, str], bytes]:
    """An unknown hook with a body still coming, one byte at a time: answered, then closed."""
    head = _request_head("/hooks/nope", {"Content-Length": "100000", "Content-Type": "application/json"})
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT + 4) as sock:
        sock.sendall(head)
        data = b""
        while True:
            try:
                sock.sendall(b" ")
            except OSError:
                pass
            try:
                sock.settimeout(0.2)
                more = sock.recv(65536)
            except TimeoutError:
                assert time.monotonic() - started < BODY_TIMEOUT + 4, "the connection was held open"
                continue
            except OSError:
                break
            if not more:
                break
            data += more
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers.get("connection") == "close", headers
    return int(lines[0].split()[1]), headers, body


@contextlib.contextmanager
def _console_session(port: int) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        assert client.post("/console/login", data={"token": CONSOLE_TOKEN}).status_code == 303
        yield client


def _answer(response: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    return response.status_code, dict(response.headers), response.content


def console_page(path: str) -> Wire:
    def wire(port: int) -> tuple[int, dict[str, str], bytes]:
        with _console_session(port) as client:
            return _answer(client.get(path))

    return wire


def console_foreign_cookie(port: int) -> tuple[int, dict[str, str], bytes]:
    with httpx.Client(timeout=10) as client:
        return _answer(
            client.get(
                f"http://127.0.0.1:{port}/console",
                headers=[("Cookie", b"relay_console=9999999999.n.\xc3\xa9\xff")],
            )
        )


def console_non_ascii_csrf(port: int) -> tuple[int, dict[str, str], bytes]:
    with _console_session(port) as client:
        return _answer(
            client.post(
                "/console/logout",
                content=b"csrf=%C3%A9%E2%82%AC",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        )


def console_deep_raw_event(port: int) -> tuple[int, dict[str, str], bytes]:
    req = generic(b"[" * 600 + b"]" * 600, path="/hooks/raw", ctype="text/plain")
    event_id = httpx.post(f"http://127.0.0.1:{port}{req.path}", content=req.body, headers=req.headers).json()[
        "eventId"
    ]
    with _console_session(port) as client:
        return _answer(client.get(f"/console/events/{event_id}"))


def console_login_throttled(port: int) -> tuple[int, dict[str, str], bytes]:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        answers = [client.post("/console/login", data={"token": f"guess-{i}"}).status_code for i in range(10)]
        assert answers == [401] * 10
        return _answer(client.post("/console/login", data={"token": CONSOLE_TOKEN}))


LONG_KEY = "k" * 250
REPEATED = "repeated"


PUSH = github_fixture("push.default")
REPLAYED_DELIVERY = _id()
REPLAYED_SW = f"msg_{uuid.uuid4().hex}"
STRIPE_EVENT = orjson.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "invoice.paid", "data": {"object": {}}})
AM_BODY = (FIXTURES / "alertmanager" / "webhook_v4.firing.json").read_bytes()
DEEP = b"[" * 65 + b"]" * 65
BAD_GITHUB = gh(PUSH, secret="a-wrong-secret")

CASES: list[Case] = [
    # Routing and method
    Case(
        "unknown-source",
        "any",
        "POST to a hook name that is not configured",
        404,
        "no such hook",
        Req("/hooks/nope", {"Content-Type": "application/json"}, b"{}"),
    ),
    Case(
        "unknown-source-near-name",
        "any",
        "a name one letter off a configured one (names are not revealed)",
        404,
        "no such hook",
        Req("/hooks/githu", {"Content-Type": "application/json"}, b"{}"),
    ),
    Case(
        "wrong-method", "any", "GET on a hook", 405, "method not allowed", Req("/hooks/github", method="GET")
    ),
    # Size, time and head limits
    Case(
        "body-too-large-declared",
        "generic",
        f"Content-Length over the source's max_body_bytes ({SMALL_LIMIT})",
        413,
        "larger than",
        generic(b"x" * (SMALL_LIMIT + 1), path="/hooks/small"),
    ),
    Case(
        "body-too-large-chunked",
        "generic",
        "a chunked body that passes the limit and never ends: answered before the sender finished",
        413,
        "larger than",
        wire=chunked_past_limit,
    ),
    Case(
        "body-trickle",
        "generic",
        f"a body that trickles past body_timeout_seconds ({BODY_TIMEOUT:g} s)",
        408,
        "did not arrive",
        wire=trickled_body,
    ),
    Case(
        "head-trickle",
        "any",
        "request headers that never finish (slow loris)",
        408,
        "did not arrive",
        wire=trickled_head,
    ),
    Case("header-too-large", "any", "a 100 kB header", 431, "request head larger than", wire=huge_header),
    Case(
        "too-many-headers",
        "any",
        "101 request headers",
        431,
        "more than 100 request headers",
        wire=many_headers,
    ),
    Case(
        "malformed-http",
        "any",
        "a request line that is not HTTP/1.x",
        400,
        "malformed HTTP request",
        wire=malformed_request_line,
    ),
    # GitHub signatures
    Case(
        "github-no-signature",
        "github",
        "no X-Hub-Signature-256",
        401,
        "missing X-Hub-Signature-256",
        gh(PUSH, **{"X-Hub-Signature-256": ""}),
    ),
    Case(
        "github-wrong-secret",
        "github",
        "signed with another secret",
        401,
        "invalid X-Hub-Signature-256",
        BAD_GITHUB,
    ),
    Case(
        "github-malformed-signature",
        "github",
        "signature without the sha256= prefix",
        401,
        "malformed X-Hub-Signature-256",
        gh(PUSH, **{"X-Hub-Signature-256": "deadbeef"}),
    ),
    Case(
        "github-sha1-only",
        "github",
        "only the legacy sha1 X-Hub-Signature (allow_sha1 off)",
        401,
        "missing X-Hub-Signature-256",
        gh(PUSH, **{"X-Hub-Signature-256": "", "X-Hub-Signature": "sha1=00"}),
    ),
    Case(
        "github-body-changed",
        "github",
        "a valid signature of another body",
        401,
        "invalid",
        Req("/hooks/github", {**gh(PUSH).headers, "X-Hub-Signature-256": sign(b"{}")}, PUSH),
    ),
    Case(
        "github-rotated-secret",
        "github",
        "signed with the previous secret during a rotation (two configured)",
        202,
        "",
        gh(PUSH, secret=OLD_GITHUB_SECRET),
    ),
    # GitHub content
    Case(
        "github-no-delivery-id",
        "github",
        "signed, but no X-GitHub-Delivery",
        400,
        "missing X-GitHub-Delivery",
        gh(PUSH, delivery=""),
    ),
    Case(
        "github-invalid-json", "github", "signed body that is not JSON", 400, "not valid JSON", gh(b"{nope")
    ),
    Case(
        "github-invalid-utf8",
        "github",
        "signed JSON with invalid UTF-8",
        400,
        "UTF-8",
        gh(b'{"a": "\xff\xfe"}'),
    ),
    Case(
        "github-too-deep",
        "github",
        "signed JSON nested 65 levels deep",
        400,
        "nested deeper than 64",
        gh(DEEP),
    ),
    Case(
        "github-xml",
        "github",
        "Content-Type: application/xml",
        415,
        "not accepted",
        gh(b"<push/>", ctype="application/xml"),
    ),
    Case(
        "github-form-payload",
        "github",
        "form body with the JSON in payload= (GitHub's other content type)",
        202,
        "",
        gh(b"payload=" + quote_plus(PUSH).encode(), ctype="application/x-www-form-urlencoded"),
    ),
    Case(
        "github-form-no-payload",
        "github",
        "form body without a payload field",
        400,
        "payload",
        gh(b"other=1", ctype="application/x-www-form-urlencoded"),
    ),
    Case(
        "github-redelivery",
        "github",
        "the same X-GitHub-Delivery twice (dedupe_ttl_seconds)",
        200,
        "",
        gh(PUSH, delivery=REPLAYED_DELIVERY),
        prelude=(gh(PUSH, delivery=REPLAYED_DELIVERY),),
    ),
    Case(
        "github-hostile-shape",
        "github",
        'signed JSON shaped unlike GitHub\'s ({"repository": true}): '
        "recorded (parked if the transform fails), never a 500",
        202,
        "",
        gh(b'{"repository": true}'),
    ),
    # Authentication lockout
    Case(
        "auth-lockout",
        "any",
        f"a failed signature after {LOCKOUT_AFTER} failures in the window",
        429,
        "too many failed authentications",
        BAD_GITHUB,
        prelude=(BAD_GITHUB,) * LOCKOUT_AFTER,
    ),
    Case(
        "auth-lockout-valid-passes",
        "github",
        "a valid signature while the sender's address is locked out",
        202,
        "",
        gh(PUSH),
        prelude=(BAD_GITHUB,) * (LOCKOUT_AFTER + 1),
    ),
    # Generic (token, HMAC, raw)
    Case(
        "generic-no-token",
        "generic",
        "no Authorization / x-openclaw-token",
        401,
        "missing token",
        generic(token=None),
    ),
    Case(
        "generic-wrong-token", "generic", "a wrong bearer token", 401, "invalid token", generic(token="guess")
    ),
    Case(
        "generic-token-in-query",
        "generic",
        "the token in the query string (not accepted, as in OpenClaw)",
        401,
        "missing token",
        generic(token=None, path=f"/hooks/generic?token={GENERIC_TOKEN}"),
    ),
    Case(
        "generic-text-plain",
        "generic",
        "text/plain to a JSON source",
        415,
        "not accepted",
        generic(ctype="text/plain"),
    ),
    Case("generic-empty-body", "generic", "an empty body", 400, "not valid JSON", generic(b"")),
    Case("generic-nan", "generic", "JSON with NaN", 400, "not valid JSON", generic(b'{"a": NaN}')),
    Case(
        "generic-bom",
        "generic",
        "JSON with a UTF-8 byte order mark",
        400,
        "BOM",
        generic(b'\xef\xbb\xbf{"a": 1}'),
    ),
    Case(
        "generic-deep-1000",
        "generic",
        "JSON nested 1000 levels deep",
        400,
        "nested deeper than 64",
        generic(b"[" * 1000 + b"]" * 1000),
    ),
    Case(
        "raw-text",
        "generic",
        "content: raw source, text/plain with control characters",
        202,
        "",
        generic(b"build \x1b[31mfailed\x00\r\n", path="/hooks/raw", ctype="text/plain"),
    ),
    Case(
        "raw-not-utf8",
        "generic",
        "content: raw source, bytes that are not UTF-8",
        400,
        "not valid UTF-8",
        generic(b"\xff\xfe\x00", path="/hooks/raw", ctype="application/octet-stream"),
    ),
    Case(
        "hmac-wrong",
        "generic",
        "HMAC mode, wrong signature",
        401,
        "invalid X-Signature",
        Req("/hooks/signed", {"X-Signature": "sha256=" + "0" * 64}, b'{"n": 1}'),
    ),
    Case(
        "hmac-rotated",
        "generic",
        "HMAC mode, signed with the second of two secrets",
        202,
        "",
        Req(
            "/hooks/signed",
            {
                "X-Signature": "sha256="
                + hmac.new(HMAC_SECRETS[1].encode(), b'{"n": 2}', hashlib.sha256).hexdigest()
            },
            b'{"n": 2}',
        ),
    ),
    # Stripe
    Case(
        "stripe-stale",
        "stripe",
        "valid signature, timestamp an hour old (replay)",
        401,
        "tolerance",
        stripe(STRIPE_EVENT, t=int(time.time()) - 3600),
    ),
    Case(
        "stripe-future",
        "stripe",
        "valid signature, timestamp an hour ahead",
        401,
        "tolerance",
        stripe(STRIPE_EVENT, t=int(time.time()) + 3600),
    ),
    Case(
        "stripe-no-v1",
        "stripe",
        "Stripe-Signature without v1=",
        401,
        "no v1 signature",
        stripe(STRIPE_EVENT, sig=f"t={int(time.time())},v0=abc"),
    ),
    Case(
        "stripe-wrong-secret",
        "stripe",
        "signed with another secret",
        401,
        "invalid Stripe-Signature",
        stripe(STRIPE_EVENT, secret="whsec_other"),
    ),
    Case(
        "stripe-not-an-event",
        "stripe",
        "signed JSON without a type",
        400,
        "not a Stripe event",
        stripe(b'{"id": "evt_x"}'),
    ),
    # Standard Webhooks
    Case(
        "sw-stale",
        "standard-webhooks",
        "valid signature, timestamp an hour old (replay)",
        401,
        "tolerance",
        sw(b'{"type": "a"}', t=int(time.time()) - 3600),
    ),
    Case(
        "sw-missing-id",
        "standard-webhooks",
        "no webhook-id header",
        401,
        "missing webhook-id",
        sw(b'{"type": "a"}', drop="webhook-id"),
    ),
    Case(
        "sw-rotated",
        "standard-webhooks",
        "signed with the second of two secrets",
        202,
        "",
        sw(b'{"type": "a", "data": {"id": "x"}}', secret=SW_SECRETS[1]),
    ),
    Case(
        "sw-replayed",
        "standard-webhooks",
        "the same webhook-id again within the tolerance (deduplicated)",
        200,
        "",
        sw(b'{"type": "a"}', msg_id=REPLAYED_SW),
        prelude=(sw(b'{"type": "a"}', msg_id=REPLAYED_SW),),
    ),
    # Other presets and the relay's own endpoints
    Case(
        "gitlab-wrong-token",
        "gitlab",
        "a wrong X-Gitlab-Token",
        401,
        "invalid X-Gitlab-Token",
        Req("/hooks/gitlab", {"X-Gitlab-Token": "guess", "X-Gitlab-Event": "Push Hook"}, b"{}"),
    ),
    Case(
        "alertmanager-basic-auth",
        "alertmanager",
        "basic auth where a bearer token is configured",
        401,
        "missing bearer token",
        Req("/hooks/alerts", {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}, AM_BODY),
    ),
    Case(
        "gmail-wrong-token",
        "gmail",
        "a wrong bearer token (not a JWT)",
        401,
        "invalid token",
        Req("/hooks/gmail", {"Authorization": "Bearer guess"}, b"{}"),
    ),
    Case(
        "agent-no-message",
        "agent",
        "/hooks/agent with the gateway token and no message",
        400,
        "message required",
        generic(b"{}", token=HOOKS_TOKEN, path="/hooks/agent"),
    ),
    Case(
        "agent-unsafe-flag",
        "agent",
        "/hooks/agent asking for allowUnsafeExternalContent",
        400,
        "allowUnsafeExternalContent",
        generic(
            b'{"message": "hi", "allowUnsafeExternalContent": true}', token=HOOKS_TOKEN, path="/hooks/agent"
        ),
    ),
    Case(
        "wake-wrong-token",
        "wake",
        "/hooks/wake with the github secret as token",
        401,
        "invalid token",
        generic(b'{"text": "x"}', token=GITHUB_SECRET, path="/hooks/wake"),
    ),
    # Held connections, forwarded headers, long ids, trailing slashes (docs/hardening.md)
    Case(
        "early-answer-closes",
        "any",
        "an unknown hook whose body keeps dribbling a byte at a time: answered "
        "with Connection: close, and closed",
        404,
        "no such hook",
        wire=early_answer_closes,
    ),
    Case(
        "metrics-not-on-hooks-port",
        "any",
        "GET /metrics on the hooks listener (it has its own, on loopback)",
        404,
        "no such hook",
        Req("/metrics", method="GET"),
    ),
    Case(
        "trailing-slash",
        "generic",
        "/hooks/generic/ (a trailing slash): answered as without it, no redirect",
        202,
        "",
        generic(path="/hooks/generic/"),
    ),
    Case(
        "xff-rotating-lockout",
        "any",
        "failed signatures, each with another X-Forwarded-For (not a trusted "
        "proxy): the lockout still counts the peer",
        429,
        "too many failed authentications",
        _dup(BAD_GITHUB, "X-Forwarded-For", "198.51.100.99"),
        prelude=tuple(_dup(BAD_GITHUB, "X-Forwarded-For", f"198.51.100.{i}") for i in range(LOCKOUT_AFTER)),
    ),
    Case(
        "long-id-shared-prefix",
        "agent",
        "an idempotencyKey of 251 characters sharing its first 250 with an "
        "earlier one: a second event, not a duplicate",
        202,
        "",
        agent({"message": "b", "idempotencyKey": LONG_KEY + "2"}),
        prelude=(agent({"message": "a", "idempotencyKey": LONG_KEY + "1"}),),
    ),
    Case(
        "agent-blank-message",
        "agent",
        '/hooks/agent with {"message": "   "}',
        400,
        "must not be blank",
        agent({"message": "   "}),
    ),
    Case(
        "agent-session-key-newline",
        "agent",
        "/hooks/agent with a newline in sessionKey",
        400,
        "control characters",
        agent({"message": "hi", "sessionKey": "hook:a\nb"}),
    ),
    # Repeated security headers: one rule for every preset
    Case(
        "repeated-github-event",
        "github",
        "two X-GitHub-Event headers (push, then ping)",
        400,
        REPEATED,
        _dup(gh(PUSH), "X-GitHub-Event", "ping"),
    ),
    Case(
        "repeated-github-signature",
        "github",
        "two X-Hub-Signature-256 headers",
        400,
        REPEATED,
        _dup(gh(PUSH), "X-Hub-Signature-256", sign(b"{}")),
    ),
    Case(
        "repeated-generic-token",
        "generic",
        "two Authorization headers",
        400,
        REPEATED,
        _dup(generic(), "Authorization", "Bearer other"),
    ),
    Case(
        "repeated-generic-idempotency-key",
        "generic",
        "two Idempotency-Key headers",
        400,
        REPEATED,
        _dup(generic(**{"Idempotency-Key": "a"}), "Idempotency-Key", "b"),
    ),
    Case(
        "repeated-hmac-signature",
        "generic",
        "HMAC mode, two X-Signature headers",
        400,
        REPEATED,
        Req(
            "/hooks/signed", {"X-Signature": "sha256=" + "0" * 64}, b'{"n": 1}', again=(("X-Signature", "x"),)
        ),
    ),
    Case(
        "repeated-stripe-signature",
        "stripe",
        "two Stripe-Signature headers",
        400,
        REPEATED,
        _dup(stripe(STRIPE_EVENT), "Stripe-Signature", "t=1,v1=00"),
    ),
    Case(
        "repeated-sw-id",
        "standard-webhooks",
        "two webhook-id headers",
        400,
        REPEATED,
        _dup(sw(b'{"type": "a"}'), "webhook-id", "msg_other"),
    ),
    Case(
        "repeated-sw-timestamp",
        "standard-webhooks",
        "two webhook-timestamp headers",
        400,
        REPEATED,
        _dup(sw(b'{"type": "a"}'), "webhook-timestamp", "1"),
    ),
    Case(
        "repeated-gitlab-event",
        "gitlab",
        "two X-Gitlab-Event headers",
        400,
        REPEATED,
        Req(
            "/hooks/gitlab",
            {"X-Gitlab-Token": GITLAB_TOKEN, "X-Gitlab-Event": "Push Hook"},
            b"{}",
            again=(("X-Gitlab-Event", "Note Hook"),),
        ),
    ),
    Case(
        "repeated-linear-delivery",
        "linear",
        "two Linear-Delivery headers",
        400,
        REPEATED,
        _dup(linear(), "Linear-Delivery", "other"),
    ),
    Case(
        "repeated-alertmanager-auth",
        "alertmanager",
        "two Authorization headers",
        400,
        REPEATED,
        Req(
            "/hooks/alerts",
            {"Authorization": f"Bearer {ALERTS_TOKEN}"},
            AM_BODY,
            again=(("Authorization", "Bearer other"),),
        ),
    ),
    Case(
        "repeated-gmail-auth",
        "gmail",
        "two Authorization headers",
        400,
        REPEATED,
        Req(
            "/hooks/gmail",
            {"Authorization": "Bearer gmail-token-bad-input"},
            b"{}",
            again=(("Authorization", "Bearer other"),),
        ),
    ),
    Case(
        "repeated-agent-token",
        "agent",
        "/hooks/agent with two Authorization headers",
        400,
        REPEATED,
        _dup(agent({"message": "hi"}), "Authorization", "Bearer other"),
    ),
    # The console (loopback, logged in unless said otherwise)
    Case(
        "console-cursor-nan",
        "console",
        "/console?cursor=nan~x (also /console/dead, /console/parked)",
        200,
        "Events",
        wire=console_page("/console?cursor=nan~x"),
        html=True,
    ),
    Case(
        "console-dead-cursor-nan",
        "console",
        "/console/dead?cursor=nan~x",
        200,
        "Dead",
        wire=console_page("/console/dead?cursor=nan~x"),
        html=True,
    ),
    Case(
        "console-foreign-cookie",
        "console",
        "a session cookie whose MAC holds non-ASCII bytes (planted by another app on 127.0.0.1)",
        401,
        "token",
        wire=console_foreign_cookie,
        html=True,
    ),
    Case(
        "console-non-ascii-csrf",
        "console",
        "a POST whose CSRF value is not ASCII",
        403,
        "CSRF",
        wire=console_non_ascii_csrf,
        html=True,
    ),
    Case(
        "console-deep-raw-event",
        "console",
        "the event page of a raw-source body nested 600 levels deep",
        200,
        "[[[",
        wire=console_deep_raw_event,
        html=True,
    ),
    Case(
        "console-login-throttled",
        "console",
        "a console login after 10 wrong tokens within a minute (even the right token)",
        429,
        "Too many",
        wire=console_login_throttled,
        html=True,
    ),
]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_table(cases: list[Case] = CASES) -> str:
    lines = ["| id | preset | bad input | answer |", "|---|---|---|---|"]
    for c in cases:
        answer = f"{c.status} `{c.error}`" if c.error else str(c.status)
        lines.append(f"| `{c.id}` | {c.preset} | {_cell(c.what)} | {_cell(answer)} |")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Relay]:
    relay = Relay(
        tmp_path_factory.mktemp("bad-input"),
        redis_server.url,
        {
            "sources": SOURCES,
            "mappings": MAPPINGS,
            "body_timeout_seconds": BODY_TIMEOUT,
            "auth_failures_max": LOCKOUT_AFTER,
            "console": {"enabled": True, "token": CONSOLE_TOKEN},
        },
    )
    relay.start_ingress()
    yield relay
    relay.stop()


def _send(relay: Relay, req: Req) -> httpx.Response:
    headers = [*req.headers.items(), *req.again]
    return httpx.request(req.method, f"{relay.url}{req.path}", content=req.body, headers=headers, timeout=10)


def test_cases_are_distinct_and_enough() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 30


def test_doc_table_is_the_case_list() -> None:
    text = DOC.read_text()
    assert TABLE_START in text and TABLE_END in text, f"{DOC} lost its table markers"
    table = text.split(TABLE_START)[1].split(TABLE_END)[0].strip()
    assert table == render_table(), (
        "docs/security.md's bad-input table is stale: python -m tests.ingress.test_bad_input --write"
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, ingress: Relay, redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        for key in client.scan_iter("relay:authfail:*"):  # each case starts with no failures counted
            client.delete(key)
        for req in case.prelude:
            assert _send(ingress, req).status_code < 500
        if case.wire is not None:
            status, headers, raw = case.wire(ingress.port)
        else:
            assert case.request is not None
            response = _send(ingress, case.request)
            status, headers, raw = response.status_code, dict(response.headers), response.content
        assert status == case.status, raw
        if case.html:
            assert case.error in raw.decode(), raw
            return
        assert headers.get("content-type", "application/json").startswith("application/json")
        body = orjson.loads(raw)
        if status >= 400:
            assert body["ok"] is False and case.error in body["error"], body
        else:
            assert body["ok"] is True
            if "eventId" in body:  # acknowledged: it is in Redis
                assert client.exists(f"relay:event:{body['eventId']}")
            if case.prelude:
                assert body.get("duplicate") or status == 202
        if status == 429:
            assert int(headers["retry-after"]) >= 1
    finally:
        client.close()


def _write_doc() -> None:
    text = DOC.read_text()
    before, rest = text.split(TABLE_START)
    after = rest.split(TABLE_END)[1]
    DOC.write_text(f"{before}{TABLE_START}\n{render_table()}\n{TABLE_END}{after}")


if __name__ == "__main__":
    import sys

    if "--write" in sys.argv:
        _write_doc()
    else:
        print(render_table())
