"""OpenClaw's `{{...}}` template language for hook mappings, in Python.

Same rules as OpenClaw's gateway (`src/gateway/hooks-mapping.ts`, `renderTemplate` and
`resolveTemplateExpr`): `{{payload.a.b}}`, `{{a[0].b}}` (a bare path reads the payload),
`{{headers.x-name}}`, `{{query.k}}`, `{{path}}`, `{{now}}`; a missing value renders as "",
strings as themselves, numbers and booleans as text, anything else as JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

_EXPR = re.compile(r"\{\{\s*([^}]+)\s*\}\}")
_PART = re.compile(r"([^.\[\]]+)|(\[(\d+)\])")
# Mirrors OpenClaw's BLOCKED_PATH_KEYS; harmless in Python, kept so both render the same.
_BLOCKED = frozenset({"__proto__", "prototype", "constructor"})


class TemplateContext:
    """The values a template can reach."""

    __slots__ = ("payload", "headers", "query", "path")

    def __init__(self, payload: Any, headers: Mapping[str, str], query: Mapping[str, str], path: str) -> None:
        self.payload = payload
        self.headers = headers
        self.query = query
        self.path = path


def _canonical_index(name: str) -> bool:
    return name.isdigit() and str(int(name)) == name


def get_by_path(value: Any, path: str) -> Any:
    """Walk `a.b[0].c` through dicts and lists; anything missing gives None."""
    if not path:
        return None
    current = value
    for match in _PART.finditer(path):
        if current is None:
            return None
        name, index = match.group(1), match.group(3)
        if isinstance(current, list) and name is not None and (_canonical_index(name) or name == "length"):
            # JavaScript reads `a.0` like `a[0]`, and `a.length` is the array's length.
            index, name = (name, None) if name != "length" else (None, name)
            if name == "length":
                current = len(current)
                continue
        if index is not None:
            if not isinstance(current, list):
                return None
            i = int(index)
            current = current[i] if i < len(current) else None
            continue
        if name in _BLOCKED or not isinstance(current, Mapping):
            return None
        current = current.get(name)
    return current


def resolve(expr: str, ctx: TemplateContext) -> Any:
    if expr == "path":
        return ctx.path
    if expr == "now":
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if expr.startswith("headers."):
        return get_by_path(ctx.headers, expr[len("headers.") :])
    if expr.startswith("query."):
        return get_by_path(ctx.query, expr[len("query.") :])
    if expr.startswith("payload."):
        return get_by_path(ctx.payload, expr[len("payload.") :])
    return get_by_path(ctx.payload, expr)


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))  # JavaScript's String(1.0) is "1"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


# Renders one expression's value itself when it must be fenced (relay.protocol.fencing), else None.
Fence = Callable[[str, Any], str | None]


def render(template: str | None, ctx: TemplateContext, fence: Fence | None = None) -> str:
    if not template:
        return ""
    if fence is None:
        return _EXPR.sub(lambda m: to_text(resolve(m.group(1).strip(), ctx)), template)

    def one(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        value = resolve(expr, ctx)
        fenced = fence(expr, value)
        return to_text(value) if fenced is None else fenced

    return _EXPR.sub(one, template)


def render_optional(template: str | None, ctx: TemplateContext) -> str | None:
    """Like OpenClaw's `renderOptional`: rendered and trimmed, None when empty."""
    if not template:
        return None
    return render(template, ctx).strip() or None


def has_expressions(template: str | None) -> bool:
    return bool(template and _EXPR.search(template))
