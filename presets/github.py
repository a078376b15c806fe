"""github: X-Hub-Signature-256 webhooks, deduplicated on X-GitHub-Delivery.

The default transform writes one readable agent message per event, with a session per
repository and pull request / issue so that follow-ups land in the same conversation.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson

from relay.actions import AgentAction
from relay.config import SourceConfig
from relay.errors import BadRequest, UnsupportedMediaType
from relay.event import Event
from relay.preset import Headers, Preset
from relay.verify import verify_hmac_hex

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
    verify_hmac_hex(body, headers.get("x-hub-signature"), secrets, prefix="sha1=", algorithm="sha1",
                    header="X-Hub-Signature")  # fmt: skip


def delivery_id(headers: Headers, payload: Any, body: bytes) -> str:
    value = headers.get("x-github-delivery", "").strip()
    if not value:
        raise BadRequest("missing X-GitHub-Delivery header")
    return value[:200]


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
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None


def skip(headers: Headers, payload: Any, cfg: SourceConfig) -> str | None:
    event = headers.get("x-github-event", "")
    if event == "ping":
        return "ping"
    if cfg.events is not None and event not in cfg.events:
        return f"event {event!r} is not in this source's events list"
    return None


def _cut(text: Any, limit: int = MAX_TEXT) -> str:
    text = text if isinstance(text, str) else ""
    return text if len(text) <= limit else text[:limit] + f"… [cut, {len(text) - limit} more characters]"


def _user(obj: Any) -> str:
    if not isinstance(obj, dict):
        return "someone"
    return str(obj.get("login") or obj.get("name") or "someone")


def transform(event: Event) -> AgentAction | None:
    p = event.payload if isinstance(event.payload, dict) else {}
    kind = event.headers.get("x-github-event", "event")
    repo = (
        (p.get("repository") or {}).get("full_name") or (p.get("organization") or {}).get("login") or "github"
    )
    action = p.get("action")
    sender = _user(p.get("sender"))
    session = f"hook:github:{repo}"
    lines: list[str]

    if kind == "push":
        ref = str(p.get("ref", "")).removeprefix("refs/heads/")
        commits = p.get("commits") or []
        lines = [
            f"{_user(p.get('pusher') or p.get('sender'))} pushed {len(commits)} commit(s) to {repo}@{ref}"
        ]
        lines += [f"- {str(c.get('id', ''))[:7]} {_cut(c.get('message', ''), 300).splitlines()[0] if c.get('message') else ''}"
                  for c in commits[:20]]  # fmt: skip
        if p.get("compare"):
            lines.append(f"Compare: {p['compare']}")
    elif kind in ("pull_request", "pull_request_review", "pull_request_review_comment"):
        pr = p.get("pull_request") or {}
        session = f"hook:github:{repo}#{pr.get('number')}"
        lines = [f"Pull request #{pr.get('number')} {action} by {sender} in {repo}: {pr.get('title', '')}",
                 f"{pr.get('html_url', '')}"]  # fmt: skip
        review = p.get("review") or p.get("comment")
        if isinstance(review, dict) and review.get("body"):
            lines += ["", _cut(review["body"])]
        elif action == "opened" and pr.get("body"):
            lines += ["", _cut(pr["body"])]
    elif kind in ("issues", "issue_comment"):
        issue = p.get("issue") or {}
        session = f"hook:github:{repo}#{issue.get('number')}"
        what = "Pull request" if issue.get("pull_request") else "Issue"
        if kind == "issue_comment":
            lines = [f"{sender} commented on {what.lower()} #{issue.get('number')} in {repo}: {issue.get('title', '')}",
                     (p.get("comment") or {}).get("html_url", ""), "", _cut((p.get("comment") or {}).get("body"))]  # fmt: skip
        else:
            lines = [f"{what} #{issue.get('number')} {action} by {sender} in {repo}: {issue.get('title', '')}",
                     issue.get("html_url", "")]  # fmt: skip
            if action == "opened" and issue.get("body"):
                lines += ["", _cut(issue["body"])]
    elif kind in ("workflow_run", "check_run", "check_suite"):
        run = p.get(kind) or {}
        conclusion = run.get("conclusion")
        if action != "completed" or conclusion in ("success", "skipped", "neutral", None):
            return None  # only failures need an agent
        name = run.get("name") or (run.get("app") or {}).get("name") or kind
        lines = [f"{kind.replace('_', ' ')} {name!r} {conclusion} in {repo} on {run.get('head_branch', '')}",
                 run.get("html_url", "")]  # fmt: skip
    elif kind == "release":
        rel = p.get("release") or {}
        lines = [f"Release {rel.get('tag_name', '')} {action} in {repo} by {sender}: {rel.get('name') or ''}",
                 rel.get("html_url", ""), "", _cut(rel.get("body"))]  # fmt: skip
    else:
        lines = [f"GitHub {kind}{' ' + action if isinstance(action, str) else ''} in {repo} by {sender}"]
    message = "\n".join(line for line in lines if line is not None).strip()
    return AgentAction(message=message, name="GitHub", session_key=session)


PRESET = Preset(
    name="github", verify=verify, delivery_id=delivery_id, parse=parse, transform=transform, skip=skip
)
