"""The ingress pipeline for one request, free of HTTP framework details.

route → limit → verify and parse → dedupe id → skip → Event → decide (`relay.protocol.pipeline`)
→ hold (`relay.hold`) → record → settle the hold. `relay.ingress.app` adapts it to Starlette.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay import hold, tracing
from relay.config import Settings
from relay.errors import BadRequest, NotFound, RelayError, TransformError
from relay.protocol.pipeline import Pipeline, Source, build_sources
from relay.protocol.verify import redact_headers
from relay.store.events import EventStore, encode_actions, session_lanes
from relay.store.skips import note_skip

log = logging.getLogger("relay.ingress")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: dict[str, Any]


class Ingress:
    def __init__(self, settings: Settings, store: EventStore) -> None:
        self.settings = settings
        self.store = store
        self.sources = build_sources(settings)
        self.pipeline = Pipeline.from_settings(settings)

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
            payload = self.pipeline.parse(source, headers, body)
            delivery_id = preset.delivery_id(headers, payload, body)
        kept = redact_headers(headers)  # credentials are checked above and kept nowhere
        prepared = self.pipeline.prepare(
            source, headers, payload, delivery_id=delivery_id, kept=kept, query=query
        )
        skip_reason = prepared.skip
        error = None
        actions = []
        gateway = None
        admission = hold.Admission()
        try:
            with tracing.span("relay.map"):
                decision = (await self.pipeline.adecide(prepared)).decision
        except RelayError:
            raise
        except Exception as exc:  # a user's transform failed: park the event, keep serving
            error = _describe(exc)
        else:
            actions, gateway = decision.actions, decision.gateway
            admission = await hold.admit(self.store.redis, decision, source.name, delivery_id)
            if admission.dropped is not None:  # a cooldown's `drop` window: recorded as skipped
                skip_reason, actions = admission.dropped, []
        routed = [] if admission.hold is not None else actions
        with tracing.span("relay.record"):
            recorded = await self.store.record(
                source=source.name,
                delivery_id=delivery_id,
                headers=kept,
                body=body,
                actions=encode_actions(source.name, delivery_id, actions, gateway),
                action_count=len(routed),
                lanes=session_lanes(source.name, delivery_id, routed),
                error=error,
            )
        fields = {"source": source.name, "delivery_id": delivery_id, "event_id": recorded.event_id}
        await admission.settle(self.store.redis, recorded.event_id, self.settings.event_ttl_seconds)
        if skip_reason and not recorded.duplicate:
            await note_skip(self.store.redis, recorded.event_id, skip_reason)
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
        if admission.hold is not None:
            # Held (a batch window, a cooldown `last` window, a delay): nothing is queued now, and
            # "actions": n would read as n deliveries under way.
            held = admission.hold.kind
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
