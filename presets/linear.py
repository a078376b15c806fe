"""linear: Linear webhooks, signed with `Linear-Signature` (hex HMAC-SHA256 of the raw body).

The body's `webhookTimestamp` (Unix milliseconds, covered by the signature) must be within
`tolerance_seconds` of now: 60 s unless the source sets another value, as Linear's SDK checks it.
Deduplicated on `Linear-Delivery`. The default transform writes a readable message for Issue and
Comment events, with one session per issue (`hook:linear:<issue id>`), and a one-line
summary for other types. Titles, descriptions and comments are fenced (relay.protocol.fencing).
"""

from __future__ import annotations

import re
import time
from typing import Any

from relay.config import SourceConfig
from relay.errors import Unauthorized
from relay.protocol.actions import AgentAction
from relay.protocol.event import Event
from relay.protocol.fencing import Fencer, sender_skip
from relay.protocol.preset import Headers, Preset, SenderSetup, load_json
from relay.protocol.verify import body_digest, bounded_id, stale_message, verify_hmac_hex

DEFAULT_TOLERANCE_SECONDS = 60  # Linear's SDK refuses a webhookTimestamp more than a minute off
MAX_TEXT = 4000
_DONE = {
    "create": "created",
    "update": "updated",
    "remove": "removed",
    "restore": "restored",
    "archive": "archived",
    "unarchive": "unarchived",
}


def check_config(cfg: SourceConfig) -> tuple[str, str] | None:
    if not cfg.secret:
        return "secret", "the linear preset needs the webhook's signing secret"
    return None


def tolerance(cfg: SourceConfig) -> int:
    return cfg.tolerance_seconds if "tolerance_seconds" in cfg.model_fields_set else DEFAULT_TOLERANCE_SECONDS


def verify(headers: Headers, body: bytes, cfg: SourceConfig, now: float | None = None) -> None:
    """The signature on the raw bytes first, then the signed timestamp's freshness."""
    secrets = [s.get_secret_value().encode() for s in cfg.secret]
    verify_hmac_hex(body, headers.get("linear-signature"), secrets, prefix="", header="Linear-Signature")
    payload = load_json(body)
    stamp = payload.get("webhookTimestamp") if isinstance(payload, dict) else None
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise Unauthorized("missing webhookTimestamp")
    limit = tolerance(cfg)
    current = time.time() if now is None else now
    if abs(current * 1000 - stamp) > limit * 1000:
        raise Unauthorized(stale_message("the payload's webhookTimestamp", current - stamp / 1000, limit))


def delivery_id(headers: Headers, payload: Any, body: bytes) -> str:
    value = headers.get("linear-delivery", "").strip()
    return bounded_id(value) if value else body_digest(body)


def skip(headers: Headers, payload: Any, cfg: SourceConfig) -> str | None:
    if not isinstance(payload, dict):
        return None
    kind = str(payload.get("type") or headers.get("linear-event") or "")
    if cfg.events is not None and kind not in cfg.events:
        return f"event {kind!r} is not in this source's events list"
    actor = _d(payload.get("actor"))
    names = [str(actor.get(k) or "") for k in ("name", "email", "id")]
    actor_type = str(actor.get("type") or "user").lower()
    is_bot = actor_type not in ("user", "") or bool(_d(payload.get("data")).get("botActor"))
    return sender_skip(names, is_bot, cfg.allow_bots, cfg.ignore_senders)


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def issue_ref(issue: dict[str, Any]) -> str:
    """`KOR-11` (the identifier, or team key and number), else the issue's id."""
    if issue.get("identifier"):
        return str(issue["identifier"])
    key, number = _d(issue.get("team")).get("key"), issue.get("number")
    if key and number is not None:
        return f"{key}-{number}"
    return str(issue.get("id") or "?")


def _ref_in_url(url: str) -> str | None:
    """`KOR-12` from `https://linear.app/<team>/issue/KOR-12/<slug>#comment-…` (a comment's own url)."""
    match = re.search(r"/issue/([A-Za-z0-9]+-[0-9]+)(?:[/#?]|$)", url)
    return match.group(1) if match else None


def transform(event: Event) -> AgentAction:
    p = event.payload if isinstance(event.payload, dict) else {}
    kind = str(p.get("type") or event.headers.get("linear-event") or "event")
    action = str(p.get("action") or "")
    done = _DONE.get(action, action or "changed")
    data = _d(p.get("data"))
    actor = _d(p.get("actor")).get("name") or _d(data.get("user")).get("name")
    by = f" by {actor}" if actor else ""
    url = str(p.get("url") or data.get("url") or "")
    f = Fencer()
    session = "hook:linear"
    # One session per issue, keyed by the issue's id: the one key Issue and Comment events both carry
    # (a comment's payload has only `data.issue.id` and its title, not the identifier KOR-11).
    if kind == "Issue":
        ref = issue_ref(data)
        session = f"hook:linear:{data['id']}" if data.get("id") else f"hook:linear:{ref}"
        team = _d(data.get("team")).get("name")
        lines = [
            f"Linear issue {ref} {done}{by}"
            + (f" in {team}" if team else "")
            + f": {f.inline(data.get('title', ''), 'data.title')}"
        ]
        facts = [
            f"{label}: {value}"
            for label, value in (
                ("State", _d(data.get("state")).get("name")),
                ("Priority", data.get("priorityLabel")),
                ("Assignee", _d(data.get("assignee")).get("name")),
            )
            if value
        ]
        if facts:
            lines.append(" · ".join(facts))
        changed = sorted(k for k in _d(p.get("updatedFrom")) if k not in ("updatedAt", "sortOrder"))
        if action == "update" and changed:
            lines.append("Changed: " + ", ".join(changed))
        lines.append(url)
        if action == "create" and data.get("description"):
            lines += ["", f.block(data["description"], "data.description", MAX_TEXT)]
    elif kind == "Comment":
        issue = _d(data.get("issue"))
        issue_id = issue.get("id") or data.get("issueId")
        ref = issue_ref(issue) if issue.get("identifier") else _ref_in_url(url) or str(issue_id or "?")
        session = f"hook:linear:{issue_id}" if issue_id else "hook:linear"
        title = f": {f.inline(issue['title'], 'data.issue.title')}" if issue.get("title") else ""
        verb = "commented on" if action == "create" else f"{done} a comment on"
        lines = [f"{actor or 'someone'} {verb} Linear issue {ref}{title}", url]
        if action != "remove" and data.get("body"):
            lines += ["", f.block(data["body"], "data.body", MAX_TEXT)]
    else:
        name = data.get("title") or data.get("name")
        lines = [f"Linear {kind} {done}{by}" + (f": {f.inline(name, 'data.title')}" if name else ""), url]
    message = f.finish("\n".join(line for line in lines if line is not None).strip())
    return AgentAction(message=message, name="Linear", session_key=session)


# Fields outsiders write, fenced when a mapping's template renders them.
UNTRUSTED = ("data.title", "data.description", "data.body", "data.name", "data.issue.title", "updatedFrom")

PRESET = Preset(
    name="linear",
    verify=verify,
    delivery_id=delivery_id,
    transform=transform,
    skip=skip,
    untrusted=UNTRUSTED,
    unique_headers=("linear-signature", "linear-delivery", "linear-event"),
    check_config=check_config,
    auth="HMAC-SHA256 in Linear-Signature",
    setup=SenderSetup(
        "secret",
        "LINEAR_WEBHOOK_SECRET",
        "Linear: Settings → API → Webhooks → New webhook",
        "JSON (Linear always sends it)",
        "Issues, Comments",
        generated=False,
    ),
)
