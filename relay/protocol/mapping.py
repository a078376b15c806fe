"""OpenClaw-compatible hook mappings: which mapping decides an event, and what it decides.

Pure: no I/O. Follows OpenClaw's `applyHookMappings`: mappings are tried in order (the user's
first, then the source preset's), the first that matches decides; its templated fields form
the base action, and a transform's result is merged over them (`relay.protocol.compose`).
`Mapper.decide` matches once and returns everything that match settles: the actions, how they
are held (`relay.hold`), the gateway they go to and the delay key the event cancels.

The config models, the action composing and transform loading live in their own modules; the
names callers have always imported from here are re-exported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from relay.errors import ConfigError, TransformError
from relay.protocol.budget import TransformBudget
from relay.protocol.compose import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ActionResult,
    as_list,
    base_fields,
    context,
    cut_text,
    merge,
    override_fields,
)
from relay.protocol.event import Event
from relay.protocol.mapping_config import (
    FOR_EACH_INSTEAD,
    BatchConfig,
    CancelConfig,
    CooldownConfig,
    DelayConfig,
    MappingConfig,
    MatchConfig,
    TransformRef,
)
from relay.protocol.templates import get_by_path, render
from relay.protocol.transforms import Transform, load_transform, transform_key

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "FOR_EACH_INSTEAD",
    "MAX_ACTIONS_PER_EVENT",
    "ActionResult",
    "BatchConfig",
    "CancelConfig",
    "CooldownConfig",
    "Decision",
    "DelayConfig",
    "Hold",
    "Mapper",
    "MappingConfig",
    "MatchConfig",
    "Transform",
    "TransformRef",
    "agent_allowed",
    "base_fields",
    "check_static_agent_ids",
    "cut_text",
    "load_transform",
    "matches",
    "merge",
    "transform_key",
]

MAX_ACTIONS_PER_EVENT = 20

HoldKind = Literal["cooldown", "batch", "delay"]


@dataclass(frozen=True, slots=True)
class Hold:
    """How `relay.hold` keeps an event's actions back: the kind, its rendered key (prefixed with
    the source; None only for a delay without `key`) and the mapping's settings for it."""

    kind: HoldKind
    key: str | None
    config: CooldownConfig | BatchConfig | DelayConfig


@dataclass(frozen=True, slots=True)
class Decision:
    """What one event becomes: its actions, how they are held (None: queued at once), the gateway
    from `gateways:` they go to (None: the default one), and the rendered key whose delayed events
    it cancels (a mapping's `cancel:`)."""

    actions: list[ActionResult] = field(default_factory=list)
    hold: Hold | None = None
    gateway: str | None = None
    cancel: str | None = None


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


class Mapper:
    """Turns events into decisions with a list of mappings and their loaded transforms.

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
        check_static_agent_ids(self.mappings, self.allowed_agents)

    def match(self, event: Event) -> MappingConfig | None:
        return next((m for m in self.mappings if matches(m, event)), None)

    def decide(
        self,
        event: Event,
        preset_transform: Transform | None = None,
        *,
        budget: TransformBudget | None = None,
        default_gateway: str | None = None,
        skipped: bool = False,
    ) -> Decision:
        """Match `event` once and decide it. A user's transform runs under `budget` (blocking the
        calling thread). `skipped`: the preset skips the event, so it has no actions, but its
        mapping's `cancel` still applies. Raises TransformError."""
        mapping = self.match(event)
        if skipped:
            actions: list[ActionResult] = []
        elif budget is not None and mapping is not None and mapping.transform is not None:
            actions = budget.call(self._actions, mapping, event, preset_transform)
        else:
            actions = self._actions(mapping, event, preset_transform)
        return self._decision(mapping, event, actions, default_gateway)

    async def adecide(
        self,
        event: Event,
        preset_transform: Transform | None = None,
        *,
        budget: TransformBudget | None = None,
        default_gateway: str | None = None,
        skipped: bool = False,
    ) -> Decision:
        """`decide` for the event loop: a user's transform runs in a budgeted thread; templates inline."""
        mapping = self.match(event)
        if skipped:
            actions: list[ActionResult] = []
        elif budget is not None and mapping is not None and mapping.transform is not None:
            actions = await budget.acall(self._actions, mapping, event, preset_transform)
        else:
            actions = self._actions(mapping, event, preset_transform)
        return self._decision(mapping, event, actions, default_gateway)

    def map(self, event: Event, preset_transform: Transform | None = None) -> list[ActionResult]:
        """The actions for `event`; an empty list skips it. Raises TransformError."""
        return self.decide(event, preset_transform).actions

    def map_within(
        self, budget: TransformBudget | None, event: Event, preset_transform: Transform | None = None
    ) -> list[ActionResult]:
        """`map`, with a user's transform run under `budget` (blocking the calling thread)."""
        return self.decide(event, preset_transform, budget=budget).actions

    async def amap(
        self, budget: TransformBudget | None, event: Event, preset_transform: Transform | None = None
    ) -> list[ActionResult]:
        """`map` for the event loop: a user's transform runs in a budgeted thread; templates inline."""
        return (await self.adecide(event, preset_transform, budget=budget)).actions

    def _actions(
        self, mapping: MappingConfig | None, event: Event, preset_transform: Transform | None
    ) -> list[ActionResult]:
        limit = self.max_message_bytes
        if mapping is not None:
            base = base_fields(mapping, event, self.untrusted.get(event.source, ()))
            if mapping.transform is None:
                return self._allowed(event, [merge(base, {}, limit)])
            result = self.transforms[transform_key(mapping.transform)](event)
            actions = [merge(base, override_fields(r), limit) for r in as_list(result)]
        elif preset_transform is not None:
            actions = []
            for r in as_list(preset_transform(event)):
                fields = override_fields(r)
                actions.append(merge({"kind": fields.get("kind", "agent")}, fields, limit))
        else:
            return []
        if len(actions) > MAX_ACTIONS_PER_EVENT:
            raise TransformError(f"{len(actions)} actions for one event; at most {MAX_ACTIONS_PER_EVENT}")
        return self._allowed(event, actions)

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

    @staticmethod
    def _decision(
        mapping: MappingConfig | None, event: Event, actions: list[ActionResult], default_gateway: str | None
    ) -> Decision:
        """The matched mapping's hold, gateway and cancel key, its templates rendered for `event`."""
        if mapping is None:
            return Decision(actions, gateway=default_gateway)
        ctx = context(event)

        def key(template: str | None) -> str | None:
            text = render(template, ctx).strip() if template else ""
            return f"{event.source}:{text}" if text else None

        hold = None
        if mapping.cooldown is not None and (cooldown := key(mapping.cooldown.key)):
            hold = Hold("cooldown", cooldown, mapping.cooldown)
        elif mapping.batch is not None and (batch := key(mapping.batch.key)):
            hold = Hold("batch", batch, mapping.batch)
        elif mapping.delay is not None:
            hold = Hold("delay", key(mapping.delay.key), mapping.delay)
        cancel = key(mapping.cancel.key) if mapping.cancel is not None else None
        return Decision(actions, hold, mapping.gateway or default_gateway, cancel)


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
