"""standard-webhooks: the spec's own test vector, multi-signature headers, tolerance, dedupe."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

import presets
from relay.config import SourceConfig
from relay.errors import Unauthorized
from relay.protocol.verify import decode_standard_webhooks_secret, verify_standard_webhook

from .presets_support import run, source, verify

# The vector of the Standard Webhooks reference libraries (libraries/python/tests/test_webhooks.py
# `test_sign_function`, the same in every language) in github.com/standard-webhooks/standard-webhooks.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = "1614265330"
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SECRET = "whsec_" + base64.b64encode(b"a-test-secret-of-24-bytes!!").decode()
BODY = b'{"type":"invoice.paid","timestamp":"2026-01-02T03:04:05Z","data":{"id":"inv_42","total":1200}}'


def sign(body: bytes, msg_id: str, timestamp: int | str, secret: str = SECRET) -> str:
    key = decode_standard_webhooks_secret(secret)
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    body: bytes = BODY, msg_id: str = "msg_1", timestamp: int | None = None, secret: str = SECRET
) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(body, msg_id, ts, secret),
        "content-type": "application/json",
    }


def cfg(**extra: object) -> SourceConfig:
    return source("standard-webhooks", secret=SECRET, **extra)


def test_spec_test_vector_verifies() -> None:
    key = decode_standard_webhooks_secret(SPEC_SECRET)
    assert sign(SPEC_BODY, SPEC_ID, SPEC_TIMESTAMP, SPEC_SECRET) == SPEC_SIGNATURE
    verify_standard_webhook(
        SPEC_BODY, SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE, [key], tolerance=300, now=int(SPEC_TIMESTAMP) + 10
    )
    # The same vector through the preset, with a tolerance wide enough for its 2021 timestamp.
    old = SourceConfig(preset="standard-webhooks", secret=SPEC_SECRET, tolerance_seconds=10**10)
    result = run(
        old,
        {"webhook-id": SPEC_ID, "webhook-timestamp": SPEC_TIMESTAMP, "webhook-signature": SPEC_SIGNATURE},
        SPEC_BODY,
    )
    assert result.delivery_id == SPEC_ID
    # One bit off in the vector's signature is refused (the libraries' own negative case).
    with pytest.raises(Unauthorized, match="invalid webhook-signature"):
        verify_standard_webhook(
            SPEC_BODY,
            SPEC_ID,
            SPEC_TIMESTAMP,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
            [key],
            tolerance=300,
            now=int(SPEC_TIMESTAMP),
        )


def test_valid_request_becomes_a_readable_action() -> None:
    result = run(cfg(), headers(), BODY, name="billing")
    assert result.delivery_id == "msg_1"
    [action] = result.actions
    assert action.kind == "agent"
    assert action.message.startswith("Webhook invoice.paid from billing at 2026-01-02T03:04:05Z")
    assert '"total": 1200' in action.message
    assert action.session_key == "hook:billing:inv_42"


def test_several_signatures_one_valid_and_secret_rotation() -> None:
    h = headers()
    h["webhook-signature"] = (
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v1a,AAAA " + h["webhook-signature"]
    )
    verify(cfg(), h, BODY)
    other = "whsec_" + base64.b64encode(b"another-secret-24-bytes-long").decode()
    verify(source("standard-webhooks", secret=[other, SECRET]), headers(), BODY)


def test_svix_branded_headers_are_accepted() -> None:
    h = {k.replace("webhook-", "svix-"): v for k, v in headers(msg_id="msg_svix").items()}
    assert run(cfg(), h, BODY).delivery_id == "msg_svix"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, b: (h, b + b" "), "invalid webhook-signature"),
        (lambda h, b: ({**h, "webhook-id": "msg_2"}, b), "invalid webhook-signature"),
        (
            lambda h, b: (headers(secret="whsec_" + base64.b64encode(b"x" * 24).decode()), b),
            "invalid webhook-signature",
        ),
        (
            lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
            "missing webhook-signature header",
        ),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing webhook-id header"),
        (
            lambda h, b: ({k: v for k, v in h.items() if k != "webhook-timestamp"}, b),
            "missing webhook-timestamp header",
        ),
        (lambda h, b: ({**h, "webhook-signature": "v2,abc"}, b), "no v1 signature"),
        (
            lambda h, b: (headers(timestamp=int(time.time()) - 301), b),
            "webhook-timestamp header is 30[12] s old",
        ),
        (
            lambda h, b: (headers(timestamp=int(time.time()) + 301), b),
            "s in the future; the relay accepts at most 300 s",
        ),
    ],
    ids=[
        "tampered-body",
        "other-id",
        "wrong-secret",
        "no-signature",
        "no-id",
        "no-timestamp",
        "v2-only",
        "stale",
        "future",
    ],
)
def test_refusals(change, message: str) -> None:
    h, body = change(headers(), BODY)
    with pytest.raises(Unauthorized, match=message):
        verify(cfg(), h, body)


def test_tolerance_is_configurable() -> None:
    verify(cfg(tolerance_seconds=3600), headers(timestamp=int(time.time()) - 1800), BODY)


def test_redelivery_has_the_same_delivery_id() -> None:
    first = run(cfg(), headers(msg_id="msg_retry"), BODY)
    # A retry is re-signed with a new timestamp but keeps its webhook-id.
    again = run(cfg(), headers(msg_id="msg_retry", timestamp=int(time.time()) + 5), BODY)
    assert first.delivery_id == again.delivery_id == "msg_retry"


def test_secret_must_be_base64() -> None:
    assert presets.check_config(SourceConfig(preset="standard-webhooks", secret="whsec_not base64!")) == (
        "secret",
        "not a whsec_<base64> secret",
    )
    assert presets.check_config(SourceConfig(preset="standard-webhooks"))[0] == "secret"
