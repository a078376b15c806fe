"""The ingress pipeline for one request, free of HTTP framework details.

route → limit → verify and parse → dedupe id → store (state `received`) → 2xx. The mapping
(skip rules, transforms, holds) runs after the durable write, in the mapping stage
(`relay.worker.mapper`): a request costs about what checking its signature costs, whatever its
payload holds. `relay.ingress.app` adapts this to Starlette.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay import tracing
from relay.config import Settings
from relay.errors import BadRequest, NotFound, RelayError
from relay.protocol.pipeline import DIRECT_SOURCES, Pipeline, Source, build_sources
from relay.protocol.verify import redact_headers
from relay.store.events import EventStore
from relay.store.states import RECEIVED

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
        """Verify and store one webhook whose body has been read within the source's limit.

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
        if source.name in DIRECT_SOURCES:
            # /hooks/agent and /hooks/wake take the gateway's own bodies, and answer its 400s at
            # once: the action is checked here, and built again by the mapping stage.
            prepared = self.pipeline.prepare(source, headers, payload, delivery_id=delivery_id, kept=kept)
            try:
                await self.pipeline.adecide(prepared)
            except RelayError:
                raise
            except Exception as exc:  # a user's transform mapping this path: the mapping stage parks it
                log.debug("transform failed at the ingress; the mapping stage parks the event: %s", exc)
        with tracing.span("relay.record"):
            received = await self.store.receive(
                source=source.name, delivery_id=delivery_id, headers=kept, body=body, query=dict(query)
            )
        if received.duplicate:
            fields = {"source": source.name, "delivery_id": delivery_id, "event_id": received.event_id}
            log.info("duplicate delivery ignored", extra=fields)
            return Outcome(200, {"ok": True, "duplicate": True, "eventId": received.event_id})
        return Outcome(preset.accepted_status, {"ok": True, "eventId": received.event_id, "state": RECEIVED})
