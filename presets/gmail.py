"""gmail: Gmail notifications, in either of the two shapes that reach an OpenClaw setup.

(a) A Google Pub/Sub push (`{"message": {"data", "messageId", "publishTime", "attributes"},
    "subscription"}`, data = base64 of `{"emailAddress", "historyId"}`), authenticated by the
    OIDC token Pub/Sub puts in `Authorization: Bearer` (RS256, audience = `audience`, issuer
    Google, optionally `email` = `service_account_email`), or by a shared `token`: in a header,
    or, when the source sets `allow_query_token`, in the push endpoint's `?token=` (a push
    without OIDC can carry a secret only in its URL). Deduplicated on the Pub/Sub messageId
    (Pub/Sub redelivers at least once); answered 200, which Pub/Sub and its emulator both ack.
(b) The body `gog gmail watch serve` posts to `/hooks/gmail` (`{"messages": [{id, threadId, from,
    to, subject, date, snippet, body}]}`) with the hook token: one agent action per message,
    exactly as OpenClaw's own `gmail` hook preset renders it, deduplicated on the message ids.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from typing import Any

import jwt
import orjson

from relay.config import SourceConfig
from relay.errors import BadRequest, Unauthorized
from relay.protocol.actions import AgentAction
from relay.protocol.event import Event
from relay.protocol.fencing import Fencer
from relay.protocol.mapping import MAX_ACTIONS_PER_EVENT
from relay.protocol.preset import Headers, Preset, parse_json
from relay.protocol.templates import to_text
from relay.protocol.verify import bounded_id, presented_token, token_matches

from .jwks import CACHE, GOOGLE_CERTS

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
LEEWAY_SECONDS = 30


def check_config(cfg: SourceConfig) -> tuple[str, str] | None:
    if not cfg.token and not cfg.audience:
        return "audience", "the gmail preset needs an audience (Pub/Sub OIDC push) or a token"
    if cfg.service_account_email and not cfg.audience:
        return "audience", "service_account_email is checked on OIDC tokens, which need an audience"
    if cfg.allow_query_token and not cfg.token:
        return "token", "allow_query_token compares ?token= with the source's token: set one"
    return None


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def verify(headers: Headers, body: bytes, cfg: SourceConfig) -> None:
    token = presented_token(headers)
    if not token:
        raise Unauthorized("missing Authorization: Bearer token")
    if cfg.token and token_matches(token, [t.get_secret_value().encode() for t in cfg.token]):
        return
    if cfg.audience and _looks_like_jwt(token):
        verify_oidc(token, cfg)
        return
    raise Unauthorized("invalid token")


def verify_query(headers: Headers, query: Mapping[str, str], body: bytes, cfg: SourceConfig) -> None:
    """`verify`, or, with no credential in the headers, the `token` query parameter against `token`
    (constant-time). A header credential wins, so an OIDC push is still checked as one."""
    if presented_token(headers):
        verify(headers, body, cfg)
        return
    token = query.get("token", "")
    if not token:
        raise Unauthorized("missing Authorization: Bearer token or ?token=")
    if not token_matches(token, [t.get_secret_value().encode() for t in cfg.token]):
        raise Unauthorized("invalid token")


async def prepare(headers: Headers, cfg: SourceConfig) -> None:
    """Fetch (asynchronously, once for all waiting requests) the JWKS an OIDC token needs."""
    token = presented_token(headers)
    if not cfg.audience or not token or not _looks_like_jwt(token):
        return
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return  # verify refuses it
    await CACHE.ensure(cfg.jwks or GOOGLE_CERTS, kid if isinstance(kid, str) else None)


def verify_oidc(token: str, cfg: SourceConfig) -> dict[str, Any]:
    """Check a Google-signed OIDC token (RS256) against the source's audience and service account."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("malformed OIDC token") from None
    if header.get("alg") != "RS256":
        raise Unauthorized("OIDC token must be signed with RS256")
    kid = header.get("kid")
    key = CACHE.key(cfg.jwks or GOOGLE_CERTS, kid if isinstance(kid, str) else None)
    if key is None:
        raise Unauthorized("OIDC token is signed with a key that is not in the JWKS")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=cfg.audience,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("OIDC token has expired") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("OIDC token audience does not match this source's audience") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("invalid OIDC token signature") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"OIDC token has no {exc.claim} claim") from None
    except (jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError):
        raise Unauthorized("OIDC token is not valid yet") from None
    except jwt.PyJWTError:
        raise Unauthorized("malformed OIDC token") from None
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise Unauthorized("OIDC token was not issued by Google")
    if cfg.service_account_email and (
        claims.get("email") != cfg.service_account_email or claims.get("email_verified") is not True
    ):
        raise Unauthorized("OIDC token is not from the configured service account")
    return claims


