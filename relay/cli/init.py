"""`relay init`: a first relay.yaml, a `.env` of fresh secrets, and what to paste into each sender.

Pure: builds the texts; the command writes them. What each sender needs is its preset's `setup`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import presets

GATEWAY_VARIABLE = "OPENCLAW_HOOKS_TOKEN"


@dataclass(frozen=True)
class Setup:
    config: str  # relay.yaml
    dotenv: str  # .env
    instructions: str  # what to paste into each sender


def build(sources: list[str], public_url: str, gateway_url: str, gateway_token: str | None = None) -> Setup:
    """The files and instructions for these presets (each source named after its preset)."""
    unknown = [s for s in sources if s not in presets.SETUPS]
    if unknown:
        raise ValueError(f"unknown source {unknown[0]!r} (relay init knows: {', '.join(presets.SETUPS)})")
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
        kind = presets.SETUPS[name]
        value = kind.fresh() if kind.generated else ""
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
        if kind.paste is not None:
            lines += kind.paste(url, value)
        notes.append("\n".join(lines))
    config.append("mappings: []")
    gateway_note = (
        f"gateway: {gateway_url} must accept the token in .env as {GATEWAY_VARIABLE}: set the gateway's "
        "hooks.token to it (or put the gateway's hooks.token there)."
    )
    dotenv = ["# Secrets of relay.yaml (written by `relay init`; mode 0600). Never commit this file."]
    dotenv += [f"{name}={value}" for name, value in values.items()]
    return Setup("\n".join(config) + "\n", "\n".join(dotenv) + "\n", "\n\n".join([*notes, gateway_note]))
