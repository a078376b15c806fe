"""Ask the agent to triage a Prometheus Alertmanager notification; resolved ones just wake.

Use it for an Alertmanager source (preset `alertmanager`):

    sources:
      alerts: {preset: alertmanager, token: "env:ALERTMANAGER_TOKEN"}
    mappings:
      - match: {path: alerts}
        transform: {module: transforms.alertmanager_triage}
        thinking: low

One notification groups several alerts (the same `groupKey`); they become one prompt, in one
session per alert group, so the agent sees the history of that group. Copy this file and adapt
the runbook hints; `tests/protocol/test_transform_examples.py` tests it against captured notifications.
"""

from __future__ import annotations

from typing import Any

from relay import AgentAction, Event, WakeAction

MAX_ALERTS = 10  # alerts listed in one prompt; the rest are counted
SEVERITY_ORDER = {"critical": 0, "error": 1, "warning": 2, "info": 3}


def _line(alert: dict[str, Any]) -> str:
    labels = alert.get("labels") or {}
    notes = alert.get("annotations") or {}
    summary = notes.get("summary") or notes.get("description") or ""
    where = labels.get("instance") or labels.get("service") or labels.get("job") or "?"
    return (
        f"- [{labels.get('severity', 'none')}] {labels.get('alertname', '?')} on {where}"
        f" since {alert.get('startsAt', '?')}: {summary}"
    )


def transform(event: Event) -> AgentAction | WakeAction | None:
    p: dict[str, Any] = event.payload
    alerts = [a for a in p.get("alerts") or [] if isinstance(a, dict)]
    if not alerts:
        return None
    group = p.get("groupLabels") or {}
    title = ", ".join(f"{k}={v}" for k, v in sorted(group.items())) or p.get("groupKey", "alerts")

    if p.get("status") == "resolved":
        # Nothing to do but let the main session know: a wake, not an agent run.
        return WakeAction(text=f"Resolved: {title} ({len(alerts)} alert(s))", mode="next-heartbeat")

    firing = sorted(
        (a for a in alerts if a.get("status") == "firing"),
        key=lambda a: SEVERITY_ORDER.get((a.get("labels") or {}).get("severity", ""), 9),
    )
    lines = [f"Alertmanager: {len(firing)} alert(s) firing for {title}", ""]
    lines += [_line(a) for a in firing[:MAX_ALERTS]]
    if len(firing) > MAX_ALERTS:
        lines.append(f"- … and {len(firing) - MAX_ALERTS} more")
    runbooks = sorted({(a.get("annotations") or {}).get("runbook_url", "") for a in firing} - {""})
    if runbooks:
        lines += ["", "Runbooks: " + " ".join(runbooks)]
    if firing and firing[0].get("generatorURL"):
        lines += [f"Graph: {firing[0]['generatorURL']}"]
    lines += [
        "",
        "Triage: is this real, what is the likely cause, what should a human do first? "
        "Keep it under 10 lines.",
    ]
    return AgentAction(
        message="\n".join(lines),
        session_key=f"hook:alertmanager:{p.get('receiver', 'default')}:{title.replace(' ', '')}",
        name="Alertmanager",
    )
