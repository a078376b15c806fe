"""gmail: Pub/Sub push with Google OIDC tokens (RS256, JWKS from a file or a loopback URL) or a
shared token, and the gog / OpenClaw `hooks.gmail` shape rendered as OpenClaw's gmail preset does."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import presets
from presets import gmail
from presets.jwks import CACHE, JwksCache
from relay.config import Settings, SourceConfig
from relay.errors import BadRequest, ConfigError, Unauthorized, Unavailable
from relay.protocol.fencing import GUIDE
from relay.protocol.pipeline import build_sources
from tests.paths import FIXTURES
from tests.presets.presets_support import run, source, verify

AUDIENCE = "https://relay.example.com/hooks/gmail"
SERVICE_ACCOUNT = "gmail-push@my-project.iam.gserviceaccount.com"
ENVELOPE = (FIXTURES / "gmail" / "pubsub-push-envelope.gmail-docs.json").read_bytes()
GOG = (FIXTURES / "gmail" / "gog-hook-payload.shape-from-docs.json").read_bytes()


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks(*keys: tuple[str, rsa.RSAPrivateKey]) -> dict[str, Any]:
    out = []
    for kid, key in keys:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        out.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    return {"keys": out}


KEY = new_key()
OTHER_KEY = new_key()


def token(key: rsa.RSAPrivateKey = KEY, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "email": SERVICE_ACCOUNT,
        "email_verified": True,
        "sub": "1234567890",
        **claims,
    }
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    CACHE.clear()
    yield
    CACHE.clear()


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(("k1", KEY))))
    return path


def cfg(jwks_path: Path, **extra: Any) -> SourceConfig:
    return source("gmail", audience=AUDIENCE, jwks=str(jwks_path), **extra)


def push_headers(tok: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {tok}", "User-Agent": "APIs-Google"}


def test_pubsub_push_with_oidc_token(jwks_file: Path) -> None:
    result = run(cfg(jwks_file, service_account_email=SERVICE_ACCOUNT), push_headers(token()), ENVELOPE)
    assert result.delivery_id == "pubsub:2070443601311540"
    [action] = result.actions
    assert action.message.splitlines()[0] == "New Gmail activity for user@example.com (historyId 1234567890)."
    assert action.session_key == "hook:gmail:user@example.com"
    assert action.name == "Gmail"


def test_issuer_without_scheme_is_accepted(jwks_file: Path) -> None:
    verify(cfg(jwks_file), push_headers(token(iss="accounts.google.com")), ENVELOPE)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: token(aud="https://elsewhere.example.com"), "audience does not match"),
        (lambda: token(iss="https://evil.example.com"), "not issued by Google"),
        (lambda: token(exp=int(time.time()) - 120), "has expired"),
        (lambda: token(iat=int(time.time()) + 600), "not valid yet"),
        (lambda: token(key=OTHER_KEY), "invalid OIDC token signature"),
        (lambda: token(kid="unknown"), "not in the JWKS"),
        (lambda: token(alg="HS256", key=b"k" * 32), "must be signed with RS256"),  # type: ignore[arg-type]
        (lambda: token(exp=None), "no exp claim"),
        (
            lambda: token(email="someone@else.iam.gserviceaccount.com"),
            "not from the configured service account",
        ),
        (lambda: token(email_verified=False), "not from the configured service account"),
        (lambda: token()[:-4] + "AAAA", "invalid OIDC token signature"),
        (lambda: "not.a.jwt", "malformed OIDC token"),
        (lambda: "opaque-token", "invalid token"),
    ],
    ids=[
        "audience",
        "issuer",
        "expired",
        "future-iat",
        "wrong-key",
        "unknown-kid",
        "hs256",
        "no-exp",
        "other-account",
        "unverified-email",
        "tampered",
        "garbage",
        "not-a-jwt",
    ],
)
def test_oidc_refusals(jwks_file: Path, make, message: str) -> None:
    with pytest.raises(Unauthorized, match=message):
        verify(cfg(jwks_file, service_account_email=SERVICE_ACCOUNT), push_headers(make()), ENVELOPE)


def test_missing_authorization(jwks_file: Path) -> None:
    with pytest.raises(Unauthorized, match="missing Authorization: Bearer token"):
        verify(cfg(jwks_file), {"Content-Type": "application/json"}, ENVELOPE)


def test_shared_token_instead_of_oidc(jwks_file: Path) -> None:
    shared = source("gmail", token="gmail-hook-token")
    assert run(shared, push_headers("gmail-hook-token"), ENVELOPE).actions
    with pytest.raises(Unauthorized, match="invalid token"):
        verify(shared, push_headers("wrong"), ENVELOPE)
    with pytest.raises(Unauthorized, match="invalid token"):
        verify(shared, push_headers(token()), ENVELOPE)  # no audience: OIDC is not accepted
    both = cfg(jwks_file, token="gmail-hook-token")
    verify(both, push_headers("gmail-hook-token"), ENVELOPE)
    verify(both, push_headers(token()), ENVELOPE)


def test_key_rotation_reloads_the_jwks_file(jwks_file: Path) -> None:
    verify(cfg(jwks_file), push_headers(token()), ENVELOPE)
    jwks_file.write_text(json.dumps(jwks(("k1", KEY), ("k2", OTHER_KEY))))
    os.utime(jwks_file, (time.time() + 5, time.time() + 5))
    verify(cfg(jwks_file), push_headers(token(key=OTHER_KEY, kid="k2")), ENVELOPE)


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    body = b""
    hits = 0

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_url() -> Iterator[str]:
    _JwksHandler.body = json.dumps(jwks(("k1", KEY))).encode()
    _JwksHandler.hits = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _JwksHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/v3/certs"
    server.shutdown()
    server.server_close()


def _prepared_verify(cfg: SourceConfig, headers: dict[str, str]) -> None:
    """What the ingress does: fetch the JWKS asynchronously (gmail.prepare), then verify."""
    asyncio.run(gmail.prepare({k.lower(): v for k, v in headers.items()}, cfg))
    verify(cfg, headers, ENVELOPE)


def test_jwks_from_a_url_is_cached(jwks_url: str) -> None:
    url_cfg = source("gmail", audience=AUDIENCE, jwks=jwks_url)
    for _ in range(3):
        _prepared_verify(url_cfg, push_headers(token()))
    assert _JwksHandler.hits == 1
    # An unknown kid reloads at most once per min_reload seconds.
    with pytest.raises(Unauthorized, match="not in the JWKS"):
        _prepared_verify(url_cfg, push_headers(token(kid="k9")))
    assert _JwksHandler.hits == 1


def test_a_url_jwks_is_never_fetched_by_the_synchronous_verify(jwks_url: str) -> None:
    with pytest.raises(Unavailable, match="not fetched yet"):
        verify(source("gmail", audience=AUDIENCE, jwks=jwks_url), push_headers(token()), ENVELOPE)
    assert _JwksHandler.hits == 0


def test_unknown_kid_reload_after_min_reload(jwks_url: str) -> None:
    cache = JwksCache(min_reload=0)

    async def main() -> None:
        await cache.ensure(jwks_url, "k1")
        assert cache.key(jwks_url, "k1") is not None
        _JwksHandler.body = json.dumps(jwks(("k1", KEY), ("k2", OTHER_KEY))).encode()
        await cache.ensure(jwks_url, "k2")
        assert cache.key(jwks_url, "k2") is not None

    asyncio.run(main())
    assert _JwksHandler.hits == 2


def test_concurrent_requests_share_one_fetch_and_a_stale_set_serves_while_refreshing(jwks_url: str) -> None:
    cache = JwksCache(ttl=0.0)

    async def main() -> None:
        await asyncio.gather(*(cache.ensure(jwks_url, "k1") for _ in range(20)))
        assert _JwksHandler.hits == 1  # single-flight
        await cache.ensure(jwks_url, "k1")  # expired (ttl 0): answered from the cache at once
        assert cache.key(jwks_url, "k1") is not None
        task = cache._inflight[jwks_url]
        await task  # the background refresh
        assert _JwksHandler.hits == 2

    asyncio.run(main())


def test_unreachable_jwks_is_a_503(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="cannot load the OIDC signing keys"):
        verify(cfg(tmp_path / "missing.json"), push_headers(token()), ENVELOPE)
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(Unavailable):
        verify(cfg(tmp_path / "bad.json"), push_headers(token()), ENVELOPE)


def test_pubsub_redelivery_has_the_same_delivery_id(jwks_file: Path) -> None:
    # Pub/Sub redelivers with a new token (and possibly other attributes): same messageId.
    first = run(cfg(jwks_file), push_headers(token()), ENVELOPE).delivery_id
    envelope = orjson.loads(ENVELOPE)
    envelope["message"]["attributes"] = {"googclient_deliveryattempt": "2"}
    again = run(
        cfg(jwks_file), push_headers(token(iat=int(time.time()) - 5)), orjson.dumps(envelope)
    ).delivery_id
    assert first == again == "pubsub:2070443601311540"


def test_standard_base64_data_and_snake_case_ids(jwks_file: Path) -> None:
    data = base64.b64encode(b'{"emailAddress": "me@example.org", "historyId": 42}').decode()
    body = orjson.dumps(
        {
            "message": {"data": data, "message_id": "77", "publish_time": "2026-01-01T00:00:00Z"},
            "subscription": "projects/p/subscriptions/s",
        }
    )
    result = run(cfg(jwks_file), push_headers(token()), body)
    assert result.delivery_id == "pubsub:77"
    assert "me@example.org (historyId 42)" in result.actions[0].message


GOG_MESSAGES = {
    "source": "gmail",
    "account": "you@gmail.com",
    "historyId": "9876",
    "messages": [
        {
            "id": "18c1f0a2b3c4d5e6",
            "threadId": "18c1f0a2b3c4d5e6",
            "from": "Ada <ada@example.com>",
            "to": "you@gmail.com",
            "subject": "Lunch?",
            "date": "Mon, 5 Jan 2026 12:00:00 +0000",
            "snippet": "Are you free at noon",
            "body": "Are you free at noon tomorrow?",
            "labels": ["INBOX"],
        },
        {
            "id": "18c1f0a2b3c4d5e7",
            "threadId": "18c1f0a2b3c4d5e6",
            "from": "Bob <bob@example.com>",
            "subject": "Re: Lunch?",
        },
    ],
}


def test_gog_payload_is_one_action_per_message_like_openclaw() -> None:
    shared = source("gmail", token="hook-token")
    body = orjson.dumps(GOG_MESSAGES)
    result = run(shared, push_headers("hook-token"), body)
    first, second = result.actions
    # OpenClaw's preset: "New email from {{messages[0].from}}\nSubject: ...\n{{snippet}}\n{{body}}".
    # The relay fences every sender-written field (relay.protocol.fencing) and says how to read the fences.
    assert first.message == (
        "New email from <<<UNTRUSTED from: Ada <ada@example.com> >>>\n"
        "Subject: <<<UNTRUSTED subject: Lunch?>>>\n"
        "<<<UNTRUSTED snippet\nAre you free at noon\nUNTRUSTED snippet>>>\n"
        "<<<UNTRUSTED body\nAre you free at noon tomorrow?\nUNTRUSTED body>>>\n\n" + GUIDE
    )
    assert first.session_key == "hook:gmail:18c1f0a2b3c4d5e6"
    assert first.name == "Gmail" and first.wake_mode == "now"
    assert second.message == (
        "New email from <<<UNTRUSTED from: Bob <bob@example.com> >>>\n"
        "Subject: <<<UNTRUSTED subject: Re: Lunch?>>>\n\n" + GUIDE
    )
    assert second.session_key == "hook:gmail:18c1f0a2b3c4d5e7"
    assert result.delivery_id == "gmail:18c1f0a2b3c4d5e6,18c1f0a2b3c4d5e7"
    # Redelivered (same messages, other order): same delivery id.
    reversed_ = {**GOG_MESSAGES, "messages": GOG_MESSAGES["messages"][::-1]}
    assert run(shared, push_headers("hook-token"), orjson.dumps(reversed_)).delivery_id == result.delivery_id


def test_gog_docs_shape_fixture() -> None:
    [action] = run(source("gmail", token="hook-token"), push_headers("hook-token"), GOG).actions
    assert action.message == (
        "New email from <<<UNTRUSTED from: ...>>>\nSubject: <<<UNTRUSTED subject: ...>>>\n"
        "<<<UNTRUSTED snippet\n...\nUNTRUSTED snippet>>>\n<<<UNTRUSTED body\n...\nUNTRUSTED body>>>"
        "\n\n" + GUIDE
    )
    assert action.session_key == "hook:gmail:..."


def test_gog_many_messages_stay_within_the_action_cap() -> None:
    many = {"messages": [{"id": f"m{i}", "from": "x@example.com", "subject": f"s{i}"} for i in range(25)]}
    actions = run(source("gmail", token="t"), push_headers("t"), orjson.dumps(many)).actions
    assert len(actions) == 20
    assert actions[-1].message.startswith("6 more new emails:")
    assert (
        "- from <<<UNTRUSTED from: x@example.com>>>: <<<UNTRUSTED subject: s24>>> (m24)"
        in actions[-1].message
    )


def test_tampered_or_unknown_bodies(jwks_file: Path) -> None:
    with pytest.raises(BadRequest, match="neither a Pub/Sub push"):
        run(cfg(jwks_file), push_headers(token()), b'{"hello": 1}')
    with pytest.raises(BadRequest, match="without message.messageId"):
        run(cfg(jwks_file), push_headers(token()), b'{"message": {"data": ""}}')


def test_config_checks() -> None:
    assert presets.check_config(SourceConfig(preset="gmail"))[0] == "audience"
    assert presets.check_config(
        SourceConfig(preset="gmail", token="t", service_account_email=SERVICE_ACCOUNT)
    ) == ("audience", "service_account_email is checked on OIDC tokens, which need an audience")


def test_build_sources_resolves_a_relative_jwks_path_and_checks_the_config(tmp_path: Path) -> None:
    (tmp_path / "relay.yaml").write_text("{}")
    settings = Settings(
        sources={"gmail": {"preset": "gmail", "audience": AUDIENCE, "jwks": "keys/jwks.json"}}
    )
    settings.config_path = tmp_path / "relay.yaml"
    assert build_sources(settings)["gmail"].config.jwks == str(tmp_path / "keys" / "jwks.json")
    with pytest.raises(ConfigError, match="sources.mail.audience: the gmail preset needs an audience"):
        build_sources(Settings(sources={"mail": {"preset": "gmail"}}))
