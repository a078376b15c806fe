"""github: X-Hub-Signature-256 webhooks, deduplicated on X-GitHub-Delivery.

The default transform writes one readable agent message per event, with a session per
repository and pull request / issue so that follow-ups land in the same conversation.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from relay.config import SourceConfig
from relay.errors import BadRequest, UnsupportedMediaType
from relay.protocol.actions import AgentAction
from relay.protocol.event import Event
from relay.protocol.fencing import RESULT_EVENTS, Fencer, first_line, sender_skip
from relay.protocol.preset import Headers, Preset, SenderSetup, load_json
from relay.protocol.verify import bounded_id, verify_hmac_hex

MAX_TEXT = 4000  # characters of any one sender-written text (bodies, comments) put in a message


def check_config(cfg: SourceConfig) -> tuple[str, str] | None:
    if not cfg.secret:
        return "secret", "the github preset needs the webhook secret"
    return None


def verify(headers: Headers, body: bytes, cfg: SourceConfig) -> None:
    secrets = [s.get_secret_value().encode() for s in cfg.secret]
    sig256 = headers.get("x-hub-signature-256")
    if sig256 or not cfg.allow_sha1:
        verify_hmac_hex(body, sig256, secrets, header="X-Hub-Signature-256")
        return
    verify_hmac_hex(
        body,
        headers.get("x-hub-signature"),
        secrets,
        prefix="sha1=",
        algorithm="sha1",
        header="X-Hub-Signature",
    )


def delivery_id(headers: Headers, payload: Any, body: bytes) -> str:
    value = headers.get("x-github-delivery", "").strip()
    if not value:
        raise BadRequest("missing X-GitHub-Delivery header")
    return bounded_id(value)


def parse(headers: Headers, body: bytes) -> Any:
    """GitHub sends JSON, or a form with the JSON in `payload=` when the hook is set so."""
    ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("form body is not valid") from None
        if len(fields.get("payload", [])) != 1:
            raise BadRequest("form body needs exactly one payload field")
        body = fields["payload"][0].encode()
    elif ctype != "application/json":
        raise UnsupportedMediaType(f"content type {ctype!r} is not accepted; GitHub sends application/json")
    return load_json(body)


def skip(headers: Headers, payload: Any, cfg: SourceConfig) -> str | None:
    event = headers.get("x-github-event", "")
    if event == "ping":
        return "ping"
    if cfg.events is not None and event not in cfg.events:
        return f"event {event!r} is not in this source's events list"
    if event in RESULT_EVENTS or not isinstance(payload, dict):
        return None
    sender: dict[str, Any] = payload["sender"] if isinstance(payload.get("sender"), dict) else {}
    login = str(sender.get("login") or "")
    is_bot = sender.get("type") == "Bot" or login.lower().endswith("[bot]")
    return sender_skip([login], is_bot, cfg.allow_bots, cfg.ignore_senders)


def _user(obj: Any) -> str:
    if not isinstance(obj, dict):
        return "someone"
    return str(obj.get("login") or obj.get("name") or "someone")


def _obj(value: Any) -> dict[str, Any]:
    """The payload is the sender's: a field that should be an object may be anything."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def transform(event: Event) -> AgentAction | None:
    p = event.payload if isinstance(event.payload, dict) else {}
    kind = event.headers.get("x-github-event", "event")
    repo = _text(
        _obj(p.get("repository")).get("full_name") or _obj(p.get("organization")).get("login") or "github"
    )
    action = p.get("action")
    sender = _user(p.get("sender"))
    session = f"hook:github:{repo}"
    lines: list[str]
    f = Fencer()  # every sender-written text goes through it (relay.protocol.fencing)

    if kind == "push":
        ref = str(p.get("ref", "")).removeprefix("refs/heads/")
        commits = [c for c in _list(p.get("commits")) if isinstance(c, dict)]
        lines = [
            f"{_user(p.get('pusher') or p.get('sender'))} pushed {len(commits)} commit(s) to {repo}@{ref}"
        ]
        lines += [
            f"- {str(c.get('id', ''))[:7]} {f.inline(first_line(c.get('message')), f'commits[{i}].message')}"
            for i, c in enumerate(commits[:20])
        ]
        if p.get("compare"):
            lines.append(f"Compare: {p['compare']}")
    elif kind in ("pull_request", "pull_request_review", "pull_request_review_comment"):
        pr = _obj(p.get("pull_request"))
        session = f"hook:github:{repo}#{pr.get('number')}"
        lines = [
            f"Pull request #{pr.get('number')} {action} by {sender} in {repo}: "
            f"{f.inline(pr.get('title', ''), 'pull_request.title')}",
            f"{pr.get('html_url', '')}",
        ]
        review = p.get("review") or p.get("comment")
        if isinstance(review, dict) and review.get("body"):
            label = "review.body" if p.get("review") else "comment.body"
            lines += ["", f.block(review["body"], label, MAX_TEXT)]
        elif action == "opened" and pr.get("body"):
            lines += ["", f.block(pr["body"], "pull_request.body", MAX_TEXT)]
    elif kind in ("issues", "issue_comment"):
        issue = _obj(p.get("issue"))
        session = f"hook:github:{repo}#{issue.get('number')}"
        what = "Pull request" if issue.get("pull_request") else "Issue"
        if kind == "issue_comment":
            lines = [
                f"{sender} commented on {what.lower()} #{issue.get('number')} in {repo}: "
                f"{f.inline(issue.get('title', ''), 'issue.title')}",
                _obj(p.get("comment")).get("html_url", ""),
                "",
                f.block(_obj(p.get("comment")).get("body"), "comment.body", MAX_TEXT),
            ]
        else:
            lines = [
                f"{what} #{issue.get('number')} {action} by {sender} in {repo}: "
                f"{f.inline(issue.get('title', ''), 'issue.title')}",
                issue.get("html_url", ""),
            ]
            if action == "opened" and issue.get("body"):
                lines += ["", f.block(issue["body"], "issue.body", MAX_TEXT)]
    elif kind in ("workflow_run", "check_run", "check_suite"):
        run = _obj(p.get(kind))
        conclusion = run.get("conclusion")
        if action != "completed" or conclusion in ("success", "skipped", "neutral", None):
            return None  # only failures need an agent
        name = run.get("name") or _obj(run.get("app")).get("name") or kind
        lines = [
            f"{kind.replace('_', ' ')} {name!r} {conclusion} in {repo} on {run.get('head_branch', '')}",
            run.get("html_url", ""),
        ]
    elif kind == "release":
        rel = _obj(p.get("release"))
        lines = [
            f"Release {rel.get('tag_name', '')} {action} in {repo} by {sender}: "
            f"{f.inline(rel.get('name') or '', 'release.name')}",
            rel.get("html_url", ""),
        ]
        if rel.get("body"):
            lines += ["", f.block(rel["body"], "release.body", MAX_TEXT)]
    else:
        lines = [f"GitHub {kind}{' ' + action if isinstance(action, str) else ''} in {repo} by {sender}"]
    message = f.finish("\n".join(_text(line) for line in lines if line is not None).strip())
    return AgentAction(message=message, name="GitHub", session_key=session)


# Fields outsiders write, fenced when a mapping's template renders them.
UNTRUSTED = (
    "pull_request.title",
    "pull_request.body",
    "issue.title",
    "issue.body",
    "comment.body",
    "review.body",
    "commits[].message",
    "head_commit.message",
    "release.name",
    "release.body",
    "discussion.title",
    "discussion.body",
)


PRESET = Preset(
    name="github",
    verify=verify,
    delivery_id=delivery_id,
    parse=parse,
    transform=transform,
    skip=skip,
    untrusted=UNTRUSTED,
    unique_headers=("x-hub-signature-256", "x-hub-signature", "x-github-event", "x-github-delivery"),
    check_config=check_config,
    auth="HMAC-SHA256 in X-Hub-Signature-256",
    setup=SenderSetup(
        "secret",
        "GITHUB_WEBHOOK_SECRET",
        "GitHub: repository or organization Settings → Webhooks → Add webhook",
        "application/json",
        "push, pull_request, issues, issue_comment, workflow_run (or: Send me everything)",
        extra={"events": ["push", "pull_request", "issues", "issue_comment", "workflow_run"]},
    ),
)
