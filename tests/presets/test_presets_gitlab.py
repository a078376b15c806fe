"""gitlab: X-Gitlab-Token, dedupe on X-Gitlab-Event-UUID / Idempotency-Key / body, readable messages."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from relay.errors import Unauthorized
from relay.protocol.fencing import GUIDE
from tests.paths import FIXTURES
from tests.presets.presets_support import run, source, verify

TOKEN = "gl-secret-token"
CFG = source("gitlab", token=TOKEN)
EVENTS = {
    "push": "Push Hook",
    "tag_push": "Tag Push Hook",
    "merge_request": "Merge Request Hook",
    "group_merge_request": "Merge Request Hook",
    "service_merge_request": "Merge Request Hook",
    "issue": "Issue Hook",
    "note_commit": "Note Hook",
    "note_issue": "Note Hook",
    "note_merge_request": "Note Hook",
    "note_snippet": "Note Hook",
    "pipeline": "Pipeline Hook",
    "build": "Job Hook",
    "job": "Job Hook",
    "wiki_page": "Wiki Page Hook",
    "deployment": "Deployment Hook",
    "feature_flag": "Feature Flag Hook",
    "release": "Release Hook",
    "member": "Member Hook",
    "subgroup": "Subgroup Hook",
    "resource_access_token_group": "Resource Access Token Hook",
    "resource_access_token_project": "Resource Access Token Hook",
}


def body(name: str) -> bytes:
    return (FIXTURES / "gitlab" / f"{name}.json").read_bytes()


def headers(name: str, **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Gitlab-Event": EVENTS[name],
        "X-Gitlab-Token": TOKEN,
        "X-Gitlab-Event-UUID": f"uuid-{name}",
        **extra,
    }


def message(name: str, raw: bytes | None = None) -> tuple[str, str | None]:
    [action] = run(CFG, headers(name), raw if raw is not None else body(name)).actions
    return action.message, action.session_key


@pytest.mark.parametrize("path", sorted((FIXTURES / "gitlab").glob("*.json")), ids=lambda p: p.stem)
def test_every_fixture_maps_without_error(path: Path) -> None:
    result = run(CFG, headers(path.stem), path.read_bytes())
    assert result.delivery_id == f"uuid-{path.stem}"
    for action in result.actions:
        assert action.kind == "agent" and action.message.strip()
        assert action.session_key.startswith("hook:gitlab:")


def test_push() -> None:
    text, session = message("push")
    assert text.splitlines() == [
        "jsmith pushed 4 commit(s) to mike/diaspora@master",
        "- b6568db1 <<<UNTRUSTED commits[0].message: Merge branch 'some-feature' into 'master'>>>",
        "- da156088 <<<UNTRUSTED commits[1].message: fixed readme>>>",
        "… and 2 more",
        "Compare: http://example.com/mike/diaspora/-/compare/95790bf8...da156088",
        "",
        GUIDE,
    ]
    assert session == "hook:gitlab:mike/diaspora"


def test_merge_request_session_per_iid() -> None:
    text, session = message("merge_request")
    assert text.splitlines()[:3] == [
        "Merge request !1 opened by user1 in gitlabhq/gitlab-test: "
        "<<<UNTRUSTED object_attributes.title: MS-Viewport>>>",
        "ms-viewport → master",
        "http://example.com/diaspora/merge_requests/1",
    ]
    assert session == "hook:gitlab:gitlabhq/gitlab-test!1"


def test_issue() -> None:
    text, session = message("issue")
    assert (
        text.splitlines()[0] == "Issue #23 opened by root in gitlabhq/gitlab-test: "
        "<<<UNTRUSTED object_attributes.title: New API: create/update/delete file>>>"
    )
    assert "Create new API for manipulations with repository" in text
    assert session == "hook:gitlab:gitlabhq/gitlab-test#23"


def test_notes_land_in_the_session_of_what_they_comment() -> None:
    text, session = message("note_merge_request")
    assert text.splitlines()[0] == (
        "root commented on merge request !1 in gitlab-org/gitlab-test: "
        "<<<UNTRUSTED merge_request.title: Tempora et eos debitis quae laborum et.>>>"
    )
    assert text.splitlines()[-4:] == ["This MR needs work.", "UNTRUSTED object_attributes.note>>>", "", GUIDE]
    assert session == "hook:gitlab:gitlab-org/gitlab-test!1"
    text, session = message("note_issue")
    assert text.startswith(
        "user1 commented on issue #17 in gitlab-org/gitlab-test: <<<UNTRUSTED issue.title: test_issue>>>"
    )
    assert session == "hook:gitlab:gitlab-org/gitlab-test#17"
    text, _ = message("note_commit")
    assert text.startswith("user1 commented on commit cfe32cf6 in gitlabhq/gitlab-test")


def test_pipeline_only_failures() -> None:
    assert run(CFG, headers("pipeline"), body("pipeline")).actions == []  # the fixture succeeded
    payload = orjson.loads(body("pipeline"))
    payload["object_attributes"]["status"] = "failed"
    payload["builds"][1]["status"] = "failed"
    text, session = message("pipeline", orjson.dumps(payload))
    lines = text.splitlines()
    assert (
        lines[0] == "Pipeline #31 failed in gitlab-org/gitlab-test on master"
        " (bcbb5ec3: <<<UNTRUSTED commit.message: test>>>)"
    )
    assert lines[1] == "- job test-image (stage test) failed"
    assert lines[-3:] == ["http://192.168.64.1:3005/gitlab-org/gitlab-test/-/pipelines/31", "", GUIDE]
    assert session == "hook:gitlab:gitlab-org/gitlab-test!1"  # the pipeline of merge request !1


def test_other_events_get_a_summary() -> None:
    text, _ = message("wiki_page")
    assert text.splitlines()[0] == "GitLab Wiki Page Hook create in root/awesome-project by user1: Awesome"


@pytest.mark.parametrize(
    ("hdrs", "message_"),
    [
        ({"X-Gitlab-Token": "wrong"}, "invalid X-Gitlab-Token"),
        ({"X-Gitlab-Token": ""}, "missing X-Gitlab-Token header"),
        ({"X-Gitlab-Token": TOKEN.upper()}, "invalid X-Gitlab-Token"),
    ],
)
def test_refusals(hdrs: dict[str, str], message_: str) -> None:
    with pytest.raises(Unauthorized, match=message_):
        verify(CFG, headers("push", **hdrs), body("push"))


def test_token_rotation() -> None:
    verify(source("gitlab", token=["old", TOKEN]), headers("push"), body("push"))


def test_delivery_id_rules() -> None:
    # A retry carries the same X-Gitlab-Event-UUID (and Idempotency-Key): the same delivery id.
    assert (
        run(CFG, headers("push"), body("push")).delivery_id
        == run(CFG, headers("push"), body("push")).delivery_id
    )
    no_uuid = {k: v for k, v in headers("push").items() if k != "X-Gitlab-Event-UUID"}
    assert run(CFG, {**no_uuid, "Idempotency-Key": "idem-1"}, body("push")).delivery_id == "idem-1"
    assert run(CFG, no_uuid, body("push")).delivery_id.startswith("sha256:")
    assert run(CFG, no_uuid, body("push")).delivery_id == run(CFG, no_uuid, body("push")).delivery_id


def test_event_allow_list() -> None:
    cfg = source("gitlab", token=TOKEN, events=["Merge Request Hook"])
    assert (
        run(cfg, headers("push"), body("push")).skipped
        == "event 'Push Hook' is not in this source's events list"
    )
    assert run(cfg, headers("merge_request"), body("merge_request")).actions
