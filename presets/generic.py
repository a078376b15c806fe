"""generic: any sender that can present a bearer token (or x-openclaw-token), like the gateway itself,
or that signs its body with an HMAC in a header of its choosing (`signature_header`).

HMAC mode: the header holds `signature_prefix + hex(HMAC-<algorithm>(secret, raw body))`, e.g.
`X-Signature: sha256=<hex>`; several secrets may be configured during a rotation.

Bodies are JSON (415 for another content type) unless the source sets `content: raw`: then any
UTF-8 body is accepted as `{"body": text, "contentType": type}` (see `relay.protocol.preset.parse_raw`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from relay.config import SourceConfig
from relay.protocol.preset import Headers, Preset, SenderSetup, parse_raw
from relay.protocol.verify import body_digest, bounded_id, presented_token, verify_hmac_hex, verify_token


def check_config(cfg: SourceConfig) -> tuple[str, str] | None:
    if cfg.signature_header:
        if not cfg.secret:
            return "secret", "the generic preset's HMAC mode (signature_header) needs a secret"
        return None
    if not cfg.token:
        return "token", "the generic preset needs a token (or signature_header and secret for HMAC mode)"
    return None


def verify(headers: Headers, body: bytes, cfg: SourceConfig) -> None:
    if cfg.signature_header:
        verify_hmac_hex(
            body,
            headers.get(cfg.signature_header.lower()),
            [s.get_secret_value().encode() for s in cfg.secret],
            prefix=cfg.signature_prefix,
            algorithm=cfg.algorithm,
            header=cfg.signature_header,
        )
        return
    verify_token(presented_token(headers), [t.get_secret_value().encode() for t in cfg.token])


def delivery_id(headers: Headers, payload: Any, body: bytes) -> str:
    """The sender's `Idempotency-Key` (or `X-Request-Id`) when it gives one, else the body's digest."""
    for name in ("idempotency-key", "x-idempotency-key", "x-request-id"):
        value = headers.get(name, "").strip()
        if value:
            return bounded_id(value)
    return body_digest(body)


def configure(preset: Preset, cfg: SourceConfig) -> Preset:
    """`content: raw` swaps the JSON parser for the raw one."""
    return dataclasses.replace(preset, parse=parse_raw) if cfg.content == "raw" else preset


def auth(cfg: SourceConfig) -> str:
    """How the sender authenticates, in words: HMAC mode or a bearer token."""
    if cfg.signature_header:
        return f"HMAC-{cfg.algorithm.upper()} in {cfg.signature_header}"
    return "bearer token (Authorization or x-openclaw-token)"


UNIQUE_HEADERS = ("authorization", "x-openclaw-token", "idempotency-key", "x-idempotency-key", "x-request-id")
PRESET = Preset(
    name="generic",
    verify=verify,
    delivery_id=delivery_id,
    unique_headers=UNIQUE_HEADERS,
    check_config=check_config,
    configure=configure,
    raw_content=True,
    auth=auth,
    setup=SenderSetup(
        "token",
        "GENERIC_WEBHOOK_TOKEN",
        "any sender: the header Authorization: Bearer <token>",
        "application/json",
        "anything; each request becomes one agent turn",
    ),
)
