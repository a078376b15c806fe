"""stripe: Stripe webhook endpoints, signed with Stripe-Signature and deduplicated on the event id.

`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>]` is HMAC-SHA256 of `{t}.{raw body}` with the
endpoint's signing secret (`whsec_...`, used as it is); the timestamp must be within
`tolerance_seconds` (default 300). The message names the event type and its object.
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime
from typing import Any

from relay.config import SourceConfig
from relay.errors import BadRequest
from relay.protocol.actions import AgentAction
from relay.protocol.event import Event
from relay.protocol.preset import Headers, Preset, SenderSetup, parse_json
from relay.protocol.verify import bounded_id, verify_stripe_signature

# Currencies whose amounts are not in hundredths (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
}
AMOUNT_FIELDS = ("amount", "amount_due", "amount_paid", "amount_total", "amount_refunded", "unit_amount")
DETAIL_FIELDS = (
    "status",
    "customer",
    "customer_email",
    "email",
    "name",
    "nickname",
    "description",
    "product",
    "subscription",
    "invoice",
    "payment_intent",
    "billing_reason",
)


def check_config(cfg: SourceConfig) -> tuple[str, str] | None:
    if not cfg.secret:
        return "secret", "the stripe preset needs the endpoint's signing secret (whsec_...)"
    return None


def verify(headers: Headers, body: bytes, cfg: SourceConfig) -> None:
    verify_stripe_signature(
        body,
        headers.get("stripe-signature"),
        [s.get_secret_value().encode() for s in cfg.secret],
        tolerance=cfg.tolerance_seconds,
    )


def parse(headers: Headers, body: bytes) -> Any:
    payload = parse_json(headers, body)
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise BadRequest("not a Stripe event: no type")
    return payload


def delivery_id(headers: Headers, payload: Any, body: bytes) -> str:
    event_id = payload.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise BadRequest("Stripe event has no id")
    return bounded_id(event_id)


def skip(headers: Headers, payload: Any, cfg: SourceConfig) -> str | None:
    """`events` may hold exact types or patterns such as `invoice.*`."""
    kind = payload["type"]
    if cfg.events is not None and not any(fnmatch.fnmatchcase(kind, pattern) for pattern in cfg.events):
        return f"event {kind!r} is not in this source's events list"
    return None


def money(amount: Any, currency: Any) -> str:
    if not isinstance(amount, int) or not isinstance(currency, str):
        return str(amount)
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount} {currency.upper()}"
    return f"{amount / 100:.2f} {currency.upper()}"


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def transform(event: Event) -> AgentAction:
    p = event.payload
    obj = (p.get("data") or {}).get("object") if isinstance(p.get("data"), dict) else None
    obj = obj if isinstance(obj, dict) else {}
    kind = p["type"]
    mode = "live" if p.get("livemode") else "test mode"
    what = str(obj.get("object") or kind.split(".")[0])
    lines = [f"Stripe {kind} ({mode}): {what} {obj.get('id', '')}".rstrip()]
    for field in AMOUNT_FIELDS:
        if isinstance(obj.get(field), int):
            text = f"{field.replace('_', ' ')}: {money(obj[field], obj.get('currency'))}"
            count = obj.get("interval_count") or 1
            if obj.get("interval"):
                text += f" per {obj['interval']}" if count == 1 else f" every {count} {obj['interval']}s"
            lines.append(text)
    for field in DETAIL_FIELDS:
        value = obj.get(field)
        if isinstance(value, str | int | float) and not isinstance(value, bool) and value != "":
            lines.append(f"{field.replace('_', ' ')}: {value}")
    error = obj.get("last_payment_error") or obj.get("failure_message")
    if isinstance(error, dict) and error.get("message"):
        lines.append(f"error: {error['message']}")
    elif isinstance(error, str):
        lines.append(f"error: {error}")
    prefix = "" if p.get("livemode") else "test/"
    lines.append(f"Event {p.get('id', '')} at {_when(p.get('created'))}".rstrip())
    if p.get("id"):
        lines.append(f"https://dashboard.stripe.com/{prefix}events/{p['id']}")
    customer = obj.get("customer") if isinstance(obj.get("customer"), str) else None
    subject = customer or obj.get("id") or p.get("id")
    return AgentAction(message="\n".join(lines), name="Stripe", session_key=f"hook:stripe:{subject}")


PRESET = Preset(
    name="stripe",
    verify=verify,
    delivery_id=delivery_id,
    parse=parse,
    transform=transform,
    skip=skip,
    unique_headers=("stripe-signature",),
    check_config=check_config,
    auth="Stripe-Signature",
    setup=SenderSetup(
        "secret",
        "STRIPE_WEBHOOK_SECRET",
        "Stripe: Developers → Webhooks → Add endpoint",
        "JSON (Stripe always sends it)",
        "the events your agent should see, e.g. invoice.payment_failed",
        generated=False,
    ),
)
