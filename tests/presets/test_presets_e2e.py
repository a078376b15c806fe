"""Presets end to end with real processes: alertmanager, stripe, gitlab and standard-webhooks
requests reach the gateway stub; a duplicate is delivered once; a tampered one is refused, unqueued."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

import pytest
import redis

from relay.store import keys
from tests.conftest import FIXTURES, GENERIC_TOKEN, GITHUB_SECRET, Relay, wait_until

AM_TOKEN = "e2e-alertmanager-token"
STRIPE_SECRET = "whsec_e2e_stripe"
GITLAB_TOKEN = "e2e-gitlab-token"
SW_SECRET = "whsec_" + base64.b64encode(b"e2e-standard-webhooks-key!").decode()

SOURCES = {
    "github": {"preset": "github", "secret": GITHUB_SECRET},
    "generic": {"preset": "generic", "token": GENERIC_TOKEN},
    "alerts": {"preset": "alertmanager", "token": AM_TOKEN},
    "stripe": {"preset": "stripe", "secret": STRIPE_SECRET},
    "gitlab": {"preset": "gitlab", "token": GITLAB_TOKEN},
    "svc": {"preset": "standard-webhooks", "secret": SW_SECRET},
}

FIRING = (FIXTURES / "alertmanager" / "webhook_v4.firing.json").read_bytes()
STRIPE_EVENT = (FIXTURES / "stripe" / "event.plan.created.json").read_bytes()
GITLAB_MR = (FIXTURES / "gitlab" / "merge_request.json").read_bytes()
SW_BODY = b'{"type":"user.created","timestamp":"2026-01-02T03:04:05Z","data":{"id":"user_7","name":"Ada"}}'


@pytest.fixture
def relay(relay_factory: Callable[..., Relay]) -> Relay:
    r = relay_factory(sources=SOURCES)
    r.start_stub()
    r.start_ingress()
    r.start_worker()
    return r


def alertmanager(body: bytes = FIRING, token: str = AM_TOKEN) -> tuple[str, bytes, dict[str, str]]:
    return (
        "/hooks/alerts",
        body,
        {
            "Content-Type": "application/json",
            "User-Agent": "Alertmanager/0.25.0",
            "Authorization": f"Bearer {token}",
        },
    )


def stripe(body: bytes = STRIPE_EVENT, secret: str = STRIPE_SECRET) -> tuple[str, bytes, dict[str, str]]:
    ts = int(time.time())
    v1 = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return (
        "/hooks/stripe",
        body,
        {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": f"t={ts},v1={v1}"},
    )


def gitlab(body: bytes = GITLAB_MR, token: str = GITLAB_TOKEN) -> tuple[str, bytes, dict[str, str]]:
    return (
        "/hooks/gitlab",
        body,
        {
            "Content-Type": "application/json",
            "X-Gitlab-Event": "Merge Request Hook",
            "X-Gitlab-Token": token,
            "X-Gitlab-Event-UUID": "e2e-uuid-1",
        },
    )


def standard(body: bytes = SW_BODY, msg_id: str = "msg_e2e_1") -> tuple[str, bytes, dict[str, str]]:
    ts = str(int(time.time()))
    key = base64.b64decode(SW_SECRET.removeprefix("whsec_"))
    sig = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return (
        "/hooks/svc",
        body,
        {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": ts,
            "webhook-signature": f"v1,{sig}",
        },
    )


def test_each_preset_reaches_the_gateway(relay: Relay) -> None:
    for path, body, headers in (alertmanager(), stripe(), gitlab(), standard()):
        response = relay.post(path, body, headers)
        assert response.status_code == 202, (path, response.text)
        assert relay.outcome(response)["actions"] == 1
    runs = wait_until(lambda: (r := relay.stub.runs()) and len(r) >= 4 and r, timeout=15)
    by_name = {run["body"].get("name"): run["body"] for run in runs}
    assert set(by_name) == {"Alertmanager", "Stripe", "GitLab", "svc"}
    assert by_name["Alertmanager"]["message"].startswith("Alertmanager: FIRING — alertname=InstanceDown")
    assert by_name["Alertmanager"]["sessionKey"].startswith("hook:alertmanager:")
    assert by_name["Stripe"]["message"].startswith("Stripe plan.created (test mode): plan price_1Pgaf")
    assert by_name["GitLab"]["sessionKey"] == "hook:gitlab:gitlabhq/gitlab-test!1"
    assert by_name["svc"]["sessionKey"] == "hook:svc:user_7"
    time.sleep(0.5)  # nothing more arrives: a duplicate would show here
    assert len(relay.stub.runs()) == 4


def test_redeliveries_are_delivered_once(relay: Relay, redis_client: redis.Redis) -> None:
    # Each sender's own retry: Alertmanager re-sends the same notification, Stripe re-signs the
    # same event later, GitLab repeats the event UUID, a Standard Webhooks sender repeats webhook-id.
    for make in (alertmanager, stripe, gitlab, standard):
        first = relay.post(*make())
        second = relay.post(*make())
        assert first.status_code == 202, first.text
        assert second.status_code == 200, second.text
        assert second.json() == {"ok": True, "duplicate": True, "eventId": first.json()["eventId"]}
    wait_until(lambda: len(relay.stub.runs()) >= 4, timeout=15)
    time.sleep(0.7)  # nothing more arrives: a redelivery sent twice would show here
    assert len(relay.stub.runs()) == 4
    assert redis_client.zcard(keys.EVENTS) == 4


def test_tampered_or_unauthenticated_requests_get_401_and_nothing_is_queued(
    relay: Relay, redis_client: redis.Redis
) -> None:
    cases = [
        (alertmanager(token="wrong"), "invalid bearer token"),
        ((lambda p, b, h: (p, b.replace(b"2000", b"1"), h))(*stripe()), "invalid Stripe-Signature"),
        (stripe(secret="whsec_wrong"), "invalid Stripe-Signature"),
        (gitlab(token="wrong"), "invalid X-Gitlab-Token"),
        ((lambda p, b, h: (p, b + b" ", h))(*standard()), "invalid webhook-signature"),
        (
            (lambda p, b, h: (p, b, {k: v for k, v in h.items() if k != "webhook-signature"}))(*standard()),
            "missing webhook-signature header",
        ),
    ]
    for (path, body, headers), error in cases:
        response = relay.post(path, body, headers)
        assert response.status_code == 401, (path, response.text)
        assert response.json() == {"ok": False, "error": error}
    assert redis_client.zcard(keys.EVENTS) == 0
    assert redis_client.xlen(keys.INBOX) == 0
    assert not redis_client.keys("rq:job:*")
    time.sleep(0.3)  # nothing arrives: a refused request that was delivered anyway would show here
    assert relay.stub.requests() == []
