"""github: every real @octokit/webhooks-examples payload maps; sha1 only with allow_sha1; form bodies."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from urllib.parse import urlencode

import orjson
import pytest

import presets
from presets import github
from relay.config import SourceConfig
from relay.errors import BadRequest, Unauthorized
from relay.protocol.actions import AgentAction
from relay.protocol.event import Event
from tests.paths import FIXTURES
from tests.presets.presets_support import run, source, verify

SECRET = "gh-secret"
CFG = source("github", secret=SECRET)
GITHUB = sorted((FIXTURES / "github").glob("*.json"))
# Events whose default transform deliberately returns None: runs/checks that did not fail.
SKIPPED_KINDS = {"workflow_run", "check_run", "check_suite"}


def signed(
    body: bytes, event: str = "push", delivery: str = "d-1", secret: str = SECRET, **extra: str
) -> dict[str, str]:
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sig,
        **extra,
    }


def test_there_are_329_fixtures() -> None:
    assert len(GITHUB) == 329


@pytest.mark.parametrize("path", GITHUB, ids=lambda p: p.stem)
def test_every_fixture_maps_to_an_action_or_a_documented_skip(path: Path) -> None:
    kind = path.name.split(".")[0]
    event = Event(
        source="github",
        payload=orjson.loads(path.read_bytes()),
        headers={"x-github-event": kind},
        path="github",
        delivery_id="d",
    )
    result = github.transform(event)
    if result is None:
        assert kind in SKIPPED_KINDS, f"{path.name}: unexpected skip"
        payload = event.payload
        assert payload.get("action") != "completed" or payload[kind].get("conclusion") in (
            "success",
            "skipped",
            "neutral",
            None,
        )
    else:
        assert isinstance(result, AgentAction)
        assert result.message.strip()
        assert result.session_key and result.session_key.startswith("hook:github:")


def test_push_through_the_whole_preset() -> None:
    body = (FIXTURES / "github" / "push.default.json").read_bytes()
    result = run(CFG, signed(body, delivery="abc-123"), body)
    assert result.delivery_id == "abc-123"
    [action] = result.actions
    assert action.session_key == "hook:github:Codertocat/Hello-World"


def test_ping_is_skipped_and_the_allow_list_applies() -> None:
    body = (FIXTURES / "github" / "ping.default.json").read_bytes()
    assert run(CFG, signed(body, event="ping"), body).skipped == "ping"
    issues = (FIXTURES / "github" / "issues.opened.json").read_bytes()
    only_push = source("github", secret=SECRET, events=["push"])
    assert run(only_push, signed(issues, event="issues"), issues).skipped == (
        "event 'issues' is not in this source's events list"
    )


def sha1_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    sig = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "d-sha1",
        "X-Hub-Signature": sig,
    }


def test_sha1_only_with_allow_sha1() -> None:
    body = (FIXTURES / "github" / "push.default.json").read_bytes()
    with pytest.raises(Unauthorized, match="missing X-Hub-Signature-256 header"):
        verify(CFG, sha1_headers(body), body)
    allow = source("github", secret=SECRET, allow_sha1=True)
    assert run(allow, sha1_headers(body), body).actions
    with pytest.raises(Unauthorized, match="invalid X-Hub-Signature"):
        verify(allow, sha1_headers(body, secret="wrong"), body)
    # When both are sent, sha256 is the one checked, even with allow_sha1.
    with pytest.raises(Unauthorized, match="invalid X-Hub-Signature-256"):
        verify(allow, {**sha1_headers(body), "X-Hub-Signature-256": "sha256=" + "0" * 64}, body)


def test_form_encoded_body() -> None:
    payload = (FIXTURES / "github" / "issues.opened.json").read_bytes()
    body = urlencode({"payload": payload.decode()}).encode()
    headers = {**signed(body, event="issues"), "Content-Type": "application/x-www-form-urlencoded"}
    [action] = run(CFG, headers, body).actions
    assert action.message.startswith("Issue #1 opened by Codertocat in Codertocat/Hello-World")
    with pytest.raises(BadRequest, match="exactly one payload field"):
        bad = b"other=1"
        run(CFG, {**signed(bad), "Content-Type": "application/x-www-form-urlencoded"}, bad)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h, b: (h, b + b"\n"), "invalid X-Hub-Signature-256"),
        (lambda h, b: (signed(b, secret="wrong"), b), "invalid X-Hub-Signature-256"),
        (
            lambda h, b: ({k: v for k, v in h.items() if k != "X-Hub-Signature-256"}, b),
            "missing X-Hub-Signature-256",
        ),
        (lambda h, b: ({**h, "X-Hub-Signature-256": "md5=abc"}, b), "malformed X-Hub-Signature-256"),
    ],
    ids=["tampered", "wrong-secret", "missing", "malformed"],
)
def test_refusals(mutate, message: str) -> None:
    body = (FIXTURES / "github" / "push.default.json").read_bytes()
    h, b = mutate(signed(body), body)
    with pytest.raises(Unauthorized, match=message):
        verify(CFG, h, b)


def test_redelivery_has_the_same_delivery_id() -> None:
    body = (FIXTURES / "github" / "push.default.json").read_bytes()
    assert run(CFG, signed(body, delivery="same"), body).delivery_id == "same"
    assert run(CFG, signed(body, delivery="same"), body).delivery_id == "same"
    with pytest.raises(BadRequest, match="missing X-GitHub-Delivery"):
        run(CFG, {k: v for k, v in signed(body).items() if k != "X-GitHub-Delivery"}, body)


def test_config_check() -> None:
    assert presets.check_config(SourceConfig(preset="github")) == (
        "secret",
        "the github preset needs the webhook secret",
    )


def test_github_documented_test_vector() -> None:
    """GitHub's docs ("Validating webhook deliveries"): this secret and payload give this signature."""
    from presets.github import verify
    from relay.config import SourceConfig

    cfg = SourceConfig(preset="github", secret=["It's a Secret to Everybody"])
    signature = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    verify({"x-hub-signature-256": signature}, b"Hello, World!", cfg)
    with pytest.raises(Unauthorized):
        verify({"x-hub-signature-256": signature}, b"Hello, World?", cfg)
