"""OpenClaw-compatible hook mappings: which mapping matches an event, and the actions it becomes.

Pure: no I/O. Follows OpenClaw's `applyHookMappings`: mappings are tried in order (the user's
first, then the source preset's), the first that matches decides; its templated fields form
the base action, and a transform's result is merged over them.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from relay.errors import ConfigError, TransformError
from relay.protocol.actions import AgentAction, SendAction, ToolAction, WakeAction, WakeMode
from relay.protocol.budget import TransformBudget
from relay.protocol.event import Event
from relay.protocol.fencing import Fencer, is_untrusted, path_pattern
from relay.protocol.templates import TemplateContext, get_by_path, render, render_optional

log = logging.getLogger("relay.mapping")

ActionResult = AgentAction | WakeAction | SendAction | ToolAction
Transform = Callable[[Event], Any]

MAX_ACTIONS_PER_EVENT = 20
# The gateway refuses bodies over 256 KiB (413); longer messages are cut below that, with a marker.
DEFAULT_MAX_MESSAGE_BYTES = 200_000
_AGENT_FIELDS = frozenset(f.alias or n for n, f in AgentAction.model_fields.items()) - {"kind"}
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
# C0/C1 control characters except tab and newline, and the bidirectional overrides that can make
# text read differently than it is: removed from every text the relay delivers.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# The relay never asks the gateway to drop its safety wrapping of external content.
UNSAFE = "allowUnsafeExternalContent"


def strip_control(text: str) -> str:
    """`text` without control characters other than `\\n` and `\\t` (`\\r\\n` becomes `\\n`) and
    without bidirectional overrides."""
    return _CONTROL.sub("", text)


# OpenClaw's `forEach` (one action per item of a list) is a transform's list return in the relay.
FOR_EACH_INSTEAD = (
    "to fan out, give the mapping a transform that returns a list: each item becomes one action "
    "(at most 20 per event)"
)
FOR_EACH_UNSUPPORTED = f"forEach is not supported by the relay: remove it; {FOR_EACH_INSTEAD}"


class MatchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    source: str | None = None
    # Relay extension: payload fields that must equal these values (`{"status": "resolved"}`).
    payload: dict[str, Any] | None = None


class TransformRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    module: str
    export: str | None = None


def parse_duration(value: Any) -> Any:
    """`30s`, `2m`, `1h`, `500ms` or a number of seconds."""
    if isinstance(value, str):
        text = value.strip().lower()
        for suffix, scale in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
            if text.endswith(suffix) and text[: -len(suffix)].strip().replace(".", "", 1).isdigit():
                return float(text[: -len(suffix)]) * scale
        return text
    return value


class CooldownConfig(BaseModel):
    """At most one agent turn per rendered `key` per `window`: `drop` keeps the window's first
    event, `last` delivers its latest when the window closes (`relay.hold.cooldown`)."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1)
    window: Annotated[float, BeforeValidator(parse_duration)] = Field(gt=0, le=7 * 24 * 3600)
    mode: Literal["drop", "last"] = "drop"


class BatchConfig(BaseModel):
    """Gather the events of a rendered `key` for `window` and send one action listing them all
    (`relay.hold.batching`); `max` events flush the batch early."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1)
    window: Annotated[float, BeforeValidator(parse_duration)] = Field(gt=0, le=24 * 3600)
    max: int = Field(default=50, ge=1, le=1000)


def _delay_shorthand(value: Any) -> Any:
    return {"after": value} if isinstance(value, str | int | float) else value


class DelayConfig(BaseModel):
    """Send the actions `after` a delay (`relay.hold.delayed`), unless an event whose mapping has
    `cancel` with the same rendered `key` comes first. `delay: 10m` is short for `{after: 10m}`."""

    model_config = ConfigDict(extra="forbid")
    after: Annotated[float, BeforeValidator(parse_duration)] = Field(gt=0, le=7 * 24 * 3600)
    key: str | None = None


class CancelConfig(BaseModel):
    """Cancel the delayed actions of this rendered `key` (`relay.hold.delayed`)."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1)


