"""What a preset is: a sender's verification scheme, its delivery-id rule and a default transform.

Presets are pure (no I/O); the registry of built-in ones is `presets.REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .config import SourceConfig
from .errors import BadRequest, UnsupportedMediaType
from .mapping import Transform
from .verify import body_digest

Headers = Mapping[str, str]


def parse_json(headers: Headers, body: bytes) -> Any:
    """Parse a JSON body; like the gateway, a missing Content-Type is read as JSON."""
    ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"content type {ctype!r} is not accepted here; send application/json")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("body is not valid JSON") from None


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    verify: Callable[[Headers, bytes, SourceConfig], None]
    delivery_id: Callable[[Headers, Any, bytes], str] = lambda headers, payload, body: body_digest(body)
    parse: Callable[[Headers, bytes], Any] = parse_json
    transform: Transform | None = None
    # Checks on the parsed event that need the source config (e.g. an event allow-list): return a
    # reason to skip the event, or None.
    skip: Callable[[Headers, Any, SourceConfig], str | None] = lambda headers, payload, cfg: None
