"""Composing an action: the fields a mapping's templates render, merged with a transform's result.

Pure: no I/O. Follows OpenClaw's `mergeAction` and `validateAction`; every delivered text loses
its control characters (`relay.protocol.fencing.strip_control`) and is cut to fit the gateway.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from relay.errors import TransformError
from relay.protocol.actions import AgentAction, SendAction, ToolAction, WakeAction
from relay.protocol.event import Event
from relay.protocol.fencing import Fencer, is_untrusted, path_pattern, strip_control
from relay.protocol.mapping_config import MappingConfig
from relay.protocol.templates import TemplateContext, render, render_optional

log = logging.getLogger("relay.mapping")

ActionResult = AgentAction | WakeAction | SendAction | ToolAction

# The gateway refuses bodies over 256 KiB (413); longer messages are cut below that, with a marker.
DEFAULT_MAX_MESSAGE_BYTES = 200_000
_MODELS: dict[str, type[AgentAction | WakeAction | SendAction | ToolAction]] = {
    "agent": AgentAction,
    "wake": WakeAction,
    "send": SendAction,
    "tool": ToolAction,
}
_FIELDS = {
    kind: frozenset(f.alias or n for n, f in model.model_fields.items()) - {"kind"}
    for kind, model in _MODELS.items()
}
# The field each kind cannot do without (OpenClaw's validateAction for agent and wake).
_REQUIRED = {"agent": "message", "wake": "text", "send": "message", "tool": "tool"}
# The relay never asks the gateway to drop its safety wrapping of external content.
UNSAFE = "allowUnsafeExternalContent"


def context(event: Event) -> TemplateContext:
    """What a template of `event` can name: payload, headers, query, path."""
    return TemplateContext(event.payload, event.headers, event.query, event.path)


def _render_fenced(template: str | None, ctx: TemplateContext, untrusted: Sequence[str]) -> str:
    """`render`, with the values of untrusted fields fenced and the fencer's footer appended."""
    if not untrusted or not template:
        return render(template, ctx)
    fencer = Fencer()

    def fence(expr: str, value: Any) -> str | None:
        if value is None or value == "" or not is_untrusted(expr, untrusted):
            return None
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        return fencer.auto(text, path_pattern(expr))

    return fencer.finish(render(template, ctx, fence))


