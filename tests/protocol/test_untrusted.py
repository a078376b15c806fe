"""Untrusted content: control characters, the unsafe-content flag, credential headers, JSON depth."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from relay.errors import BadRequest
from relay.protocol.event import Event
from relay.protocol.mapping import Mapper, MappingConfig
from relay.protocol.preset import load_json
from relay.protocol.verify import redact_headers


def event(payload: object, headers: dict[str, str] | None = None) -> Event:
    return Event(source="ci", payload=payload, headers=headers or {}, query={}, path="ci", delivery_id="d")


def test_control_characters_and_bidi_overrides_are_removed_from_delivered_text() -> None:
    mapping = MappingConfig.model_validate(
        {"match": {"path": "ci"}, "name": "CI {{payload.who}}", "messageTemplate": "Build {{payload.status}}"}
    )
    [action] = Mapper([mapping], {}).map(
        event({"status": "\x1b[31mfailed\x00\r\n\tok\u202e", "who": "a\x07b"})
    )
    assert action.message == "Build [31mfailed\n\tok"  # type: ignore[union-attr]
    assert action.name == "CI ab"  # type: ignore[union-attr]


def test_a_message_of_only_control_characters_is_refused_like_an_empty_one() -> None:
    mapping = MappingConfig.model_validate({"match": {"path": "ci"}, "messageTemplate": "{{payload.x}}"})
    with pytest.raises(Exception, match="requires message"):
        Mapper([mapping], {}).map(event({"x": "\x00\x01"}))


def test_a_mapping_asking_for_unsafe_content_is_refused_and_false_is_accepted() -> None:
    with pytest.raises(ValidationError, match="never sends allowUnsafeExternalContent"):
        MappingConfig.model_validate({"messageTemplate": "x", "allowUnsafeExternalContent": True})
    MappingConfig.model_validate({"messageTemplate": "x", "allowUnsafeExternalContent": False})


def test_a_transform_setting_unsafe_content_has_it_dropped(caplog: pytest.LogCaptureFixture) -> None:
    mapping = MappingConfig.model_validate({"match": {"path": "ci"}, "transform": {"module": "t"}})
    mapper = Mapper(
        [mapping], {"t:transform": lambda e: {"message": "hi", "allowUnsafeExternalContent": True}}
    )
    [action] = mapper.map(event({}))
    assert "allowUnsafeExternalContent" not in action.body()
    assert "dropped" in caplog.text


def test_credential_headers_are_redacted_and_templates_see_the_marker() -> None:
    headers = {
        "authorization": "Bearer s3cret",
        "x-openclaw-token": "t",
        "x-gitlab-token": "g",
        "cookie": "c",
        "x-hub-signature-256": "sha256=ab",
        "x-github-event": "push",
    }
    kept = redact_headers(headers)
    assert kept["x-hub-signature-256"] == "sha256=ab" and kept["x-github-event"] == "push"
    assert {kept[k] for k in ("authorization", "x-openclaw-token", "x-gitlab-token", "cookie")} == {
        "[redacted]"
    }


@pytest.mark.parametrize("depth", [65, 254, 255, 1024, 5000])
def test_json_nested_past_the_limit_is_a_400(depth: int) -> None:
    with pytest.raises(BadRequest, match="nested deeper than 64"):
        load_json(b'{"a":' * depth + b"1" + b"}" * depth)


def test_json_at_the_limit_and_brackets_inside_strings_are_fine() -> None:
    assert load_json(b"[" * 64 + b"]" * 64)
    assert load_json(b'{"a": "' + b"[" * 500 + b'"}') == {"a": "[" * 500}
