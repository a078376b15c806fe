"""The JSON depth limit read off the bytes (`relay.protocol.preset.too_deep`) against a walk of the
parsed value, on random documents whose strings hold brackets, quotes and escapes."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from relay.errors import BadRequest
from relay.protocol.preset import MAX_JSON_DEPTH, load_json, too_deep
from tests.paths import FIXTURES

ALPHABET = ["a", "[", "]", "{", "}", '"', "\\", "\n", "é", " ", "\\u005b"]


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def document(rnd: random.Random) -> Any:
    def text() -> str:
        return "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 6)))

    def tree(levels: int) -> Any:
        if levels <= 0 or rnd.random() < 0.2:
            return rnd.choice([text(), 1, None, True, 2.5])
        if rnd.random() < 0.5:
            return [tree(levels - 1) for _ in range(rnd.randint(0, 3))]
        return {text(): tree(levels - 1) for _ in range(rnd.randint(0, 3))}

    value = tree(rnd.randint(1, 8))
    for _ in range(rnd.choice([0, rnd.randint(55, 75)])):  # a deep chain around it
        value = [value] if rnd.random() < 0.5 else {text(): value}
    return {"before": tree(3), "value": value, "after": [tree(3)]} if rnd.random() < 0.3 else value


def test_the_bytes_give_the_depth_of_the_parsed_value() -> None:
    rnd = random.Random(21)
    deep = 0
    for _ in range(5000):
        body = orjson.dumps(document(rnd))
        levels = depth(orjson.loads(body))
        deep += levels > MAX_JSON_DEPTH
        for limit in (MAX_JSON_DEPTH, 3, 10):
            assert too_deep(body, limit) == (levels > limit), body
    assert deep > 500  # both sides of the limit were tried


@pytest.mark.parametrize("name", ["github/push.default.json", "alertmanager/webhook_v4.firing.json"])
def test_real_payloads_are_within_the_limit(name: str) -> None:
    body = (FIXTURES / name).read_bytes()
    assert not too_deep(body)
    assert too_deep(body, depth(orjson.loads(body)) - 1)


def test_a_body_one_level_too_deep_is_refused() -> None:
    assert load_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) == orjson.loads(
        b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    )
    with pytest.raises(BadRequest, match="nested deeper than 64"):
        load_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))


@pytest.mark.parametrize(
    "value",
    [
        [["{"], "}"],
        {"a": "}", "b": ["[", {"c": '"]'}]},
        ['\\"', ["\\\\", {"x": '{"'}]],
        [[[]], [[["", '"', "\\"]]]],
        {"": {"": {"": "[]{}"}}},
    ],
)
def test_brackets_and_quotes_in_strings_beside_containers(value: Any) -> None:
    """The bound after one peeled level (strings still in the shape) against the parsed depth."""
    body = orjson.dumps(value)
    levels = depth(value)
    for limit in range(0, levels + 2):
        assert too_deep(body, limit) == (levels > limit), (body, limit)
