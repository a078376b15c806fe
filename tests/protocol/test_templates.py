"""The `{{...}}` template language, case by case against OpenClaw's `renderTemplate` rules
(src/gateway/hooks-mapping.ts: `renderTemplate`, `resolveTemplateExpr`, `getByPath`)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from relay.protocol.templates import TemplateContext, get_by_path, has_expressions, render, render_optional

PAYLOAD: dict[str, Any] = {
    "source": "gmail",
    "messages": [{"id": "m1", "from": "Ada", "subject": "Hello", "tags": ["a", "b"]}, {"id": "m2"}],
    "repository": {"full_name": "octo/hello", "private": False, "stars": 3, "score": 1.0, "ratio": 0.5},
    "nothing": None,
    "payload": {"nested": "via payload.payload"},
    "prototype": "leaked",
    "constructor": {"name": "INJECTED"},
    "__proto__": {"polluted": True},
    "weird key": "spaced",
}
CTX = TemplateContext(
    payload=PAYLOAD,
    headers={"x-github-event": "push", "content-type": "application/json"},
    query={"kind": "alert", "token": "t"},
    path="gmail",
)

CASES: list[tuple[str, str, str]] = [
    # (case, template, rendered)
    ("no expressions", "plain text", "plain text"),
    ("empty template", "", ""),
    ("payload prefix", "{{payload.repository.full_name}}", "octo/hello"),
    ("bare path reads the payload", "{{repository.full_name}}", "octo/hello"),
    ("array index", "{{messages[0].subject}}", "Hello"),
    ("second element", "{{messages[1].id}}", "m2"),
    ("index past the end is empty", "{{messages[5].id}}", ""),
    ("nested index", "{{messages[0].tags[1]}}", "b"),
    ("JS reads a.0 like a[0]", "{{messages.0.from}}", "Ada"),
    ("JS array length", "{{messages.length}}", "2"),
    ("index on an object is empty", "{{repository[0]}}", ""),
    ("key on a string is empty", "{{source.length}}", ""),
    ("whitespace inside braces", "{{  messages[0].from  }}", "Ada"),
    ("headers by lower-case name with dashes", "{{headers.x-github-event}}", "push"),
    ("missing header is empty", "{{headers.x-missing}}", ""),
    ("query parameter", "{{query.kind}}", "alert"),
    ("path", "/hooks/{{path}}", "/hooks/gmail"),
    ("missing value renders empty", "[{{payload.no.such.thing}}]", "[]"),
    ("null renders empty", "[{{nothing}}]", "[]"),
    ("false renders as false", "{{repository.private}}", "false"),
    ("integer", "{{repository.stars}}", "3"),
    ("integral float like JavaScript's String(1.0)", "{{repository.score}}", "1"),
    ("fraction", "{{repository.ratio}}", "0.5"),
    ("object renders as compact JSON", "{{messages[1]}}", '{"id":"m2"}'),
    ("array renders as JSON", "{{messages[0].tags}}", '["a","b"]'),
    ("payload.payload", "{{payload.payload.nested}}", "via payload.payload"),
    ("several expressions", "{{messages[0].from}}: {{messages[0].subject}}", "Ada: Hello"),
    ("key with a space", "{{weird key}}", "spaced"),
    # OpenClaw's "prototype pollution protection" tests: blocked keys render empty.
    ("blocks __proto__ traversal", "value: {{__proto__}}", "value: "),
    ("blocks constructor traversal", "type: {{constructor.name}}", "type: "),
    ("blocks prototype traversal", "val: {{prototype}}", "val: "),
    ("unclosed braces stay as they are", "{{messages[0].from", "{{messages[0].from"),
    ("empty braces stay as they are", "{{}}", "{{}}"),
]


@pytest.mark.parametrize(("template", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_render(template: str, expected: str) -> None:
    assert render(template, CTX) == expected


def test_now_is_an_iso_timestamp_in_utc_with_milliseconds_like_javascript_toISOString() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", render("{{now}}", CTX))


OPTIONAL_CASES = [
    ("None stays None", None, None),
    ("empty stays None", "", None),
    ("rendered and trimmed", "  hook:{{path}}  ", "hook:gmail"),
    ("renders to blank → None (OpenClaw renderOptional)", "{{nothing}} ", None),
]


@pytest.mark.parametrize(
    ("template", "expected"), [c[1:] for c in OPTIONAL_CASES], ids=[c[0] for c in OPTIONAL_CASES]
)
def test_render_optional(template: str | None, expected: str | None) -> None:
    assert render_optional(template, CTX) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", None),
        ("messages[0]", PAYLOAD["messages"][0]),
        ("messages[0].tags[0]", "a"),
        ("a.b.c", None),
        ("messages.007", None),
        ("messages[007].id", None),
    ],
)
def test_get_by_path(path: str, expected: Any) -> None:
    assert get_by_path(PAYLOAD, path) == expected


def test_has_expressions_tells_templated_from_static_session_keys() -> None:
    # OpenClaw marks session keys "templated" or "static" with the same test.
    assert has_expressions("hook:gmail:{{messages[0].id}}")
    assert not has_expressions("hook:gmail:static")
    assert not has_expressions(None)
