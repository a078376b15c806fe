"""The built-in presets, listed explicitly, with their per-source config checks and options."""

from __future__ import annotations

from collections.abc import Callable

from relay.config import SourceConfig
from relay.protocol.preset import Preset

from . import alertmanager, generic, github, gitlab, gmail, linear, openclaw, standard_webhooks, stripe

REGISTRY: dict[str, Preset] = {
    p.name: p
    for p in (
        github.PRESET,
        generic.PRESET,
        alertmanager.PRESET,
        gitlab.PRESET,
        gmail.PRESET,
        stripe.PRESET,
        linear.PRESET,
        standard_webhooks.PRESET,
        openclaw.AGENT,
        openclaw.WAKE,
    )
}

# What a source of each preset must configure: (key, problem) or None when the config is usable.
CHECKS: dict[str, Callable[[SourceConfig], tuple[str, str] | None]] = {
    "github": github.check_config,
    "generic": generic.check_config,
    "alertmanager": alertmanager.check_config,
    "gitlab": gitlab.check_config,
    "gmail": gmail.check_config,
    "stripe": stripe.check_config,
    "linear": linear.check_config,
    "standard-webhooks": standard_webhooks.check_config,
}

# Presets whose transform depends on a source option.
CONFIGURE: dict[str, Callable[[Preset, SourceConfig], Preset]] = {
    "alertmanager": alertmanager.configure,
    "generic": generic.configure,
}


def check_config(cfg: SourceConfig) -> tuple[str, str] | None:
    if cfg.content == "raw" and cfg.preset != "generic":
        return "content", "only the generic preset takes raw bodies (content: raw)"
    preset = REGISTRY.get(cfg.preset)
    if cfg.allow_query_token and preset is not None and preset.verify_query is None:
        return "allow_query_token", f"the {cfg.preset} preset does not take a token from the URL"
    check = CHECKS.get(cfg.preset)
    return check(cfg) if check else None


def for_source(preset: Preset, cfg: SourceConfig) -> Preset:
    """The preset as one source uses it (e.g. alertmanager's `resolved` option bound into its transform)."""
    configure = CONFIGURE.get(preset.name)
    return configure(preset, cfg) if configure else preset
