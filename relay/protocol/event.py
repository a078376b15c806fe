"""`Event`: what a transform sees of one received webhook."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """One verified webhook. `headers` keys are lower-case; `payload` is the parsed body."""

    source: str
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    path: str = ""
    delivery_id: str = ""
    id: str = ""
    received_at: float = 0.0
