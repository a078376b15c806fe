"""The built-in presets, listed explicitly."""

from __future__ import annotations

from relay.preset import Preset

from . import generic, github, openclaw

REGISTRY: dict[str, Preset] = {
    p.name: p for p in (github.PRESET, generic.PRESET, openclaw.AGENT, openclaw.WAKE)
}
