"""Signature and token checks, as pure functions of (headers, raw body, secrets).

Nothing here does I/O or parses the body: a signature is always checked on the exact bytes
received, before anything else looks at them. Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

from relay.errors import Unauthorized


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


def token_matches(presented: str, secrets: Iterable[bytes]) -> bool:
    """Whether `presented` is one of `secrets`; every secret is compared, in constant time."""
    candidate = presented.encode()
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(secret, candidate)
    return matched


def verify_token(presented: str | None, secrets: Iterable[bytes], *, what: str = "token") -> None:
    if not presented:
        raise Unauthorized(f"missing {what}")
    if not token_matches(presented, secrets):
        raise Unauthorized(f"invalid {what}")


# Headers that carry credentials: checked, then never kept (events in Redis, templates, `relay events`).
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-openclaw-token", "x-gitlab-token"}
)
REDACTED = "[redacted]"


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """`headers` as a dict with the value of every credential header replaced by a marker."""
    return {k: REDACTED if k.lower() in CREDENTIAL_HEADERS else v for k, v in headers.items()}


MAX_ID = 200


def bounded_id(value: str, limit: int = MAX_ID) -> str:
    """A sender's id as a delivery id: itself up to `limit` characters; a longer one is keyed on a
    digest of all of it, its start kept for display only, so two ids never collide by shortening."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{value[: limit - 72]}~sha256:{digest}"


def body_digest(body: bytes) -> str:
    """A delivery id for senders that send none: the same bytes are the same delivery."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def check_timestamp(timestamp: str | None, tolerance: float, *, what: str, now: float | None = None) -> int:
    """Parse a Unix-seconds timestamp (`what` names it, e.g. "the webhook-timestamp header") and
    refuse it outside ±`tolerance` seconds of `now`."""
    if not timestamp:
        raise Unauthorized(f"missing {what}")
    try:
        value = int(timestamp.strip())
    except ValueError:
        raise Unauthorized(f"malformed {what}: not a Unix time in seconds") from None
    current = time.time() if now is None else now
    if abs(current - value) > tolerance:
        raise Unauthorized(stale_message(what, current - value, tolerance))
    return value


def stale_message(what: str, age: float, tolerance: float) -> str:
    """Why a signed timestamp `age` seconds old (negative: ahead of the relay's clock) is refused."""
    when = f"{age:.0f} s old" if age > 0 else f"{-age:.0f} s in the future"
    return (
        f"{what} is {when}; the relay accepts at most {tolerance:g} s either way (the source's "
        "tolerance_seconds): a replayed request, or a clock out of sync"
    )


def verify_stripe_signature(
    body: bytes, header: str | None, secrets: Iterable[bytes], *, tolerance: float, now: float | None = None
) -> None:
    """Stripe-Signature `t=<unix>,v1=<hex>[,v1=<hex>...]`: HMAC-SHA256 of `{t}.{body}` with any secret.

    The signature is checked before the timestamp (as Stripe's own libraries do), so a stale
    timestamp is only reported for an otherwise authentic request.
    """
    if not header:
        raise Unauthorized("missing Stripe-Signature header")
    timestamp = ""
    presented: list[bytes] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise Unauthorized("malformed Stripe-Signature header")
        if key == "t":
            timestamp = value.strip()
        elif key == "v1":
            presented.append(value.strip().lower().encode())
    if not timestamp:
        raise Unauthorized("malformed Stripe-Signature header: no t= timestamp")
    if not presented:
        raise Unauthorized("Stripe-Signature header has no v1 signature")
    signed = timestamp.encode() + b"." + body
    matched = False
    for secret in secrets:
        expected = hmac_hexdigest(secret, signed).encode()
        for candidate in presented:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise Unauthorized("invalid Stripe-Signature")
    check_timestamp(timestamp, tolerance, what="the Stripe-Signature timestamp (t=)", now=now)


def decode_standard_webhooks_secret(secret: str) -> bytes:
    """A Standard Webhooks secret is `whsec_<base64>`; the HMAC key is the decoded base64 part."""
    encoded = secret.strip().removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a whsec_<base64> secret") from None


def verify_standard_webhook(
    body: bytes,
    webhook_id: str | None,
    timestamp: str | None,
    signature: str | None,
    keys: Iterable[bytes],
    *,
    tolerance: float,
    now: float | None = None,
    prefix: str = "webhook",
) -> None:
    """Standard Webhooks v1: `webhook-signature` lists `v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>`.

    `keys` are the decoded secrets. Entries of other versions (e.g. `v1a`, asymmetric) are ignored.
    """
    if not webhook_id:
        raise Unauthorized(f"missing {prefix}-id header")
    if not timestamp:
        raise Unauthorized(f"missing {prefix}-timestamp header")
    if not signature:
        raise Unauthorized(f"missing {prefix}-signature header")
    presented = []
    for entry in signature.split():
        version, sep, value = entry.partition(",")
        if sep and version == "v1":
            presented.append(value.encode())
    if not presented:
        raise Unauthorized(f"{prefix}-signature header has no v1 signature")
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    matched = False
    for key in keys:
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
        for candidate in presented:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise Unauthorized(f"invalid {prefix}-signature")
    check_timestamp(timestamp, tolerance, what=f"the {prefix}-timestamp header", now=now)


def verify_basic_auth(authorization: str | None, username: str, passwords: Iterable[bytes]) -> None:
    """HTTP basic auth (`Authorization: Basic base64(user:password)`), compared in constant time."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise Unauthorized("missing basic auth credentials")
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        raise Unauthorized("malformed basic auth credentials") from None
    if not sep:
        raise Unauthorized("malformed basic auth credentials")
    matched = hmac.compare_digest(user.encode(), username.encode())
    any_password = False
    for secret in passwords:
        any_password |= hmac.compare_digest(secret, password.encode())
    if not (matched and any_password):
        raise Unauthorized("invalid basic auth credentials")
