"""The built-in presets, listed explicitly: each module holds all its sender needs (see `Preset`).

Adding a sender: docs/development.md, "Adding a sender".
"""

from __future__ import annotations

from relay.config import SourceConfig
from relay.protocol.preset import Preset, SenderSetup

from . import alertmanager, generic, github, gitlab, gmail, linear, openclaw, standard_webhooks, stripe

# In the order `relay init` lists the senders it sets up.
REGISTRY: dict[str, Preset] = {
    p.name: p
    for p in (
        github.PRESET,
        gitlab.PRESET,
        alertmanager.PRESET,
        generic.PRESET,
        linear.PRESET,
        stripe.PRESET,
        standard_webhooks.PRESET,
        gmail.PRESET,
        openclaw.AGENT,
        openclaw.WAKE,
    )
}

# The senders `relay init` sets up, by preset name.
SETUPS: dict[str, SenderSetup] = {name: p.setup for name, p in REGISTRY.items() if p.setup is not None}


def check_config(cfg: SourceConfig) -> tuple[str, str] | None:
    """What a source of its preset must configure: (key, problem), or None when the config is usable."""
    preset = REGISTRY.get(cfg.preset)
    if cfg.content == "raw" and not (preset is not None and preset.raw_content):
        raw = " or ".join(p.name for p in REGISTRY.values() if p.raw_content)
        return "content", f"only the {raw} preset takes raw bodies (content: raw)"
    if cfg.allow_query_token and preset is not None and preset.verify_query is None:
        return "allow_query_token", f"the {cfg.preset} preset does not take a token from the URL"
    check = preset.check_config if preset is not None else None
    return check(cfg) if check else None


def for_source(preset: Preset, cfg: SourceConfig) -> Preset:
    """The preset as one source uses it (e.g. alertmanager's `resolved` option bound into its transform)."""
    return preset.configure(preset, cfg) if preset.configure else preset
