"""stripe: Stripe-Signature verification, tolerance, dedupe on the event id, readable messages."""

from __future__ import annotations

import hashlib
import hmac
import time

import orjson
import pytest

from relay.errors import BadRequest, Unauthorized
from tests.paths import FIXTURES
from tests.presets.presets_support import run, source, verify

SECRET = "whsec_test_stripe_secret"
BODY = (FIXTURES / "stripe" / "event.plan.created.json").read_bytes()


def signature(body: bytes, timestamp: int | None = None, secret: str = SECRET, extra: str = "") -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    v1 = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={v1}{extra}"


def headers(body: bytes = BODY, **kw: object) -> dict[str, str]:
    return {"Stripe-Signature": signature(body, **kw), "Content-Type": "application/json; charset=utf-8"}


CFG = source("stripe", secret=SECRET)


def test_signed_event_becomes_an_action_naming_type_and_object() -> None:
    result = run(CFG, headers(), BODY)
    assert result.delivery_id == "evt_1Pgc76B7WZ01zgkWwyRHS12y"
    [action] = result.actions
    assert (
        action.message.splitlines()[0]
        == "Stripe plan.created (test mode): plan price_1PgafmB7WZ01zgkW6dKueIc5"
    )
    assert "amount: 20.00 USD per month" in action.message
    assert "https://dashboard.stripe.com/test/events/evt_1Pgc76B7WZ01zgkWwyRHS12y" in action.message
    assert action.session_key == "hook:stripe:price_1PgafmB7WZ01zgkW6dKueIc5"
    assert action.name == "Stripe"


def test_customer_objects_share_a_session_and_zero_decimal_amounts() -> None:
    event = {
        "id": "evt_2",
        "object": "event",
        "type": "payment_intent.payment_failed",
        "livemode": True,
        "created": 1700000000,
        "data": {
            "object": {
                "id": "pi_1",
                "object": "payment_intent",
                "amount": 5000,
                "currency": "jpy",
                "customer": "cus_9",
                "status": "requires_payment_method",
                "last_payment_error": {"message": "Your card was declined."},
            }
        },
    }
    body = orjson.dumps(event)
    [action] = run(CFG, headers(body), body).actions
    assert (
        action.message.splitlines()[0] == "Stripe payment_intent.payment_failed (live): payment_intent pi_1"
    )
    assert "amount: 5000 JPY" in action.message
    assert "error: Your card was declined." in action.message
    assert "https://dashboard.stripe.com/events/evt_2" in action.message
    assert action.session_key == "hook:stripe:cus_9"


def test_several_v1_signatures_and_rotated_secrets() -> None:
    ts = int(time.time())
    good = signature(BODY, ts).split(",v1=")[1]
    verify(CFG, {"stripe-signature": f"t={ts},v1={'0' * 64},v1={good},v0=ignored"}, BODY)
    verify(source("stripe", secret=["whsec_old", SECRET]), headers(), BODY)


@pytest.mark.parametrize(
    ("hdrs", "body", "message"),
    [
        (lambda: headers(), BODY.replace(b"2000", b"1"), "invalid Stripe-Signature"),
        (lambda: headers(secret="whsec_wrong"), BODY, "invalid Stripe-Signature"),
        (lambda: {}, BODY, "missing Stripe-Signature header"),
        (lambda: {"stripe-signature": "garbage"}, BODY, "malformed Stripe-Signature header"),
        (lambda: {"stripe-signature": "v1=abc"}, BODY, "no t= timestamp"),
        (lambda: {"stripe-signature": f"t={int(time.time())}"}, BODY, "no v1 signature"),
        (
            lambda: headers(timestamp=int(time.time()) - 301),
            BODY,
            "is 30[12] s old; the relay accepts at most 300 s either way",
        ),
    ],
    ids=["tampered-body", "wrong-secret", "missing", "malformed", "no-timestamp", "no-v1", "stale"],
)
def test_refusals(hdrs, body: bytes, message: str) -> None:
    with pytest.raises(Unauthorized, match=message):
        verify(CFG, hdrs(), body)


def test_tolerance_is_configurable() -> None:
    old = headers(timestamp=int(time.time()) - 1000)
    verify(source("stripe", secret=SECRET, tolerance_seconds=1200), old, BODY)
    with pytest.raises(Unauthorized, match="1200 s"):
        verify(
            source("stripe", secret=SECRET, tolerance_seconds=1200),
            headers(timestamp=int(time.time()) - 1300),
            BODY,
        )


def test_redelivery_has_the_same_delivery_id() -> None:
    # Stripe retries the same event with a fresh signature and timestamp.
    first = run(CFG, headers(timestamp=int(time.time()) - 100), BODY)
    again = run(CFG, headers(), BODY)
    assert first.delivery_id == again.delivery_id == "evt_1Pgc76B7WZ01zgkWwyRHS12y"


def test_event_allow_list_accepts_patterns() -> None:
    assert run(source("stripe", secret=SECRET, events=["plan.*"]), headers(), BODY).skipped is None
    skipped = run(source("stripe", secret=SECRET, events=["invoice.*"]), headers(), BODY).skipped
    assert skipped == "event 'plan.created' is not in this source's events list"


def test_body_without_id_or_type_is_a_bad_request() -> None:
    body = b'{"object": "event", "type": "x.y"}'
    with pytest.raises(BadRequest, match="no id"):
        run(CFG, headers(body), body)
    body = b'{"id": "evt_1"}'
    with pytest.raises(BadRequest, match="no type"):
        run(CFG, headers(body), body)
