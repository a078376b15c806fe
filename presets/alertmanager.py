"""alertmanager: Prometheus Alertmanager webhook (version 4) notifications.

Auth is a bearer token (`http_config.authorization`) or HTTP basic auth (`http_config.basic_auth`).
One agent action per group notification summarises all its alerts, in a session per group.
Alertmanager re-sends the same notification when the receiver fails (5xx), so the delivery id is
a digest of what makes a notification: group, status and each alert's (fingerprint, startsAt, endsAt).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import replace
from typing import Any

import orjson

from relay.config import SourceConfig
from relay.errors import BadRequest, Unauthorized
from relay.protocol.actions import AgentAction, WakeAction
from relay.protocol.event import Event
from relay.protocol.fencing import Fencer
from relay.protocol.preset import Headers, Preset, SenderSetup, parse_json
from relay.protocol.verify import presented_token, verify_basic_auth, verify_token

MAX_ALERTS = 30  # alerts listed one by one in a message; the rest are counted
MAX_TEXT = 1000  # characters of one annotation


def check_config(cfg: SourceConfig) -> tuple[str, str] | None:
    if not cfg.token and not (cfg.username and cfg.password):
        return "token", "the alertmanager preset needs a token, or a username and password (basic auth)"
    if bool(cfg.username) != bool(cfg.password):
        return "password", "basic auth needs both username and password"
    return None


def verify(headers: Headers, body: bytes, cfg: SourceConfig) -> None:
    scheme = headers.get("authorization", "").partition(" ")[0].lower()
    if scheme == "basic" and cfg.username and cfg.password:
        verify_basic_auth(
            headers.get("authorization"), cfg.username, [cfg.password.get_secret_value().encode()]
        )
        return
    if cfg.token:
        verify_token(
            presented_token(headers), [t.get_secret_value().encode() for t in cfg.token], what="bearer token"
        )
        return
    if scheme != "basic":
        raise Unauthorized("missing basic auth credentials")
    raise Unauthorized("invalid basic auth credentials")


def parse(headers: Headers, body: bytes) -> Any:
    payload = parse_json(headers, body)
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise BadRequest("not an Alertmanager webhook: no alerts list")
    return payload


def delivery_id(headers: Headers, payload: Any, body: bytes) -> str:
    """The same notification re-sent has the same id; a new firing/resolution has another."""
    alerts = sorted(
        (str(a.get("fingerprint", "")), str(a.get("startsAt", "")), str(a.get("endsAt", "")))
        for a in payload["alerts"]
        if isinstance(a, dict)
    )
    material = orjson.dumps([str(payload.get("groupKey", "")), str(payload.get("status", "")), alerts])
    return "am:" + hashlib.sha256(material).hexdigest()


def skip(headers: Headers, payload: Any, cfg: SourceConfig) -> str | None:
    if payload.get("status") == "resolved" and cfg.resolved == "drop":
        return "resolved notification (resolved: drop)"
    return None


def session_key(payload: dict[str, Any]) -> str:
    group = str(payload.get("groupKey") or payload.get("groupLabels") or "")
    return "hook:alertmanager:" + hashlib.sha256(group.encode()).hexdigest()[:16]


def _labels(labels: Any) -> str:
    if not isinstance(labels, dict) or not labels:
        return ""
    return ", ".join(f"{k}={v}" for k, v in labels.items())


def _alert_lines(alert: dict[str, Any], f: Fencer) -> list[str]:
    labels: dict[str, Any] = alert["labels"] if isinstance(alert.get("labels"), dict) else {}
    notes: dict[str, Any] = alert["annotations"] if isinstance(alert.get("annotations"), dict) else {}
    head = f"- [{str(alert.get('status', '?')).upper()}]"
    if labels.get("severity"):
        head += f" {labels['severity']}"
    head += f" {labels.get('alertname', 'alert')}"
    if labels.get("instance"):
        head += f" on {labels['instance']}"
    summary = notes.get("summary") or notes.get("message")
    if summary:
        head += f": {f.inline(summary, 'annotations.summary', MAX_TEXT)}"
    lines = [head]
    if notes.get("description") and notes.get("description") != summary:
        lines.append(f"  {f.inline(notes['description'], 'annotations.description', MAX_TEXT)}")
    when = f"  since {alert.get('startsAt', '?')}"
    ends = str(alert.get("endsAt", ""))
    if alert.get("status") == "resolved" and ends and not ends.startswith("0001-"):
        when += f", resolved {ends}"
    lines.append(when)
    if alert.get("generatorURL"):
        lines.append(f"  {alert['generatorURL']}")
    return lines


def message(payload: dict[str, Any]) -> str:
    alerts = [a for a in payload["alerts"] if isinstance(a, dict)]
    status = str(payload.get("status", "firing"))
    firing = sum(1 for a in alerts if a.get("status") == "firing")
    resolved = sum(1 for a in alerts if a.get("status") == "resolved")
    group = _labels(payload.get("groupLabels")) or _labels(payload.get("commonLabels")) or "all alerts"
    parts = ([f"{firing} firing"] if firing else []) + ([f"{resolved} resolved"] if resolved else [])
    counts = ", ".join(parts)
    lines = [f"Alertmanager: {status.upper()} — {group} ({counts or 'no alerts'})"]
    if payload.get("receiver"):
        lines[0] += f", receiver {payload['receiver']}"
    f = Fencer()  # annotations are rendered from labels, which the monitored targets may set
    common = payload.get("commonAnnotations")
    if isinstance(common, dict) and common.get("summary"):
        lines.append(f.inline(common["summary"], "commonAnnotations.summary", MAX_TEXT))
    lines.append("")
    for alert in alerts[:MAX_ALERTS]:
        lines += _alert_lines(alert, f)
    hidden = max(0, len(alerts) - MAX_ALERTS) + int(payload.get("truncatedAlerts") or 0)
    if hidden:
        lines.append(f"… and {hidden} more alert(s) not listed")
    if payload.get("externalURL"):
        lines += ["", f"Alertmanager: {payload['externalURL']}"]
    return f.finish("\n".join(lines).strip())


def transform(event: Event, resolved: str = "agent") -> AgentAction | WakeAction | None:
    payload = event.payload
    if payload.get("status") == "resolved":
        if resolved == "drop":
            return None
        if resolved == "wake":
            return WakeAction(text=message(payload).splitlines()[0], mode="now")
    return AgentAction(message=message(payload), name="Alertmanager", session_key=session_key(payload))


def configure(preset: Preset, cfg: SourceConfig) -> Preset:
    """The preset as one source uses it: the transform follows the source's `resolved` option."""
    return replace(preset, transform=functools.partial(transform, resolved=cfg.resolved))


# Fields outsiders may write, fenced when a mapping's template renders them.
UNTRUSTED = ("alerts[].annotations", "commonAnnotations")


def receiver(url: str, token: str) -> list[str]:
    """The alertmanager.yml receiver that posts to the relay with the token."""
    return [
        "  receivers:",
        "    - name: openclaw",
        "      webhook_configs:",
        f"        - url: {url}",
        "          http_config:",
        "            authorization:",
        f"              credentials: {token}",
    ]


PRESET = Preset(
    name="alertmanager",
    verify=verify,
    delivery_id=delivery_id,
    parse=parse,
    transform=transform,
    skip=skip,
    untrusted=UNTRUSTED,
    unique_headers=("authorization",),
    check_config=check_config,
    configure=configure,
    auth="bearer token or basic auth",
    setup=SenderSetup(
        "token",
        "ALERTMANAGER_WEBHOOK_TOKEN",
        "alertmanager.yml: a receiver with webhook_configs (url, http_config.authorization.credentials)",
        "JSON (Alertmanager always sends it)",
        "the routes that lead to this receiver (firing and resolved)",
        paste=receiver,
    ),
)
