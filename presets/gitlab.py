"""gitlab: GitLab project/group webhooks, authenticated by their secret token (X-Gitlab-Token).

Deduplicated on X-Gitlab-Event-UUID (else Idempotency-Key, else the body's digest). The default
transform writes a readable message for pushes, merge requests, issues, comments and failed
pipelines/jobs, and a one-line summary for anything else; sessions are per project, and per
merge request (`!iid`) or issue (`#iid`) so that follow-ups land in the same conversation.
"""

from __future__ import annotations

from typing import Any

from relay.config import SourceConfig
from relay.errors import Unauthorized
from relay.protocol.actions import AgentAction
from relay.protocol.event import Event
from relay.protocol.fencing import RESULT_EVENTS, Fencer, first_line, sender_skip
from relay.protocol.preset import Headers, Preset, SenderSetup
from relay.protocol.verify import body_digest, bounded_id, verify_token

MAX_TEXT = 4000
ZERO_SHA = "0" * 40
# GitLab's `object_attributes.action` values, as words a person would write.
_DONE = {
    "open": "opened",
    "close": "closed",
    "reopen": "reopened",
    "update": "updated",
    "merge": "merged",
    "approved": "approved",
    "unapproved": "unapproved",
    "approval": "approved",
    "unapproval": "unapproved",
}


def check_config(cfg: SourceConfig) -> tuple[str, str] | None:
    if not cfg.token:
        return "token", "the gitlab preset needs the webhook's secret token"
    return None


def verify(headers: Headers, body: bytes, cfg: SourceConfig) -> None:
    presented = headers.get("x-gitlab-token")
    if not presented:
        raise Unauthorized("missing X-Gitlab-Token header")
    verify_token(presented, [t.get_secret_value().encode() for t in cfg.token], what="X-Gitlab-Token")


def delivery_id(headers: Headers, payload: Any, body: bytes) -> str:
    for name in ("x-gitlab-event-uuid", "idempotency-key"):
        value = headers.get(name, "").strip()
        if value:
            return bounded_id(value)
    return body_digest(body)


def skip(headers: Headers, payload: Any, cfg: SourceConfig) -> str | None:
    event = headers.get("x-gitlab-event", "")
    if cfg.events is not None and event not in cfg.events:
        return f"event {event!r} is not in this source's events list"
    if (
        event in RESULT_EVENTS
        or not isinstance(payload, dict)
        or str(payload.get("object_kind")) in RESULT_EVENTS
    ):
        return None
    user: dict[str, Any] = payload["user"] if isinstance(payload.get("user"), dict) else {}
    names = [
        str(user.get("username") or payload.get("user_username") or ""),
        str(user.get("name") or payload.get("user_name") or ""),
        str(user.get("email") or ""),
    ]
    return sender_skip(
        names, user.get("bot") is True or is_bot_username(names[0]), cfg.allow_bots, cfg.ignore_senders
    )


# GitLab's bot users: project/group access tokens (`project_42_bot_<hex>`, `group_7_bot`) and the
# internal ones (alert, support, visual review, ghost, security, automation, admin bots).
_INTERNAL_BOTS = frozenset(
    {
        "alert-bot",
        "support-bot",
        "visual-review-bot",
        "ghost",
        "gitlab-security-bot",
        "gitlab-automation-bot",
        "gitlab-admin-bot",
        "gitlab-llm-bot",
        "duo-developer",
    }
)


_TITLE = {"MergeRequest": "merge_request.title", "Issue": "issue.title", "Snippet": "snippet.title"}


def is_bot_username(username: str) -> bool:
    name = username.lower()
    if name in _INTERNAL_BOTS or name.endswith("[bot]"):
        return True
    head, sep, rest = name.partition("_")
    number, sep2, tail = rest.partition("_bot")
    return head in ("project", "group") and bool(sep and sep2) and number.isdigit() and tail[:1] in ("", "_")


def _user(p: dict[str, Any]) -> str:
    user = p.get("user")
    if isinstance(user, dict):
        return str(user.get("username") or user.get("name") or "someone")
    return str(p.get("user_username") or p.get("user_name") or "someone")


def _ref(symbol: str, iid: Any) -> str:
    return f" {symbol}{iid}" if iid is not None else ""