def base_fields(mapping: MappingConfig, event: Event, untrusted: Sequence[str] = ()) -> dict[str, Any]:
    """The action the mapping's own fields and templates describe, as gateway field names.

    Values of untrusted fields (the preset's declared ones and the mapping's `fence` list) are
    fenced where `messageTemplate` / `textTemplate` render them (`relay.protocol.fencing`).
    """
    ctx = context(event)
    fenced = mapping.fenced_fields(untrusted)
    if mapping.action == "wake":
        text = _render_fenced(mapping.text_template, ctx, fenced)
        return {"kind": "wake", "text": text, "mode": mapping.wake_mode}
    if mapping.action in ("send", "tool"):
        return _door_fields(mapping, ctx)
    fields = {
        "kind": "agent",
        "message": _render_fenced(mapping.message_template, ctx, fenced),
        "name": render_optional(mapping.name, ctx),
        "agentId": mapping.agent_id,
        "wakeMode": mapping.wake_mode,
        "sessionKey": render_optional(mapping.session_key, ctx),
        "deliver": mapping.deliver,
        "channel": mapping.channel,
        "to": render_optional(mapping.to, ctx),
        "model": render_optional(mapping.model, ctx),
        "thinking": render_optional(mapping.thinking, ctx),
        "timeoutSeconds": mapping.timeout_seconds,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _render_args(value: Any, ctx: TemplateContext) -> Any:
    """A tool's `args` with every string value rendered as a template."""
    if isinstance(value, str):
        return render(value, ctx)
    if isinstance(value, dict):
        return {k: _render_args(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_args(v, ctx) for v in value]
    return value


def _door_fields(mapping: MappingConfig, ctx: TemplateContext) -> dict[str, Any]:
    """The fields of a `send` or `tool` action (docs/gateways.md). No agent reads a plain send or
    a tool's arguments, so nothing is fenced."""
    if mapping.action == "send":
        fields: dict[str, Any] = {
            "kind": "send",
            "message": render(mapping.message_template, ctx),
            "to": render_optional(mapping.to, ctx),
            "channel": mapping.channel,
            "accountId": mapping.account_id,
            "threadId": render_optional(mapping.thread_id, ctx),
            "agentId": mapping.agent_id,
            "sessionKey": render_optional(mapping.session_key, ctx),
        }
    else:
        fields = {
            "kind": "tool",
            "tool": mapping.tool,
            "action": mapping.tool_action,
            "args": _render_args(mapping.args, ctx) if mapping.args is not None else None,
            "sessionKey": render_optional(mapping.session_key, ctx),
            "retryToolErrors": mapping.retry_tool_errors or None,
        }
    return {k: v for k, v in fields.items() if v is not None}


def override_fields(result: Any) -> dict[str, Any]:
    """A transform may return an action model or an OpenClaw-style dict of overrides."""
    if isinstance(result, AgentAction | WakeAction | SendAction | ToolAction):
        fields = result.model_dump(by_alias=True, exclude_unset=True)
        fields["kind"] = result.kind
        return fields
    if isinstance(result, dict):
        return dict(result)
    raise TransformError(
        f"transform returned {type(result).__name__}; expected AgentAction, WakeAction, SendAction, "
        "ToolAction, dict, a list of them or None"
    )


def merge(
    base: dict[str, Any], override: dict[str, Any], max_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES
) -> ActionResult:
    """OpenClaw's `mergeAction`: the override's kind wins; fields of the other kind are dropped;
    a None in the override keeps the base value; then `validateAction`: an agent action needs a
    non-blank message and a wake a non-blank text."""
    if UNSAFE in override:
        override = {k: v for k, v in override.items() if k != UNSAFE}
        log.warning("a transform set %s; dropped: the relay never sends it", UNSAFE)
    kind = override.get("kind") or base.get("kind") or "agent"
    if kind not in _MODELS:
        raise TransformError(f"unknown action kind {kind!r}; expected one of {', '.join(_MODELS)}")
    keep = _FIELDS[kind]
    merged = {k: v for k, v in base.items() if k in keep and base.get("kind") == kind}
    merged.update({k: v for k, v in override.items() if k != "kind" and v is not None})
    merged["kind"] = kind
    mode_key = "mode" if kind == "wake" else "wakeMode"
    if (
        kind in ("agent", "wake")
        and override.get(mode_key) not in (None, "next-heartbeat")
        and mode_key in override
    ):
        # OpenClaw only lets a transform switch the mode to "next-heartbeat"; anything else keeps
        # the mapping's mode (`override.mode === "next-heartbeat" ? ... : base.mode ?? "now"`).
        merged[mode_key] = base.get(mode_key, "now") if base.get("kind") == kind else "now"
    for key, value in merged.items():
        if isinstance(value, str):
            merged[key] = strip_control(value)
    if isinstance(merged.get("sessionKey"), str):  # a key is one line: no \n or \t either
        merged["sessionKey"] = "".join(c for c in merged["sessionKey"] if c >= " " and c != "\x7f")
    text_key = _REQUIRED[kind]
    text = merged.get(text_key)
    if not isinstance(text, str) or not text.strip():
        raise TransformError(f"hook mapping requires {text_key}")  # OpenClaw's validateAction
    if kind == "send" and not str(merged.get("to") or "").strip():
        raise TransformError("a send action requires to")  # the gateway's SendParams: `to` is required
    if max_bytes is not None and kind != "tool":
        merged[text_key] = cut_text(text, max_bytes)
    try:
        return _MODELS[kind].model_validate(merged)
    except ValidationError as exc:
        raise TransformError(f"invalid {kind} action: {_short(exc)}") from exc


def cut_text(text: str, max_bytes: int) -> str:
    """`text` whose JSON encoding fits in `max_bytes`, cut with a visible marker when it did not."""
    size = len(orjson.dumps(text)) - 2
    if size <= max_bytes:
        return text
    marker = f"\n\n[… cut by openclaw-relay: the text was {size} bytes; the limit is {max_bytes}]"
    room = max_bytes - (len(orjson.dumps(marker)) - 2)
    cut = text
    while cut and len(orjson.dumps(cut)) - 2 > room:
        cut = cut[: max(0, min(len(cut) - 1, int(len(cut) * room / (len(orjson.dumps(cut)) - 2))))]
    return cut + marker


def _short(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'action'}: {e['msg']}" for e in exc.errors())


def as_list(result: Any) -> list[Any]:
    if result is None:
        return []
    if isinstance(result, list | tuple):
        return [r for r in result if r is not None]
    return [result]
