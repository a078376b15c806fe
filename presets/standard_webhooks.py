"""standard-webhooks: senders following the Standard Webhooks spec (https://www.standardwebhooks.com).

`webhook-id`, `webhook-timestamp` and `webhook-signature` (space-separated `v1,<base64>`), the
HMAC-SHA256 of `{id}.{timestamp}.{raw body}` keyed with the base64-decoded part of the
`whsec_<base64>` secret; the timestamp must be within `tolerance_seconds`. Deduplicated on
`webhook-id`, which stays the same across a sender's retries. Svix-branded headers
(`svix-id`, ...) carry the same scheme and are accepted too.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

import orjson

from relay.config import SourceConfig, UnresolvedSecret
from relay.errors import BadRequest
from relay.protocol.actions import AgentAction
from relay.protocol.event import Event
from relay.protocol.preset import Headers, Preset, SenderSetup
from relay.protocol.verify import bounded_id, decode_standard_webhooks_secret, verify_standard_webhook

MAX_DATA = 3000  # characters of the event's data shown in the message


def check_config(cfg: SourceConfig) -> tuple[str, str] | None:
    if not cfg.secret:
        return "secret", "the standard-webhooks preset needs the endpoint's secret (whsec_...)"
    for secret in cfg.secret:
        if isinstance(secret, UnresolvedSecret):
            continue  # a command that verifies nothing (`relay try`, `replay --dry-run`) runs without it
        try:
            decode_standard_webhooks_secret(secret.get_secret_value())
        except ValueError as exc:
            return "secret", str(exc)
    return None


def _prefix(headers: Headers) -> str:
    """`webhook-*` headers, or Svix's branded `svix-*` ones when only those are present."""
    if not headers.get("webhook-id") and headers.get("svix-id"):
        return "svix"
    return "webhook"


def verify(headers: Headers, body: bytes, cfg: SourceConfig) -> None:
    prefix = _prefix(headers)
    keys = [decode_standard_webhooks_secret(s.get_secret_value()) for s in cfg.secret]
    verify_standard_webhook(
        body,
        headers.get(f"{prefix}-id"),
        headers.get(f"{prefix}-timestamp"),
        headers.get(f"{prefix}-signature"),
        keys,
        tolerance=cfg.tolerance_seconds,
        prefix=prefix,
    )


def delivery_id(headers: Headers, payload: Any, body: bytes) -> str:
    value = headers.get(f"{_prefix(headers)}-id", "").strip()
    if not value:
        raise BadRequest("missing webhook-id header")
    return bounded_id(value)


def transform(event: Event) -> AgentAction:
    """`{"type", "timestamp", "data"}` (the spec's recommended payload) → one readable message."""
    p = event.payload
    webhook_id = event.headers.get("webhook-id") or event.headers.get("svix-id") or event.delivery_id
    if isinstance(p, dict):
        kind = str(p.get("type") or p.get("event") or "event")
        data = p.get("data", {k: v for k, v in p.items() if k not in ("type", "timestamp")})
    else:
        kind, data = "event", p
    lines = [
        f"Webhook {kind} from {event.source}"
        + (f" at {p['timestamp']}" if isinstance(p, dict) and p.get("timestamp") else "")
    ]
    shown = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    if len(shown) > MAX_DATA:
        shown = shown[:MAX_DATA] + f"… [cut, {len(shown) - MAX_DATA} more characters]"
    lines += [shown, f"(webhook-id {webhook_id})"]
    subject = data.get("id") if isinstance(data, dict) and isinstance(data.get("id"), str | int) else None
    session = f"hook:{event.source}:{subject}" if subject is not None else f"hook:{event.source}:{kind}"
    return AgentAction(message="\n".join(lines), name=event.source, session_key=session)


UNIQUE_HEADERS = tuple(f"{p}-{n}" for p in ("webhook", "svix") for n in ("id", "timestamp", "signature"))


def fresh_secret() -> str:
    """A new secret in the spec's own format: whsec_ and the base64 of the key."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


PRESET = Preset(
    name="standard-webhooks",
    verify=verify,
    delivery_id=delivery_id,
    transform=transform,
    unique_headers=UNIQUE_HEADERS,
    check_config=check_config,
    auth="webhook-signature (Standard Webhooks)",
    setup=SenderSetup(
        "secret",
        "STANDARD_WEBHOOKS_SECRET",
        "the sender's webhook settings (Standard Webhooks)",
        "application/json",
        "as the sender offers",
        fresh=fresh_secret,
    ),
)
