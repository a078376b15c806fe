"""The ingress pipeline for one request, free of HTTP framework details.

route → limit → verify → parse → dedupe id → map → record. `relay.ingress.app` adapts it to Starlette.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import presets
from presets import openclaw
from relay import tracing
from relay.config import Settings, SourceConfig
from relay.errors import BadRequest, ConfigError, NotFound, RelayError, TransformError
from relay.hold import batching, cooldown, delayed
from relay.protocol.budget import TransformBudget
from relay.protocol.event import Event
from relay.protocol.mapping import Mapper, load_transform, transform_key
from relay.protocol.preset import Preset
from relay.protocol.verify import redact_headers
from relay.store.events import EventStore, encode_actions, session_lanes

log = logging.getLogger("relay.ingress")

DIRECT_SOURCES = {"agent": openclaw.AGENT, "wake": openclaw.WAKE}


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    preset: Preset
    config: SourceConfig


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: dict[str, Any]


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


def gateway_for(settings: Settings, mapper: Mapper, source: Source, event: Event) -> str | None:
    """The gateway an event's actions go to: its mapping's, else its source's (None: the default)."""
    mapping = mapper.match(event) if settings.gateways else None
    return (mapping.gateway if mapping is not None else None) or source.config.gateway


class Ingress:
    def __init__(self, settings: Settings, store: EventStore) -> None:
        self.settings = settings
        self.store = store
        self.sources = build_sources(settings)
        self.mapper = build_mapper(settings)
        self.budget = build_budget(settings)

    def source(self, name: str) -> Source:
        source = self.sources.get(name)
        if source is None:
            # The same answer for every unknown name: configured names are not revealed.
            raise NotFound("no such hook")
        return source

    async def handle(
        self,
        source: Source,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        body: bytes,
        repeated: frozenset[str] = frozenset(),
    ) -> Outcome:
        """Verify, map and record one webhook whose body has been read within the source's limit.

        `repeated`: the (lower-case) names of headers the request carries more than once."""
        preset = source.preset
        unique = {*preset.unique_headers, (source.config.signature_header or "").lower()}
        doubled = sorted(repeated & unique)
        if doubled:
            raise BadRequest(f"repeated {doubled[0]} header: send it once")
        if preset.prepare is not None:
            await preset.prepare(headers, source.config)
        with tracing.span(
            "relay.protocol.verify", {"relay.source": source.name}
        ):  # relay.tracing (no-op if off)
            if source.config.allow_query_token and preset.verify_query is not None:
                preset.verify_query(headers, query, body, source.config)
                # The URL's token is a credential: kept nowhere, like the credential headers.
                query = {k: v for k, v in query.items() if k != "token"}
            else:
                preset.verify(headers, body, source.config)
            payload = preset.parse(headers, body)
            delivery_id = preset.delivery_id(headers, payload, body)
        kept = redact_headers(headers)  # credentials are checked above and kept nowhere
        event = Event(
            source=source.name,
            payload=payload,
            headers=kept,
            query=dict(query),
            path=source.name,
            delivery_id=delivery_id,
        )
        skip_reason = preset.skip(headers, payload, source.config)
        error = None
        actions = []
        if skip_reason is None:
            try:
                with tracing.span("relay.map"):
                    actions = await self.mapper.amap(self.budget, event, preset.transform)
            except RelayError:
                raise
            except Exception as exc:  # a user's transform failed: park the event, keep serving
                error = _describe(exc)
        gate: cooldown.Gate | batching.BatchGate | None = None  # relay.hold.cooldown: drop or hold it
        if actions and error is None and self.mapper.has_cooldown:
            gate = await cooldown.admit(
                self.store.redis, self.mapper.cooldown(event), source.name, delivery_id
            )
            if gate is not None and gate.drop:
                skip_reason, actions = gate.reason, []
        if actions and error is None and gate is None and self.mapper.has_batch:
            gate = batching.gate(self.mapper.batch(event))  # relay.hold.batching: hold it for its batch
        delay = self.mapper.delay(event) if error is None and self.mapper.has_delay else None
        later = delay is not None and delay[0] > 0 and bool(actions) and gate is None  # relay.hold.delayed
        routed = [] if (gate is not None and gate.hold) or later else actions
        with tracing.span("relay.record"):
            recorded = await self.store.record(
                source=source.name,
                delivery_id=delivery_id,
                headers=kept,
                body=body,
                actions=encode_actions(
                    source.name, delivery_id, actions, gateway_for(self.settings, self.mapper, source, event)
                ),
                action_count=len(routed),
                lanes=session_lanes(source.name, delivery_id, routed),
                error=error,
            )
        fields = {"source": source.name, "delivery_id": delivery_id, "event_id": recorded.event_id}
        if delay is not None:
            await delayed.after_record(
                self.store.redis, recorded.event_id, delay, later, self.settings.event_ttl_seconds
            )
        if gate is not None and gate.hold:
            offer = batching.offer if isinstance(gate, batching.BatchGate) else cooldown.offer
            await offer(self.store.redis, gate, recorded.event_id, self.settings.event_ttl_seconds)  # type: ignore[arg-type]
        elif skip_reason and not recorded.duplicate:
            await cooldown.note_skip(self.store.redis, recorded.event_id, skip_reason)
        if recorded.duplicate:
            log.info("duplicate delivery ignored", extra=fields)
            return Outcome(200, {"ok": True, "duplicate": True, "eventId": recorded.event_id})
        if error is not None:
            log.warning("transform failed; event parked", extra={**fields, "error": error.splitlines()[-1]})
            return Outcome(
                preset.accepted_status,
                {"ok": True, "eventId": recorded.event_id, "actions": 0, "parked": True},
            )
        if not actions:
            log.info("event recorded, no action", extra={**fields, "reason": skip_reason or "no mapping"})
            return Outcome(
                200,
                {
                    "ok": True,
                    "eventId": recorded.event_id,
                    "actions": 0,
                    "skipped": skip_reason or "no action",
                },
            )
        if not routed:
            # Held (a batch window, a cooldown `last` window, a delay): nothing is queued now, and
            # "actions": n would read as n deliveries under way.
            held = "delay" if later else "batch" if isinstance(gate, batching.BatchGate) else "cooldown"
            log.debug("event recorded and held", extra={**fields, "held": held})
            return Outcome(
                preset.accepted_status, {"ok": True, "eventId": recorded.event_id, "actions": 0, "held": held}
            )
        log.debug("event recorded", extra={**fields, "actions": len(actions)})
        return Outcome(
            preset.accepted_status, {"ok": True, "eventId": recorded.event_id, "actions": len(actions)}
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TransformError):
        return f"TransformError: {exc}"
    return "".join(traceback.format_exception(exc)).strip()