class MappingConfig(BaseModel):
    """One entry of `mappings:`, the same fields as OpenClaw's `hooks.mappings`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str | None = None
    match: MatchConfig = Field(default_factory=MatchConfig)
    action: Literal["agent", "wake", "send", "tool"] = "agent"
    wake_mode: WakeMode = Field(default="now", alias="wakeMode")
    name: str | None = None
    agent_id: str | None = Field(default=None, alias="agentId")
    session_key: str | None = Field(default=None, alias="sessionKey")
    message_template: str | None = Field(default=None, alias="messageTemplate")
    text_template: str | None = Field(default=None, alias="textTemplate")
    deliver: bool | None = None
    allow_unsafe_external_content: bool | None = Field(default=None, alias="allowUnsafeExternalContent")
    channel: str | None = None
    to: str | None = None
    model: str | None = None
    thinking: str | None = None
    timeout_seconds: int | None = Field(default=None, alias="timeoutSeconds")
    # Relay extensions for the gateway's other doors (docs/gateways.md): `action: send` uses
    # messageTemplate, to, channel, accountId, threadId, agentId, sessionKey; `action: tool` uses
    # tool, toolAction, args (string values are templates) and sessionKey.
    account_id: str | None = Field(default=None, alias="accountId")
    thread_id: str | None = Field(default=None, alias="threadId")
    tool: str | None = None
    tool_action: str | None = Field(default=None, alias="toolAction")
    args: dict[str, Any] | None = None
    retry_tool_errors: bool | None = Field(
        default=None, alias="retryToolErrors"
    )  # `tool`: rerun one that threw
    transform: TransformRef | None = None
    # Relay extension: deliver to a gateway named in `gateways:` instead of the source's.
    gateway: str | None = None
    # Relay extensions (not in OpenClaw's hooks.mappings), see docs/agent-safety.md:
    fence: bool | list[str] = Field(
        default=True,
        description="fence untrusted fields rendered by messageTemplate/textTemplate: true = the "
        "preset's declared fields, a list = those and these expressions, false = none",
    )
    cooldown: CooldownConfig | None = None
    batch: BatchConfig | None = None
    delay: Annotated[DelayConfig | None, BeforeValidator(_delay_shorthand)] = None
    cancel: CancelConfig | None = None

    def fenced_fields(self, declared: Sequence[str]) -> tuple[str, ...]:
        if self.fence is False:
            return ()
        extra = self.fence if isinstance(self.fence, list) else []
        return (*declared, *extra)

    @field_validator("allow_unsafe_external_content")
    @classmethod
    def _never_unsafe(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError(
                "the relay never sends allowUnsafeExternalContent: true; sender text stays wrapped "
                "by the gateway (docs/security.md)"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _openclaw_only(cls, data: Any) -> Any:
        """OpenClaw keys the relay does not implement, refused with what to do instead (pydantic
        would only say "Extra inputs are not permitted")."""
        if isinstance(data, dict) and "forEach" in data:
            raise ValueError(FOR_EACH_UNSUPPORTED)
        return data

    @model_validator(mode="after")
    def _one_gate(self) -> MappingConfig:
        if sum(x is not None for x in (self.cooldown, self.batch, self.delay)) > 1:
            raise ValueError("a mapping has at most one of `cooldown`, `batch` and `delay`")
        return self


def _normalize_path(raw: str | None) -> str | None:
    if not raw or not raw.strip():
        return None
    return raw.strip().strip("/")


def matches(mapping: MappingConfig, event: Event) -> bool:
    """`match.path` is the hook name after /hooks/; `match.source` is the payload's `source` field,
    exactly as in OpenClaw."""
    want_path = _normalize_path(mapping.match.path)
    if want_path and want_path != _normalize_path(event.path):
        return False
    want_source = (mapping.match.source or "").strip()  # OpenClaw: `match.source?.trim()`
    if want_source:
        source = event.payload.get("source") if isinstance(event.payload, dict) else None
        if not isinstance(source, str) or source != want_source:
            return False
    for path, want in (mapping.match.payload or {}).items():
        if get_by_path(event.payload, path) != want:
            return False
    return True


def _context(event: Event) -> TemplateContext:
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
    ctx = _context(event)
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
    """The fields of a `send` or `tool` action (docs/gateways.md). No agent reads a plain send or a
    tool's arguments, so nothing is fenced."""
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


