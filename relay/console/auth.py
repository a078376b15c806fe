"""The console's gate: loopback-only by default, its own token, a signed session cookie, CSRF tokens.

A session cookie is `<expiry>.<nonce>.<mac>`, the MAC an HMAC-SHA256 keyed by a key derived from
`console.token`: every ingress process sharing the config accepts it, and changing the token
ends every session. The CSRF token of a session is another HMAC of its nonce, sent in a hidden
field of every form; a POST without it is refused (403). The cookie is HttpOnly and
SameSite=Strict, so another site can neither read it nor make the browser send it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass

from starlette.requests import Request

COOKIE = "relay_console"
SESSION_SECONDS = 12 * 3600

# What every console answer carries: no inline script or style, nothing framed, nothing cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    csrf: str


class Gate:
    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._key = hmac.new(self._token, b"relay-console-session-v1", hashlib.sha256).digest()

    def token_ok(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), self._token)

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._key, "|".join(parts).encode(), hashlib.sha256).hexdigest()

    def new_cookie(self, now: float | None = None) -> str:
        expiry = str(int((now if now is not None else time.time()) + SESSION_SECONDS))
        nonce = secrets.token_urlsafe(16)
        return f"{expiry}.{nonce}.{self._mac('session', expiry, nonce)}"

    def session(self, request: Request) -> Session | None:
        """The request's session, if its cookie is ours and has not expired."""
        value = request.cookies.get(COOKIE, "")
        parts = value.split(".")
        if len(parts) != 3 or not (parts[0].isascii() and parts[0].isdigit()):
            return None
        expiry, nonce, mac = parts
        # Compared as bytes: compare_digest refuses str with non-ASCII characters (a planted cookie).
        presented = mac.encode("utf-8", "surrogatepass")
        if (
            not hmac.compare_digest(presented, self._mac("session", expiry, nonce).encode())
            or int(expiry) < time.time()
        ):
            return None
        return Session(nonce, self._mac("csrf", nonce))

    @staticmethod
    def csrf_ok(session: Session, presented: str) -> bool:
        return bool(presented) and hmac.compare_digest(
            presented.encode("utf-8", "surrogatepass"), session.csrf.encode()
        )
