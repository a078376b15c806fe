"""generic: any sender that can present a bearer token (or x-openclaw-token), like the gateway itself."""

from __future__ import annotations

from typing import Any

from relay.config import SourceConfig
from relay.preset import Headers, Preset
from relay.verify import body_digest, presented_token, verify_token


def verify(headers: Headers, body: bytes, cfg: SourceConfig) -> None:
    verify_token(presented_token(headers), [t.get_secret_value().encode() for t in cfg.token])


def delivery_id(headers: Headers, payload: Any, body: bytes) -> str:
    """The sender's `Idempotency-Key` (or `X-Request-Id`) when it gives one, else the body's digest."""
    for name in ("idempotency-key", "x-idempotency-key", "x-request-id"):
        value = headers.get(name, "").strip()
        if value:
            return value[:200]
    return body_digest(body)


PRESET = Preset(name="generic", verify=verify, delivery_id=delivery_id)
