"""What a preset is: everything the relay knows of one sender, in one object.

Its verification scheme, delivery-id rule and default transform; the checks on a source's config;
how `relay up` names its auth and how `relay init` sets the sender up. Presets are pure (no I/O);
the registry of built-in ones is `presets.REGISTRY`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import orjson

from relay.errors import BadRequest, UnsupportedMediaType
from relay.protocol.transforms import Transform
from relay.protocol.verify import body_digest

if TYPE_CHECKING:  # the settings' model, for the signatures only: the protocol does not load settings
    from relay.config import SourceConfig

Headers = Mapping[str, str]


# JSON nested deeper than this is refused (400): no real webhook comes near it, and orjson can
# write back only 254 levels, so a deeper payload could not be rendered into a message.
MAX_JSON_DEPTH = 64


_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # a backslash and the character it escapes
_NOT_SHAPE = bytes(range(256)).translate(None, b'"[]{}\\')  # all but quotes, brackets, backslashes


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a valid JSON text nests more than `limit` containers deep, read off its bytes.

    Everything but quotes, brackets and backslashes goes first (one C pass over the body); what
    is left is about a tenth of it. Two bounds on it settle nearly every real webhook: the count
    of its opening brackets, then that count after one level is peeled (`_openers_after_one_level`).
    Otherwise the exact path: an escaped quote in the shape sends the body through it
    (escapes removed first). What remains between quotes is then string content. Each pass drops
    the innermost pairs, so the number of passes is the depth. About a fifth of the cost of
    walking the parsed value on a webhook of 10 KB.
    """
    shape = body.translate(None, _NOT_SHAPE)
    if shape.count(b"[") + shape.count(b"{") <= limit:  # brackets in strings count too: a bound
        return False
    if _openers_after_one_level(shape.replace(b'""', b"")) < limit:
        return False
    if b'\\"' in shape:  # maybe an escaped quote (or an escape just before a string's end)
        shape = _ESCAPE.sub(b"", body).translate(None, _NOT_SHAPE)
    shape = shape.translate(None, b"\\").replace(b'""', b"")
    if b'"' in shape:  # strings holding brackets
        shape = b"".join(shape.split(b'"')[::2])
    depth = 0
    while shape:
        depth += 1
        if depth > limit:
            return True
        shape = _peel(shape)
    return False


def _peel(shape: bytes) -> bytes:
    """Drop the adjacent bracket pairs of a shape, one level only: `{[]}` becomes `{.}`, not
    `{}`, before the markers go."""
    return shape.replace(b"[]", b".").replace(b"{}", b".").translate(None, b".")


def _openers_after_one_level(shape: bytes) -> int:
    """A bound read off the shape with its strings still in it: the depth is at most this + 1.

    Empty strings (`""`) go first; that leaves which bytes are inside a string unchanged. A
    bracket inside a string is never next to one outside it (a quote of its string stays
    between them; an escaped quote keeps its backslash). So the pairs `_peel` drops outside
    strings are containers holding no container, and it drops at most one container of any
    nesting chain: the deepest chain keeps depth - 1 openers. Real webhooks pass with this: a
    GitHub payload's brackets are mostly URL templates (`{/sha}`) and empty lists, an
    Alertmanager group's are flat label objects. It costs a pass over the shape (a tenth of the
    body), where the exact path below costs two more passes over the body.
    """
    level = _peel(shape)
    return level.count(b"[") + level.count(b"{")


def load_json(body: bytes) -> Any:
    """`orjson.loads` with every failure (syntax, invalid UTF-8, a BOM, too deep) a clear 400."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        reason = str(exc).split(":")[0]
        if "UTF-8" in reason or "BOM" in reason:
            raise BadRequest(f"body is not valid JSON: {reason}") from None
        if "depth" in reason or "recursion" in reason:
            raise BadRequest(f"body is not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels") from None
        raise BadRequest("body is not valid JSON") from None
    if too_deep(body):
        raise BadRequest(f"body is not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def parse_json(headers: Headers, body: bytes) -> Any:
    """Parse a JSON body; like the gateway, a missing Content-Type is read as JSON."""
    ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype and ctype != "application/json" and not ctype.endswith("+json"):
        raise UnsupportedMediaType(f"content type {ctype!r} is not accepted here; send application/json")
    return load_json(body)


def parse_raw(headers: Headers, body: bytes) -> Any:
    """A body taken as it is (a generic source with `content: raw`): `{"body": text, "contentType": ...}`.

    Any content type is accepted; the body must be UTF-8 text (400 otherwise), since it becomes
    part of an agent message. Templates reach it as `{{payload.body}}`.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("body is not valid UTF-8 text") from None
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    return {"body": text, "contentType": ctype}


def fresh_token() -> str:
    """A fresh random secret, URL-safe (what most senders accept as a token or signing secret)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class SenderSetup:
    """How `relay init` sets one sender up: the source's secret and what to paste into the sender."""

    key: Literal["secret", "token"]  # the source field that holds the secret
    variable: str  # the .env variable that holds it
    where: str  # where, in the sender, the webhook is added
    content_type: str
    events: str
    generated: bool = True  # False: the sender generates the secret; paste it into .env
    # More fields of the source written to relay.yaml (a list is written as `[a, b]`).
    extra: Mapping[str, object] = field(default_factory=dict, compare=False)
    fresh: Callable[[], str] = fresh_token  # a new secret in the format the preset reads
    # Lines of the sender's own configuration to paste, given the hook's URL and the secret.
    paste: Callable[[str, str], list[str]] | None = None


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
    # Payload fields written by outsiders (`pull_request.body`, `commits[].message`): fenced when a
    # mapping's template renders them (relay.protocol.fencing); the default transform fences them itself.
    untrusted: tuple[str, ...] = ()
    # Verification that may also read the URL's query, used instead of `verify` when the source
    # sets `allow_query_token` (a Pub/Sub push without OIDC carries its secret in the URL).
    verify_query: Callable[[Headers, Mapping[str, str], bytes, SourceConfig], None] | None = None
    # The status of an accepted event: Pub/Sub's emulator acks only 200 and 204 (202 is redelivered).
    accepted_status: int = 202
    # Headers this preset reads for authentication, event type, delivery id or timestamp: a request
    # that repeats one is refused (400), since the checks and the message could read different copies.
    unique_headers: tuple[str, ...] = ()
    # I/O `verify` needs done first, without blocking the event loop (gmail: fetch the JWKS).
    prepare: Callable[[Headers, SourceConfig], Awaitable[None]] | None = None
    # What a source of this preset must configure: (key, problem), or None when the config is usable.
    check_config: Callable[[SourceConfig], tuple[str, str] | None] | None = None
    # The preset as one source uses it, when a source option changes it (alertmanager's `resolved`).
    configure: Callable[[Preset, SourceConfig], Preset] | None = None
    # Whether a source may take raw bodies (`content: raw`) instead of JSON.
    raw_content: bool = False
    # How the sender authenticates, in words (`relay up` prints it); a function when the source's
    # options decide it. None: the relay's own endpoints, which `relay up` describes itself.
    auth: str | Callable[[SourceConfig], str] | None = None
    # How `relay init` sets the sender up; None when it does not (no per-sender secret to generate).
    setup: SenderSetup | None = None
