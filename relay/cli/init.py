"""`relay init`: a first relay.yaml, a `.env` of fresh secrets, and what to paste into each sender.

Pure: builds the texts; the command writes them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Kind:
    """How one preset's sender is set up."""

    key: str  # secret | token
    variable: str
    where: str  # where, in the sender, the webhook is added
    content_type: str
    events: str
    generated: bool = True  # False: the sender generates the secret; paste it into .env
    extra: dict[str, object] = field(default_factory=dict)


KINDS = {
    "github": Kind(
        "secret",
        "GITHUB_WEBHOOK_SECRET",
        "GitHub: repository or organization Settings → Webhooks → Add webhook",
        "application/json",
        "push, pull_request, issues, issue_comment, workflow_run (or: Send me everything)",
        extra={"events": ["push", "pull_request", "issues", "issue_comment", "workflow_run"]},
    ),
    "gitlab": Kind(
        "token",
        "GITLAB_WEBHOOK_TOKEN",
        "GitLab: project Settings → Webhooks → Add new webhook (Secret token)",
        "JSON (GitLab always sends it)",
        "Push, Merge request, Issues, Comments, Pipeline events",
    ),
    "alertmanager": Kind(
        "token",
        "ALERTMANAGER_WEBHOOK_TOKEN",
        "alertmanager.yml: a receiver with webhook_configs (url, http_config.authorization.credentials)",
        "JSON (Alertmanager always sends it)",
        "the routes that lead to this receiver (firing and resolved)",
    ),
    "generic": Kind(
        "token",
        "GENERIC_WEBHOOK_TOKEN",
        "any sender: the header Authorization: Bearer <token>",
        "application/json",
        "anything; each request becomes one agent turn",
    ),
    "linear": Kind(
        "secret",
        "LINEAR_WEBHOOK_SECRET",
        "Linear: Settings → API → Webhooks → New webhook",
        "JSON (Linear always sends it)",
        "Issues, Comments",
        generated=False,
    ),
    "stripe": Kind(
        "secret",
        "STRIPE_WEBHOOK_SECRET",
        "Stripe: Developers → Webhooks → Add endpoint",
        "JSON (Stripe always sends it)",
        "the events your agent should see, e.g. invoice.payment_failed",
        generated=False,
    ),
    "standard-webhooks": Kind(
        "secret",
        "STANDARD_WEBHOOKS_SECRET",
        "the sender's webhook settings (Standard Webhooks)",
        "application/json",
        "as the sender offers",
    ),
}

GATEWAY_VARIABLE = "OPENCLAW_HOOKS_TOKEN"


@dataclass(frozen=True)
class Setup:
    config: str  # relay.yaml
    dotenv: str  # .env
    instructions: str  # what to paste into each sender


def fresh_secret(preset: str) -> str:
    if preset == "standard-webhooks":  # its own format: whsec_ + base64 of the key
        import base64

        return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    return secrets.token_urlsafe(32)


def build(sources: list[str], public_url: str, gateway_url: str, gateway_token: str | None = None) -> Setup:
    """The files and instructions for these presets (each source named after its preset)."""
    unknown = [s for s in sources if s not in KINDS]
    if unknown:
        raise ValueError(f"unknown source {unknown[0]!r} (relay init knows: {', '.join(KINDS)})")
    public_url = public_url.rstrip("/")
    values = {GATEWAY_VARIABLE: gateway_token or secrets.token_urlsafe(32)}
    config = [
        "# Written by `relay init`. Secrets are in .env beside this file (never commit it).",
        "gateway:",
        f"  url: {gateway_url}",
        f"  token: env:{GATEWAY_VARIABLE}       # the gateway's hooks.token",
        "sources:",
    ]
    notes = []
    for name in dict.fromkeys(sources):
        kind = KINDS[name]
        value = fresh_secret(name) if kind.generated else ""
        values[kind.variable] = value
        config += [f"  {name}:", f"    preset: {name}", f"    {kind.key}: env:{kind.variable}"]
        for key, item in kind.extra.items():
            config.append(
                f"    {key}: [{', '.join(map(str, item))}]"
                if isinstance(item, list)
                else f"    {key}: {item}"
            )
        url = f"{public_url}/hooks/{name}"
        shown = value or f"the signing secret {name} shows you; put it in .env as {kind.variable}="
        lines = [
            f"{name}: {kind.where}",
            f"  URL:           {url}",
            f"  {('Secret:' if kind.key == 'secret' else 'Token:'):<15}{shown}",
            f"  Content type:  {kind.content_type}",
            f"  Events:        {kind.events}",
        ]
        if name == "alertmanager":
            lines += [
                "  receivers:",
                "    - name: openclaw",
                "      webhook_configs:",
                f"        - url: {url}",
                "          http_config:",
                "            authorization:",
                f"              credentials: {value}",
            ]
        notes.append("\n".join(lines))
    config.append("mappings: []")
    gateway_note = (
        f"gateway: {gateway_url} must accept the token in .env as {GATEWAY_VARIABLE}: set the gateway's "
        "hooks.token to it (or put the gateway's hooks.token there)."
    )
    dotenv = ["# Secrets of relay.yaml (written by `relay init`; mode 0600). Never commit this file."]
    dotenv += [f"{name}={value}" for name, value in values.items()]
    return Setup("\n".join(config) + "\n", "\n".join(dotenv) + "\n", "\n\n".join([*notes, gateway_note]))