def _override_fields(result: Any) -> dict[str, Any]:
    """A transform may return an action model or an OpenClaw-style dict of overrides."""
    if isinstance(result, AgentAction | WakeAction | SendAction | ToolAction):
        fields = result.model_dump(by_alias=True, exclude_unset=True)
        fields["kind"] = result.kind
        return fields
    if isinstance(result, dict):
        return dict(result)
    raise TransformError(
        f"transform returned {type(result).__name__}; expected AgentAction, WakeAction, SendAction, ToolAction, "
        "dict, a list of them or None"
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


def _as_list(result: Any) -> list[Any]:
    if result is None:
        return []
    if isinstance(result, list | tuple):
        return [r for r in result if r is not None]
    return [result]


class Mapper:
    """Turns events into actions with a list of mappings and their loaded transforms.

    The first mapping that matches decides, even when its transform returns None (OpenClaw:
    "the first match owns the request"); with none matching, the source preset's transform runs.
    """

    def __init__(
        self,
        mappings: Sequence[MappingConfig],
        transforms: dict[str, Transform],
        *,
        max_message_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
        untrusted: Mapping[str, Sequence[str]] | None = None,
        allowed_agents: Mapping[str, Sequence[str] | None] | None = None,
    ) -> None:
        self.mappings = list(mappings)
        self.transforms = transforms
        self.max_message_bytes = max_message_bytes
        # Per source name: the preset's untrusted fields, and the agentIds its actions may name.
        self.untrusted = dict(untrusted or {})
        self.allowed_agents = {k: v for k, v in (allowed_agents or {}).items() if v is not None}
        self.has_cooldown = any(m.cooldown is not None for m in self.mappings)
        self.has_batch = any(m.batch is not None for m in self.mappings)
        self.has_delay = any(m.delay is not None or m.cancel is not None for m in self.mappings)
        check_static_agent_ids(self.mappings, self.allowed_agents)

    def match(self, event: Event) -> MappingConfig | None:
        return next((m for m in self.mappings if matches(m, event)), None)

    def uses_transform(self, event: Event) -> bool:
        """Whether mapping `event` runs a user's transform (which then deserves a time budget)."""
        mapping = self.match(event)
        return mapping is not None and mapping.transform is not None

    def map(self, event: Event, preset_transform: Transform | None = None) -> list[ActionResult]:
        """The actions for `event`; an empty list skips it. Raises TransformError."""
        return self._allowed(event, self._map(event, preset_transform))

    def _map(self, event: Event, preset_transform: Transform | None) -> list[ActionResult]:
        limit = self.max_message_bytes
        mapping = self.match(event)
        if mapping is not None:
            base = base_fields(mapping, event, self.untrusted.get(event.source, ()))
            if mapping.transform is None:
                return [merge(base, {}, limit)]
            result = self.transforms[transform_key(mapping.transform)](event)
            return self._cap([merge(base, _override_fields(r), limit) for r in _as_list(result)])
        if preset_transform is not None:
            actions = []
            for r in _as_list(preset_transform(event)):
                fields = _override_fields(r)
                actions.append(merge({"kind": fields.get("kind", "agent")}, fields, limit))
            return self._cap(actions)
        return []

    def _allowed(self, event: Event, actions: list[ActionResult]) -> list[ActionResult]:
        """Refuse (TransformError: the event is parked) an agentId outside the source's allow-list."""
        allowed = self.allowed_agents.get(event.source)
        if allowed is None:
            return actions
        for action in actions:
            agent_id = getattr(action, "agent_id", None)
            if agent_id is not None and not agent_allowed(agent_id, allowed):
                raise TransformError(
                    f"agentId {agent_id!r} is not allowed for source {event.source!r} "
                    f"(allowed_agent_ids: {', '.join(allowed) or 'none'})"
                )
        return actions

    def cooldown(self, event: Event) -> tuple[str, CooldownConfig] | None:
        """The rendered cooldown key and settings of the mapping that decides `event`, if it has one."""
        if not self.has_cooldown:
            return None
        mapping = self.match(event)
        if mapping is None or mapping.cooldown is None:
            return None
        key = render(mapping.cooldown.key, _context(event)).strip()
        return (f"{event.source}:{key}", mapping.cooldown) if key else None

    def batch(self, event: Event) -> tuple[str, BatchConfig] | None:
        """The rendered batch key and settings of the mapping that decides `event`, if it has one."""
        if not self.has_batch:
            return None
        mapping = self.match(event)
        if mapping is None or mapping.batch is None:
            return None
        key = render(mapping.batch.key, _context(event)).strip()
        return (f"{event.source}:{key}", mapping.batch) if key else None

    def delay(self, event: Event) -> tuple[float, str | None, str | None] | None:
        """(delay in s or 0, the rendered delay key, the rendered cancel key) of the mapping that
        decides `event`, when it has `delay` or `cancel`."""
        if not self.has_delay:
            return None
        mapping = self.match(event)
        if mapping is None or (mapping.delay is None and mapping.cancel is None):
            return None
        ctx = _context(event)

        def key(template: str | None) -> str | None:
            text = render(template, ctx).strip() if template else ""
            return f"{event.source}:{text}" if text else None

        after = mapping.delay.after if mapping.delay is not None else 0.0
        return (
            after,
            key(mapping.delay.key if mapping.delay else None),
            key(mapping.cancel.key if mapping.cancel else None),
        )

    def map_within(
        self, budget: TransformBudget | None, event: Event, preset_transform: Transform | None = None
    ) -> list[ActionResult]:
        """`map`, with a user's transform run under `budget` (blocking the calling thread)."""
        if budget is not None and self.uses_transform(event):
            return budget.call(self.map, event, preset_transform)
        return self.map(event, preset_transform)

    async def amap(
        self, budget: TransformBudget | None, event: Event, preset_transform: Transform | None = None
    ) -> list[ActionResult]:
        """`map` for the event loop: a user's transform runs in a budgeted thread; templates inline."""
        if budget is not None and self.uses_transform(event):
            return await budget.acall(self.map, event, preset_transform)
        return self.map(event, preset_transform)

    @staticmethod
    def _cap(actions: list[ActionResult]) -> list[ActionResult]:
        if len(actions) > MAX_ACTIONS_PER_EVENT:
            raise TransformError(f"{len(actions)} actions for one event; at most {MAX_ACTIONS_PER_EVENT}")
        return actions


def agent_allowed(agent_id: str, allowed: Sequence[str]) -> bool:
    """Like the gateway's hooks.allowedAgentIds: `*` allows any; ids compare case-insensitively."""
    want = agent_id.strip().lower()
    return any(a == "*" or a.strip().lower() == want for a in allowed)


def check_static_agent_ids(
    mappings: Sequence[MappingConfig], allowed_agents: Mapping[str, Sequence[str]]
) -> None:
    """Refuse at start-up a mapping whose own `agentId` a source it can match does not allow."""
    for i, mapping in enumerate(mappings):
        if mapping.agent_id is None:
            continue
        path = _normalize_path(mapping.match.path)
        for source, allowed in allowed_agents.items():
            if (path is None or path == source) and not agent_allowed(mapping.agent_id, allowed):
                raise ConfigError(
                    f"mappings.{i}.agentId: {mapping.agent_id!r} is not in "
                    f"sources.{source}.allowed_agent_ids ({', '.join(allowed) or 'empty'})"
                )


def transform_key(ref: TransformRef) -> str:
    return f"{ref.module}:{ref.export or 'transform'}"


def _import_file(ref: TransformRef, base_dir: Path) -> Any:
    """Import a transform given as a `.py` path, which must stay inside the config's folder
    (as OpenClaw keeps transform modules inside `transformsDir`: "must be within")."""
    root = base_dir.resolve()
    path = (root / ref.module).resolve()  # resolve() follows symlinks: a link out is refused too
    if not path.is_relative_to(root):
        raise ConfigError(f"transform module {ref.module!r} must be within {root}")
    if not path.is_file():
        raise ConfigError(f"transform module {ref.module!r}: no such file {path}")
    name = "relay_transform_" + "_".join(path.relative_to(root).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_transform(ref: TransformRef, base_dir: Path) -> Transform:
    """Import `module` (a dotted name importable from the config file's folder, or a `.py` path
    inside it) and return its export, failing fast."""
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    try:
        if ref.module.endswith(".py"):
            module = _import_file(ref, base_dir)
        else:
            module = importlib.import_module(ref.module)
    except ConfigError:
        raise
    except BaseException as exc:  # SyntaxError, ImportError, an exception or sys.exit() at import
        raise ConfigError(f"transform module {ref.module!r} cannot be imported: {exc!r}") from exc
    names = [ref.export] if ref.export else ["transform", "default"]
    for name in names:
        fn = getattr(module, name, None)
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    raise ConfigError(f"transform module {ref.module!r} has no callable {' or '.join(map(repr, names))}")