def _session(project: str, symbol: str, iid: Any) -> str:
    """One conversation per project, and per merge request (`!iid`) or issue (`#iid`)."""
    return f"hook:gitlab:{project}{symbol}{iid}" if iid is not None else f"hook:gitlab:{project}"


def _by(user: str) -> str:
    return f" by {user}" if user != "someone" else ""


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _push(p: dict[str, Any], project: str, f: Fencer) -> list[str]:
    ref = str(p.get("ref", ""))
    user = _user(p)
    if ref.startswith("refs/tags/") or p.get("object_kind") == "tag_push":
        tag = ref.removeprefix("refs/tags/")
        verb = "deleted tag" if p.get("after") == ZERO_SHA else "pushed tag"
        return [f"{user} {verb} {tag} in {project}"]
    branch = ref.removeprefix("refs/heads/")
    if p.get("after") == ZERO_SHA:
        return [f"{user} deleted branch {branch} in {project}"]
    commits = [c for c in p.get("commits") or [] if isinstance(c, dict)]
    total = p.get("total_commits_count", len(commits))
    lines = [f"{user} pushed {total} commit(s) to {project}@{branch}"]
    lines += [
        f"- {str(c.get('id', ''))[:8]} "
        + f.inline(first_line(c.get("title") or c.get("message")), f"commits[{i}].message")
        for i, c in enumerate(commits[:20])
    ]
    if isinstance(total, int) and total > len(commits[:20]):
        lines.append(f"… and {total - len(commits[:20])} more")
    web = _d(p.get("project")).get("web_url")
    if web and p.get("before") and p.get("after") and p.get("before") != ZERO_SHA:
        lines.append(f"Compare: {web}/-/compare/{str(p['before'])[:8]}...{str(p['after'])[:8]}")
    return lines


