"""The linear preset: Linear-Signature over the raw body, webhookTimestamp freshness, Linear-Delivery."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import orjson
import pytest

from relay.errors import Unauthorized
from relay.protocol.fencing import GUIDE
from tests.paths import FIXTURES
from tests.presets.presets_support import run, source, verify

SECRET = "lin_wh_test_secret"
CFG = source("linear", secret=SECRET)


def fixture(name: str, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = orjson.loads((FIXTURES / "linear" / f"{name}.json").read_bytes())
    return {**payload, "webhookTimestamp": int(time.time() * 1000), **changes}


def signed(
    payload: dict[str, Any], secret: str = SECRET, delivery: str = "d-1"
) -> tuple[dict[str, str], bytes]:
    """Headers and body as Linear sends them: hex HMAC-SHA256 of the exact body, no prefix."""
    body = orjson.dumps(payload)
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Linear-Signature": sig,
        "Linear-Delivery": delivery,
        "Linear-Event": str(payload.get("type")),
    }
    return headers, body


def test_issue_created_is_one_readable_action_in_the_issue_session() -> None:
    headers, body = signed(fixture("issue.create"))
    result = run(CFG, headers, body)
    [action] = result.actions
    lines = action.message.splitlines()
    assert lines[0] == "Linear issue KOR-11 created in korosuke613: <<<UNTRUSTED data.title: webhook test>>>"
    assert lines[1] == "State: Backlog · Priority: No priority"
    assert lines[2] == "https://linear.app/korosuke613/issue/KOR-11/webhook-test"
    assert lines[-1] == GUIDE
    assert (
        action.session_key == "hook:linear:236e0fe8-xxxx-xxxx-xxxx-b2df06e33810" and action.name == "Linear"
    )
    assert result.delivery_id == "d-1"


def test_comment_is_fenced_and_lands_in_its_issue_session() -> None:
    headers, body = signed(fixture("comment.create"))
    [action] = run(CFG, headers, body).actions
    assert action.message.splitlines()[:5] == [
        "user@example.com commented on Linear issue KOR-12: <<<UNTRUSTED data.issue.title: webhook test 2>>>",
        "https://linear.app/korosuke613/issue/KOR-12/webhook-test-2#comment-5081a82b",
        "",
        "<<<UNTRUSTED data.body",
        "コメントだーい",
    ]
    assert action.session_key == "hook:linear:ac36bcc2-xxxx-xxxx-xxxx-3e13107f89be"


def test_comments_join_their_issue_session() -> None:
    """Linear's captured comment carries only `data.issue.id` (no identifier): both kinds key on it."""
    comment = fixture("comment.create")
    issue_id = comment["data"]["issue"]["id"]
    issue = fixture("issue.create")
    issue["data"] = {**issue["data"], "id": issue_id}  # the same issue's own Issue event
    [issue_action] = run(CFG, *signed(issue)).actions
    [comment_action] = run(CFG, *signed(comment, delivery="d-2")).actions
    assert issue_action.session_key == comment_action.session_key == f"hook:linear:{issue_id}"


def test_other_types_get_a_summary() -> None:
    headers, body = signed(fixture("sdk-envelope.issue", type="Project", data={"name": "Q3 launch"}))
    [action] = run(CFG, headers, body).actions
    assert action.message.startswith("Linear Project created: <<<UNTRUSTED data.title: Q3 launch>>>")
    assert action.session_key == "hook:linear"


def test_signature_computed_as_linear_documents_it_is_accepted() -> None:
    headers, body = signed(fixture("sdk-envelope.issue"))
    verify(CFG, headers, body)  # no exception


def test_bad_or_missing_signature_is_401() -> None:
    headers, body = signed(fixture("issue.create"), secret="another-secret")
    with pytest.raises(Unauthorized) as exc:
        verify(CFG, headers, body)
    assert exc.value.status_code == 401
    headers.pop("Linear-Signature")
    with pytest.raises(Unauthorized):
        verify(CFG, headers, body)


def test_stale_timestamp_is_401_even_with_a_valid_signature() -> None:
    stale = int(time.time() * 1000) - 10 * 60 * 1000  # as Linear's SDK tests: ten minutes old
    headers, body = signed(fixture("issue.create", webhookTimestamp=stale))
    with pytest.raises(Unauthorized, match="webhookTimestamp") as exc:
        verify(CFG, headers, body)
    assert exc.value.status_code == 401
    # 61 s is past Linear's one minute; a source may widen it.
    headers, body = signed(fixture("issue.create", webhookTimestamp=int(time.time() * 1000) - 61_000))
    with pytest.raises(Unauthorized):
        verify(CFG, headers, body)
    verify(source("linear", secret=SECRET, tolerance_seconds=120), headers, body)


def test_missing_timestamp_is_401() -> None:
    payload = fixture("issue.create")
    del payload["webhookTimestamp"]
    headers, body = signed(payload)
    with pytest.raises(Unauthorized, match="missing webhookTimestamp"):
        verify(CFG, headers, body)


def test_bot_actor_and_the_agents_own_account_are_skipped() -> None:
    bot = fixture("issue.create", actor={"id": "a1", "name": "GitHub", "type": "integration"})
    headers, body = signed(bot)
    assert "is a bot" in (run(CFG, headers, body).skipped or "")
    mine = fixture("issue.create", actor={"id": "a2", "name": "OpenClaw Agent", "type": "user"})
    headers, body = signed(mine)
    cfg = source("linear", secret=SECRET, ignore_senders=["openclaw agent"])
    assert "ignore_senders" in (run(cfg, headers, body).skipped or "")
    assert run(CFG, headers, body).skipped is None


def test_secret_is_required() -> None:
    import presets
    from relay.config import SourceConfig

    assert presets.check_config(SourceConfig(preset="linear")) == (
        "secret",
        "the linear preset needs the webhook's signing secret",
    )
