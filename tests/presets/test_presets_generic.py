"""generic: bearer token mode and HMAC mode (header name, prefix, sha256/sha1/sha512, hex)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

import presets
from relay.config import SourceConfig
from relay.errors import Unauthorized

from .presets_support import run, source, verify

BODY = b'{"pipeline": "main", "status": "failed"}'


def hex_sig(body: bytes, key: str = "s3cret", algorithm: str = "sha256") -> str:
    return hmac.new(key.encode(), body, getattr(hashlib, algorithm)).hexdigest()


def test_token_mode() -> None:
    cfg = source("generic", token="tok")
    verify(cfg, {"Authorization": "Bearer tok"}, BODY)
    verify(cfg, {"x-openclaw-token": "tok"}, BODY)
    with pytest.raises(Unauthorized, match="invalid token"):
        verify(cfg, {"Authorization": "Bearer nope"}, BODY)
    with pytest.raises(Unauthorized, match="missing token"):
        verify(cfg, {}, BODY)


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "sha512"])
def test_hmac_mode(algorithm: str) -> None:
    cfg = source(
        "generic",
        secret="s3cret",
        signature_header="X-Signature",
        signature_prefix=f"{algorithm}=",
        algorithm=algorithm,
    )
    good = {"X-Signature": f"{algorithm}={hex_sig(BODY, algorithm=algorithm)}"}
    result = run(cfg, {**good, "Idempotency-Key": "run-77"}, BODY)
    assert result.delivery_id == "run-77"
    assert result.actions == []  # no preset transform: a mapping decides what the event becomes
    with pytest.raises(Unauthorized, match="invalid X-Signature"):
        verify(cfg, good, BODY + b" ")
    with pytest.raises(Unauthorized, match="invalid X-Signature"):
        verify(cfg, {"X-Signature": f"{algorithm}={hex_sig(BODY, 'wrong', algorithm)}"}, BODY)
    with pytest.raises(Unauthorized, match="missing X-Signature header"):
        verify(cfg, {"Authorization": "Bearer s3cret"}, BODY)
    with pytest.raises(Unauthorized, match="malformed X-Signature header"):
        verify(cfg, {"X-Signature": hex_sig(BODY, algorithm=algorithm)}, BODY)


def test_hmac_mode_without_prefix_upper_case_hex_and_rotation() -> None:
    cfg = source("generic", secret=["old", "s3cret"], signature_header="X-Hub-Sig")
    verify(cfg, {"x-hub-sig": hex_sig(BODY).upper()}, BODY)


def test_redelivery_without_a_key_has_the_same_delivery_id() -> None:
    cfg = source("generic", secret="s3cret", signature_header="X-Signature")
    h = {"X-Signature": hex_sig(BODY)}
    assert run(cfg, h, BODY).delivery_id == run(cfg, h, BODY).delivery_id


def test_config_checks() -> None:
    assert presets.check_config(SourceConfig(preset="generic"))[0] == "token"
    assert presets.check_config(SourceConfig(preset="generic", signature_header="X-Sig"))[0] == "secret"