def parse(headers: Headers, body: bytes) -> Any:
    payload = parse_json(headers, body)
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")
    if "message" in payload:
        message = payload["message"]
        if not isinstance(message, dict) or not (message.get("messageId") or message.get("message_id")):
            raise BadRequest("Pub/Sub push without message.messageId")
    elif not isinstance(payload.get("messages"), list):
        raise BadRequest("neither a Pub/Sub push (message) nor a gog hook payload (messages)")
    return payload


def delivery_id(headers: Headers, payload: Any, body: bytes) -> str:
    if "message" in payload:
        message = payload["message"]
        return "pubsub:" + bounded_id(str(message.get("messageId") or message.get("message_id")))
    ids = sorted(str(m.get("id")) for m in payload["messages"] if isinstance(m, dict) and m.get("id"))
    if not ids:
        return "sha256:" + hashlib.sha256(body).hexdigest()
    joined = ",".join(ids)
    return "gmail:" + (joined if len(joined) <= 180 else hashlib.sha256(joined.encode()).hexdigest())


def pubsub_data(payload: dict[str, Any]) -> dict[str, Any]:
    """The decoded `message.data` of a Gmail push: `{"emailAddress", "historyId"}`."""
    data = payload["message"].get("data") or ""
    try:
        # Standard or URL-safe base64, padded or not.
        decoded = orjson.loads(base64.b64decode(data + "=" * (-len(data) % 4), altchars=b"-_"))
    except (binascii.Error, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def message_action(msg: dict[str, Any]) -> AgentAction:
    """OpenClaw's `gmail` hook preset for one message, field for field, with the sender-written
    fields fenced (relay.protocol.fencing)."""
    f = Fencer()
    text = (
        f"New email from {f.inline(to_text(msg.get('from')), 'from')}\n"
        f"Subject: {f.inline(to_text(msg.get('subject')), 'subject')}\n"
        f"{f.block(to_text(msg.get('snippet')), 'snippet', 1000) if msg.get('snippet') else ''}\n"
        f"{f.block(to_text(msg.get('body')), 'body') if msg.get('body') else ''}"
    )
    text = f.finish(text)
    session = f"hook:gmail:{to_text(msg.get('id'))}" if msg.get("id") else None
    return AgentAction(message=text, name="Gmail", session_key=session, wake_mode="now")


def transform(event: Event) -> list[AgentAction]:
    p = event.payload
    if "message" in p:
        data = pubsub_data(p)
        who = data.get("emailAddress") or "the watched mailbox"
        lines = [
            f"New Gmail activity for {who} (historyId {data.get('historyId', '?')}).",
            "Check the mailbox for messages added since the last history id you processed.",
        ]
        published = p["message"].get("publishTime") or p["message"].get("publish_time")
        if published:
            lines.append(f"Published {published} on {p.get('subscription', 'a Pub/Sub subscription')}.")
        return [
            AgentAction(
                message="\n".join(lines), name="Gmail", session_key=f"hook:gmail:{who}", wake_mode="now"
            )
        ]
    messages = [m for m in p["messages"] if isinstance(m, dict)]
    actions = [message_action(m) for m in messages[:MAX_ACTIONS_PER_EVENT]]
    if len(messages) > MAX_ACTIONS_PER_EVENT:
        # The relay caps actions per event: the last one lists what did not get its own.
        rest = messages[MAX_ACTIONS_PER_EVENT - 1 :]
        lines = [f"{len(rest)} more new emails:"]
        f = Fencer()
        lines += [
            f"- from {f.inline(to_text(m.get('from')), 'from')}:"
            f" {f.inline(to_text(m.get('subject')), 'subject')} ({to_text(m.get('id'))})"
            for m in rest
        ]
        actions[-1] = AgentAction(message=f.finish("\n".join(lines)), name="Gmail", wake_mode="now")
    return actions


# Fields outsiders write, fenced when a mapping's template renders them.
UNTRUSTED = ("messages[].from", "messages[].subject", "messages[].snippet", "messages[].body")

PRESET = Preset(
    name="gmail",
    verify=verify,
    delivery_id=delivery_id,
    parse=parse,
    transform=transform,
    untrusted=UNTRUSTED,
    verify_query=verify_query,
    accepted_status=200,
    unique_headers=("authorization",),
    prepare=prepare,
    check_config=check_config,
    auth="Google OIDC token of the Pub/Sub push subscription",
)
