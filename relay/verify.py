"""Signature and token checks, as pure functions of (headers, raw body, secrets).

Nothing here does I/O or parses the body: a signature is always checked on the exact bytes
received, before anything else looks at them. Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

from .errors import Unauthorized


def hmac_hexdigest(secret: bytes, body: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(secret, body, algorithm).hexdigest()


def verify_hmac_hex(
    body: bytes,
    signature: str | None,
    secrets: Iterable[bytes],
    *,
    prefix: str = "sha256=",
    algorithm: str = "sha256",
    header: str = "signature",
) -> None:
    """Accept `signature` if it is `prefix + hex(HMAC(secret, body))` for any of `secrets`.

    Several secrets are allowed so that a secret can be rotated without a gap.
    """
    if not signature:
        raise Unauthorized(f"missing {header} header")
    if not signature.startswith(prefix):
        raise Unauthorized(f"malformed {header} header")
    presented = signature[len(prefix) :].strip().lower().encode()
    matched = False
    for secret in secrets:
        expected = hmac_hexdigest(secret, body, algorithm).encode()
        # No early exit: every configured secret is compared, in constant time.
        matched |= hmac.compare_digest(expected, presented)
    if not matched:
        raise Unauthorized(f"invalid {header}")


def presented_token(headers: Mapping[str, str]) -> str | None:
    """The token a sender presents the way OpenClaw's gateway reads it: Bearer wins over x-openclaw-token."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = headers.get("x-openclaw-token", "").strip()
    return token or None


def verify_token(presented: str | None, secrets: Iterable[bytes], *, what: str = "token") -> None:
    if not presented:
        raise Unauthorized(f"missing {what}")
    candidate = presented.encode()
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(secret, candidate)
    if not matched:
        raise Unauthorized(f"invalid {what}")


def body_digest(body: bytes) -> str:
    """A delivery id for senders that send none: the same bytes are the same delivery."""
    return "sha256:" + hashlib.sha256(body).hexdigest()
