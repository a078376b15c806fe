"""agent / wake: the gateway's own /hooks/agent and /hooks/wake bodies, made durable by the relay.

Scripts that POST to the gateway can POST the same body, with the same token, to the relay.
The gateway reads these bodies as JSON whatever their Content-Type, so `curl -d '{...}'` (which
sends `application/x-www-form-urlencoded`) works there; the relay takes that too (see `parse`).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from relay.errors import BadRequest
from relay.protocol.actions import AgentAction, WakeAction
from relay.protocol.event import Event
from relay.protocol.preset import Headers, Preset, load_json, parse_json
from relay.protocol.verify import bounded_id

from .generic import UNIQUE_HEADERS, delivery_id, verify


def _body(event: Event) -> dict[str, Any]:
    if not isinstance(event.payload, dict):
        raise BadRequest("body must be a JSON object")
    return {k: v for k, v in event.payload.items() if k != "idempotencyKey"}


def _invalid(exc: ValidationError) -> BadRequest:
    # Answer like the gateway would (400), naming the field; never echo the sender's values.
    first = exc.errors()[0]
    field = ".".join(map(str, first["loc"])) or "body"
    if first["type"] == "missing":
        return BadRequest(f"{field} required")
    return BadRequest(f"{field}: {first['msg']}")


def agent(event: Event) -> AgentAction:
    try:
        return AgentAction.model_validate(_body(event))
    except ValidationError as exc:
        raise _invalid(exc) from None


def wake(event: Event) -> WakeAction:
    try:
        return WakeAction.model_validate(_body(event))
    except ValidationError as exc:
        raise _invalid(exc) from None


# What `curl -d` sends when no -H Content-Type is given; the body pasted from the docs is JSON.
CURL_DEFAULT_TYPE = "application/x-www-form-urlencoded"


def parse(headers: Headers, body: bytes) -> Any:
    """JSON with no Content-Type, a JSON one, or curl's default form type (read as JSON, as the
    gateway does); any other declared type (text/plain, multipart, ...) is still a 415."""
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == CURL_DEFAULT_TYPE:
        return load_json(body)
    return parse_json(headers, body)


def _delivery_id(headers: Any, payload: Any, body: bytes) -> str:
    if (
        isinstance(payload, dict)
        and isinstance(payload.get("idempotencyKey"), str)
        and payload["idempotencyKey"]
    ):
        return bounded_id(payload["idempotencyKey"])
    return delivery_id(headers, payload, body)


AGENT = Preset(
    name="agent",
    verify=verify,
    delivery_id=_delivery_id,
    parse=parse,
    transform=agent,
    unique_headers=UNIQUE_HEADERS,
)
WAKE = Preset(
    name="wake",
    verify=verify,
    delivery_id=_delivery_id,
    parse=parse,
    transform=wake,
    unique_headers=UNIQUE_HEADERS,
)
