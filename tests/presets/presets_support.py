"""Helpers for the preset tests: run a request through a preset's pure pieces, as the ingress does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import presets
from relay.config import SourceConfig
from relay.protocol.actions import AgentAction, WakeAction
from relay.protocol.event import Event
from relay.protocol.mapping import Mapper


@dataclass
class Result:
    delivery_id: str
    skipped: str | None
    actions: list[AgentAction | WakeAction]
    payload: Any


def source(preset: str, **fields: Any) -> SourceConfig:
    cfg = SourceConfig(preset=preset, **fields)
    assert presets.check_config(cfg) is None
    return cfg


def run(cfg: SourceConfig, headers: dict[str, str], body: bytes, name: str = "src") -> Result:
    """verify → parse → delivery id → skip → default transform (through the real Mapper)."""
    headers = {k.lower(): v for k, v in headers.items()}
    preset = presets.for_source(presets.REGISTRY[cfg.preset], cfg)
    preset.verify(headers, body, cfg)
    payload = preset.parse(headers, body)
    delivery_id = preset.delivery_id(headers, payload, body)
    skipped = preset.skip(headers, payload, cfg)
    if skipped is not None:
        return Result(delivery_id, skipped, [], payload)
    event = Event(source=name, payload=payload, headers=headers, path=name, delivery_id=delivery_id)
    return Result(delivery_id, None, Mapper([], {}).map(event, preset.transform), payload)


def verify(cfg: SourceConfig, headers: dict[str, str], body: bytes) -> None:
    presets.REGISTRY[cfg.preset].verify({k.lower(): v for k, v in headers.items()}, body, cfg)