def transform(event: Event) -> AgentAction | None:
    p = event.payload if isinstance(event.payload, dict) else {}
    kind = event.headers.get("x-gitlab-event") or str(p.get("object_kind") or p.get("event_name") or "event")
    proj = _d(p.get("project"))
    project = str(
        proj.get("path_with_namespace")
        or proj.get("name")
        or p.get("group_path")
        or _d(p.get("group")).get("full_path")
        or "gitlab"
    )
    attrs = _d(p.get("object_attributes"))
    user = _user(p)
    session = f"hook:gitlab:{project}"
    lines: list[str]
    object_kind = p.get("object_kind")
    f = Fencer()  # every sender-written text goes through it (relay.protocol.fencing)

    if object_kind in ("push", "tag_push"):
        lines = _push(p, project, f)
    elif object_kind == "merge_request":
        session = _session(project, "!", attrs.get("iid"))
        action = _DONE.get(str(attrs.get("action")), attrs.get("action") or attrs.get("state") or "updated")
        lines = [
            f"Merge request{_ref('!', attrs.get('iid'))} {action}{_by(user)} in {project}: "
            f"{f.inline(attrs.get('title', ''), 'object_attributes.title')}"
        ]
        if attrs.get("source_branch") and attrs.get("target_branch"):
            lines.append(f"{attrs['source_branch']} → {attrs['target_branch']}")
        lines.append(str(attrs.get("url") or ""))
        if attrs.get("action") == "open" and attrs.get("description"):
            lines += ["", f.block(attrs["description"], "object_attributes.description", MAX_TEXT)]
    elif object_kind in ("issue", "work_item"):
        session = _session(project, "#", attrs.get("iid"))
        action = _DONE.get(str(attrs.get("action")), attrs.get("action") or attrs.get("state") or "updated")
        what = "Confidential issue" if attrs.get("confidential") else "Issue"
        lines = [
            f"{what}{_ref('#', attrs.get('iid'))} {action}{_by(user)} in {project}: "
            f"{f.inline(attrs.get('title', ''), 'object_attributes.title')}",
            str(attrs.get("url") or ""),
        ]
        if attrs.get("action") == "open" and attrs.get("description"):
            lines += ["", f.block(attrs["description"], "object_attributes.description", MAX_TEXT)]
    elif object_kind == "note":
        target = str(attrs.get("noteable_type") or "")
        title = ""
        if target == "MergeRequest":
            mr = _d(p.get("merge_request"))
            session = _session(project, "!", mr.get("iid"))
            on, title = f"merge request{_ref('!', mr.get('iid'))}", str(mr.get("title") or "")
        elif target == "Issue":
            issue = _d(p.get("issue"))
            session = _session(project, "#", issue.get("iid"))
            on, title = f"issue{_ref('#', issue.get('iid'))}", str(issue.get("title") or "")
        elif target == "Commit":
            on = f"commit {str(_d(p.get('commit')).get('id') or attrs.get('commit_id') or '')[:8]}"
        elif target == "Snippet":
            on, title = (
                f"snippet{_ref('$', _d(p.get('snippet')).get('id'))}",
                str(_d(p.get("snippet")).get("title") or ""),
            )
        else:
            on = target.lower() or "something"
        lines = [
            f"{user} commented on {on} in {project}"
            + (f": {f.inline(title, _TITLE.get(target, 'title'))}" if title else ""),
            str(attrs.get("url") or ""),
            "",
            f.block(attrs.get("note"), "object_attributes.note", MAX_TEXT),
        ]
    elif object_kind == "pipeline":
        if attrs.get("status") != "failed":
            return None  # only failures need an agent
        mr = _d(p.get("merge_request"))
        session = _session(project, "!", mr.get("iid"))
        failed = [b for b in p.get("builds") or [] if isinstance(b, dict) and b.get("status") == "failed"]
        message = f.inline(first_line(_d(p.get("commit")).get("message")), "commit.message")
        lines = [
            f"Pipeline #{attrs.get('id')} failed in {project} on {attrs.get('ref', '')}"
            f" ({str(attrs.get('sha', ''))[:8]}: {message})"
        ]
        lines += [
            f"- job {b.get('name')} (stage {b.get('stage')}) failed"
            + (" [allowed to fail]" if b.get("allow_failure") else "")
            for b in failed[:20]
        ]
        if proj.get("web_url") and attrs.get("id"):
            lines.append(f"{proj['web_url']}/-/pipelines/{attrs['id']}")
    elif object_kind == "build":
        if p.get("build_status") != "failed" or p.get("build_allow_failure"):
            return None  # only failures need an agent
        repo_url = _d(p.get("repository")).get("homepage")
        lines = [
            f"Job {p.get('build_name')} (stage {p.get('build_stage')}) failed"
            f" in {project} on {p.get('ref', '')}"
            + (f": {p['build_failure_reason']}" if p.get("build_failure_reason") else "")
        ]
        if repo_url and p.get("build_id"):
            lines.append(f"{repo_url}/-/jobs/{p['build_id']}")
    else:
        action = attrs.get("action") or p.get("action") or p.get("event_name") or p.get("status") or ""
        title = attrs.get("title") or p.get("name") or attrs.get("name") or p.get("environment") or ""
        lines = [
            f"GitLab {kind}{' ' + str(action) if action else ''} in {project}{_by(user)}"
            + (f": {title}" if title else ""),
            str(attrs.get("url") or p.get("url") or ""),
        ]
    text = f.finish("\n".join(lines).strip())
    return AgentAction(message=text, name="GitLab", session_key=session)


# Fields outsiders write, fenced when a mapping's template renders them.
UNTRUSTED = (
    "object_attributes.title",
    "object_attributes.description",
    "object_attributes.note",
    "merge_request.title",
    "merge_request.description",
    "issue.title",
    "issue.description",
    "commits[].message",
    "commits[].title",
    "commit.message",
    "snippet.title",
)


PRESET = Preset(
    name="gitlab",
    verify=verify,
    delivery_id=delivery_id,
    transform=transform,
    skip=skip,
    untrusted=UNTRUSTED,
    unique_headers=("x-gitlab-token", "x-gitlab-event", "x-gitlab-event-uuid", "idempotency-key"),
    check_config=check_config,
    auth="X-Gitlab-Token",
    setup=SenderSetup(
        "token",
        "GITLAB_WEBHOOK_TOKEN",
        "GitLab: project Settings → Webhooks → Add new webhook (Secret token)",
        "JSON (GitLab always sends it)",
        "Push, Merge request, Issues, Comments, Pipeline events",
    ),
)
