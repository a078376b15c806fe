"""The one pipeline from a verified body to a Decision: parse → skip → Event → decide.

The ingress (`relay.ingress.intake`), `relay replay` (`relay.store.replay`), `relay try` and
`relay.testing.map_event` all run it, so a payload maps the same way wherever it is tried. It
also builds what the pipeline needs from the settings: the sources (each bound to its preset),
the `Mapper` with its transforms loaded, and the transforms' time budget. Verification, storage
and delivery stay with the callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import presets
from presets import openclaw
from relay.config import Settings, SourceConfig
from relay.errors import ConfigError
from relay.protocol.budget import TransformBudget
from relay.protocol.event import Event
from relay.protocol.mapping import Decision, Mapper
from relay.protocol.preset import Preset
from relay.protocol.transforms import load_transform, transform_key

DIRECT_SOURCES = {"agent": openclaw.AGENT, "wake": openclaw.WAKE}


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    preset: Preset
    config: SourceConfig


@dataclass(frozen=True, slots=True)
class Prepared:
    """A parsed payload as an Event of its source, with the preset's skip reason (None: not skipped)."""

    source: Source
    event: Event
    skip: str | None


@dataclass(frozen=True, slots=True)
class Mapped:
    """One payload through the pipeline: its Event, the preset's skip reason and the Decision (no
    actions when skipped)."""

    event: Event
    skip: str | None
    decision: Decision


def build_sources(settings: Settings) -> dict[str, Source]:
    """Resolve every configured source to its preset, failing fast on unknown names or missing secrets."""
    sources: dict[str, Source] = {}
    for name, cfg in settings.sources.items():
        if name in DIRECT_SOURCES:
            raise ConfigError(f"sources.{name}: the name is reserved for the relay's own /hooks/{name}")
        preset = presets.REGISTRY.get(cfg.preset)
        if preset is None or preset.name in DIRECT_SOURCES:
            known = ", ".join(sorted(set(presets.REGISTRY) - set(DIRECT_SOURCES)))
            raise ConfigError(f"sources.{name}.preset: unknown preset {cfg.preset!r} (known: {known})")
        problem = presets.check_config(cfg)
        if problem is not None:
            raise ConfigError(f"sources.{name}.{problem[0]}: {problem[1]}")
        if cfg.jwks and not cfg.jwks.startswith(("http://", "https://")):
            cfg = cfg.model_copy(update={"jwks": str(settings.base_dir / Path(cfg.jwks).expanduser())})
        sources[name] = Source(name, presets.for_source(preset, cfg), cfg)
    tokens = settings.ingress_token or ([settings.gateway.token] if settings.gateway.token else [])
    if tokens:
        direct = SourceConfig(preset="generic", token=tokens)
        for name, preset in DIRECT_SOURCES.items():
            sources[name] = Source(name, preset, direct)
    return sources


def build_mapper(settings: Settings) -> Mapper:
    transforms = {}
    for i, mapping in enumerate(settings.mappings):
        if mapping.transform is not None:
            try:
                transforms[transform_key(mapping.transform)] = load_transform(
                    mapping.transform, settings.base_dir
                )
            except ConfigError as exc:
                raise ConfigError(f"mappings.{i}.transform: {exc}") from None
    return Mapper(
        settings.mappings,
        transforms,
        max_message_bytes=settings.max_message_bytes,
        untrusted={
            n: presets.REGISTRY[c.preset].untrusted
            for n, c in settings.sources.items()
            if c.preset in presets.REGISTRY
        },
        allowed_agents={n: c.allowed_agent_ids for n, c in settings.sources.items()},
    )


def build_budget(settings: Settings) -> TransformBudget:
    return TransformBudget(settings.transform_timeout_seconds, settings.transform_max_threads)


class Pipeline:
    """The mapper and transform budget of one configuration, and the steps every caller shares.

    `run` does it all from a raw body. The ingress takes the steps one by one: it parses while it
    verifies (the delivery id is read from the parsed payload), and only a failure of the mapping
    itself parks an event.
    """

    def __init__(self, mapper: Mapper, budget: TransformBudget) -> None:
        self.mapper = mapper
        self.budget = budget

    @classmethod
    def from_settings(cls, settings: Settings) -> Pipeline:
        return cls(build_mapper(settings), build_budget(settings))

    @staticmethod
    def parse(source: Source, headers: Mapping[str, str], body: bytes) -> Any:
        return source.preset.parse(headers, body)

    @staticmethod
    def prepare(
        source: Source,
        headers: Mapping[str, str],
        payload: Any,
        *,
        delivery_id: str,
        kept: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        event_id: str = "",
        received_at: float = 0.0,
    ) -> Prepared:
        """The preset's skip rules (they read `headers`), and the Event, which keeps `kept`
        (default: `headers`); its path is the source's name, as in /hooks/<name>."""
        skip = source.preset.skip(headers, payload, source.config)
        event = Event(
            source=source.name,
            payload=payload,
            headers=dict(headers if kept is None else kept),
            query=dict(query or {}),
            path=source.name,
            delivery_id=delivery_id,
            id=event_id,
            received_at=received_at,
        )
        return Prepared(source, event, skip)

    def decide(self, prepared: Prepared) -> Mapped:
        """The Decision, a user's transform run under the budget (blocking the calling thread)."""
        source = prepared.source
        decision = self.mapper.decide(
            prepared.event,
            source.preset.transform,
            budget=self.budget,
            default_gateway=source.config.gateway,
            skipped=prepared.skip is not None,
        )
        return Mapped(prepared.event, prepared.skip, decision)

    async def adecide(self, prepared: Prepared) -> Mapped:
        """`decide` for the event loop: a user's transform runs in a budgeted thread."""
        source = prepared.source
        decision = await self.mapper.adecide(
            prepared.event,
            source.preset.transform,
            budget=self.budget,
            default_gateway=source.config.gateway,
            skipped=prepared.skip is not None,
        )
        return Mapped(prepared.event, prepared.skip, decision)

    def run(
        self,
        source: Source,
        headers: Mapping[str, str],
        body: bytes,
        *,
        delivery_id: str,
        event_id: str = "",
        received_at: float = 0.0,
        query: Mapping[str, str] | None = None,
    ) -> Mapped:
        """Parse `body`, skip, build the Event, decide: the whole pipeline for a stored or tried body."""
        payload = self.parse(source, headers, body)
        prepared = self.prepare(
            source,
            headers,
            payload,
            delivery_id=delivery_id,
            query=query,
            event_id=event_id,
            received_at=received_at,
        )
        return self.decide(prepared)
