"""The shipped example transforms, tested the way users test theirs: relay.testing + real payloads."""

from __future__ import annotations

import pytest

from relay.protocol.actions import AgentAction, WakeAction
from relay.testing import load_fixture, map_event
from tests.paths import FIXTURES, ROOT

PR_REVIEW = [
    {
        "match": {"path": "github"},
        "transform": {"module": "transforms.github_pr_review"},
        "deliver": True,
        "channel": "last",
    }
]
TRIAGE = [
    {
        "match": {"path": "alerts"},
        "transform": {"module": "transforms.alertmanager_triage"},
        "thinking": "low",
    }
]


def test_opened_pull_request_becomes_a_review_prompt_in_its_own_session() -> None:
    payload = load_fixture("github/pull_request.opened.json", base=FIXTURES)
    [action] = map_event(
        "github", payload, {"X-GitHub-Event": "pull_request"}, mappings=PR_REVIEW, base_dir=ROOT
    )
    assert isinstance(action, AgentAction)
    assert action.session_key == "hook:github:Codertocat/Hello-World#2"
    assert action.message.startswith(
        "Pull request Codertocat/Hello-World#2 is ready for review: Update the README"
    )
    assert "This is a pretty simple change" in action.message
    # The mapping's own fields stay, merged under the transform's result.
    assert action.deliver is True and action.channel == "last" and action.name == "PR review"


def test_new_commits_on_a_pull_request_ask_for_another_look() -> None:
    payload = load_fixture("github/pull_request.synchronize.json", base=FIXTURES)
    [action] = map_event(
        "github", payload, {"X-GitHub-Event": "pull_request"}, mappings=PR_REVIEW, base_dir=ROOT
    )
    assert "was updated with new commits" in action.message


@pytest.mark.parametrize(
    ("event", "fixture"),
    [
        ("pull_request", "pull_request.closed"),
        ("pull_request_review", "pull_request_review.submitted"),
        ("push", "push.default"),
    ],
)
def test_other_github_events_are_skipped(event: str, fixture: str) -> None:
    payload = load_fixture(f"github/{fixture}.json", base=FIXTURES)
    assert map_event("github", payload, {"X-GitHub-Event": event}, mappings=PR_REVIEW, base_dir=ROOT) == []


def test_draft_pull_requests_are_skipped() -> None:
    payload = load_fixture("github/pull_request.opened.json", base=FIXTURES)
    payload["pull_request"]["draft"] = True
    assert (
        map_event("github", payload, {"X-GitHub-Event": "pull_request"}, mappings=PR_REVIEW, base_dir=ROOT)
        == []
    )


def test_firing_alerts_become_one_triage_prompt_worst_first() -> None:
    payload = load_fixture("alertmanager/webhook_v4.firing.json", base=FIXTURES)
    [action] = map_event("alerts", payload, mappings=TRIAGE, base_dir=ROOT)
    assert isinstance(action, AgentAction)
    assert action.message.startswith("Alertmanager: ")
    assert "alertname=InstanceDown, job=node" in action.message
    assert "InstanceDown on web-1:9100" in action.message
    assert action.session_key == "hook:alertmanager:relay-webhook:alertname=InstanceDown,job=node"
    assert action.thinking == "low"


def test_resolved_alerts_only_wake_the_main_session() -> None:
    payload = load_fixture("alertmanager/webhook_v4.resolved.json", base=FIXTURES)
    [action] = map_event("alerts", payload, mappings=TRIAGE, base_dir=ROOT)
    assert isinstance(action, WakeAction)
    assert action.text.startswith("Resolved: alertname=InstanceDown") and action.mode == "next-heartbeat"
