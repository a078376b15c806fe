"""The docs stay true to the code: the settings reference in docs/configuration.md is generated from
the settings' field descriptions, every relative link in README.md and docs/ resolves, and every doc
page the code names exists.

`.venv/bin/python -m tests.system.test_docs --write` regenerates the settings reference; without
`--write` it prints it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from relay.config import Settings
from tests.paths import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
REFERENCE_START = (
    "<!-- settings-reference:start (generated from the settings' field descriptions by "
    "tests/system/test_docs.py: .venv/bin/python -m tests.system.test_docs --write) -->"
)
REFERENCE_END = "<!-- settings-reference:end -->"
README_MAX_LINES = 250
CODE_FOLDERS = ("relay", "presets", "transforms", "deploy")


# The settings reference -------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    """A reader's name for a field's type: `secret`, `list of string`, `one of a, b`, ..."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        inner = args[0]
        if inner is SecretStr:
            return "secret"
        return _type_name(inner)
    if annotation is SecretStr:
        return "secret"
    if origin in (Union, UnionType):
        return " or ".join(_type_name(arg) for arg in args if arg is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in args)
    if origin in (list, tuple, set):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"map of name to {_type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    return names.get(annotation, "any")


def _limits(field: FieldInfo) -> str:
    """The field's bounds (`> 15`, `1 to 1000`), from its Field constraints."""
    marks = {
        annotated_types.Gt: (">", "gt"),
        annotated_types.Ge: ("≥", "ge"),
        annotated_types.Lt: ("<", "lt"),
        annotated_types.Le: ("≤", "le"),
    }
    parts = []
    for item in field.metadata:
        for kind, (sign, attribute) in marks.items():
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attribute)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            parts.append(f"at least {item.min_length} long")
    return ", ".join(parts)


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]  # the factories here take no data
        if isinstance(value, BaseModel):
            return "see below"
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def _key(name: str, field: FieldInfo) -> str:
    if isinstance(field.validation_alias, AliasChoices):
        return " / ".join(str(choice) for choice in field.validation_alias.choices)
    return field.alias or name


def _models(annotation: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """The models a field holds, and the suffix of their keys: none, `.<name>` (a map) or `[]` (a list)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        yield from _models(args[0])
    elif origin in (Union, UnionType):
        for arg in args:
            yield from _models(arg)
    elif origin is dict:
        yield from ((f".<name>{suffix}", model) for suffix, model in _models(args[1]))
    elif origin is list:
        yield from ((f"[]{suffix}", model) for suffix, model in _models(args[0]))
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield "", annotation


def _rows(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str, str]]:
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}{_key(name, field)}"
        kind = _type_name(field.annotation)
        limits = _limits(field)
        yield key, f"{kind}, {limits}" if limits else kind, _default(field), field.description or ""
        nested += [(f"{key}{suffix}.", sub) for suffix, sub in _models(field.annotation)]
    for sub_prefix, sub in nested:
        yield from _rows(sub, sub_prefix)


def render_settings_reference() -> str:
    """Every key of relay.yaml: its type and bounds, default and description, as the code declares them."""
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, kind, default, description in _rows(Settings, ""):
        cells = (f"`{key}`", kind, default, description)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def _generated(text: str) -> str:
    assert REFERENCE_START in text and REFERENCE_END in text, f"{CONFIGURATION} lost its reference markers"
    return text.split(REFERENCE_START)[1].split(REFERENCE_END)[0].strip()


def test_settings_reference_is_generated_from_the_code() -> None:
    assert _generated(CONFIGURATION.read_text()) == render_settings_reference(), (
        "docs/configuration.md's settings reference is stale: "
        ".venv/bin/python -m tests.system.test_docs --write"
    )


def test_settings_reference_covers_nested_settings() -> None:
    keys = re.findall(r"^\| `([^`]+)`", render_settings_reference(), re.M)
    for key in ("redis_url", "gateway.timeout_seconds", "sources.<name>.secret", "delivery.in_flight"):
        assert key in keys
    assert any(key.startswith("mappings[].") for key in keys)


def _write() -> None:
    text = CONFIGURATION.read_text()
    before, rest = text.split(REFERENCE_START)
    after = rest.split(REFERENCE_END)[1]
    CONFIGURATION.write_text(
        f"{before}{REFERENCE_START}\n{render_settings_reference()}\n{REFERENCE_END}{after}"
    )


# Links ---------------------------------------------------------------------------------------------


def doc_pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _prose(page.read_text()), re.M):
        base = anchor = slug(heading)
        n = 0
        while anchor in found:  # GitHub numbers repeated headings: x, x-1, x-2
            n += 1
            anchor = f"{base}-{n}"
        found.add(anchor)
    return found


def headings(page: Path) -> list[str]:
    return [
        re.sub(r"[`*]", "", h).strip() for h in re.findall(r"^#{1,6} (.+)$", _prose(page.read_text()), re.M)
    ]


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"`[^`\n]*`", "", _prose(page.read_text()))
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    return [t for t in targets if not re.match(r"^[a-z][a-z+.-]*:", t)]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor})")
    return broken


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = {str(page.relative_to(ROOT)): links for page in doc_pages() if (links := broken_links(page))}
    assert not broken, f"links to missing files or headings: {broken}"


def test_the_readme_is_short_and_links_every_doc_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in relative_links(README)}
    presets = DOCS / "presets"
    missing = [
        str(p.relative_to(ROOT))
        for p in DOCS.rglob("*.md")
        if p.resolve() not in linked and p.parent != presets  # the presets are linked from their index
    ]
    assert not missing, f"README.md does not link these doc pages: {missing}"
    index_links = {(presets / t.partition("#")[0]).resolve() for t in relative_links(presets / "README.md")}
    assert {p.resolve() for p in presets.glob("*.md") if p.name != "README.md"} <= index_links


def test_the_design_and_performance_notes_stay_findable() -> None:
    assert "docs/internals.md#design-decisions" in README.read_text()
    assert {"design-decisions", "performance", "delivery-guarantees"} <= anchors(DOCS / "internals.md")


# References from the code --------------------------------------------------------------------------


def code_files() -> Iterator[Path]:
    for folder in CODE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                yield path


def doc_references(text: str) -> list[tuple[str, str]]:
    """`docs/<page>.md`, with the section title quoted right after it when there is one."""
    return re.findall(r"\bdocs/([\w./-]+\.md)(?:, \"([^\"]+)\")?", text)


def test_every_doc_page_the_code_names_exists() -> None:
    problems = []
    for path in code_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        where = path.relative_to(ROOT)
        for line in text.splitlines():
            if re.search(r"(?<![/\w])README\b", line):
                problems.append(f"{where}: names the README, not a doc page: {line.strip()}")
        for page, section in doc_references(text):
            target = DOCS / page
            if not target.is_file():
                problems.append(f"{where}: docs/{page} does not exist")
            elif section and not any(h.startswith(section) for h in headings(target)):
                problems.append(f'{where}: docs/{page} has no section "{section}"')
    assert not problems, "\n".join(problems)


def test_the_link_checks_catch_what_they_should(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# A title: `x` and y\n\n"
        "[ok](#a-title-x-and-y) [gone](missing.md) [bad](#nope)\n```\n[code](x.md)\n```\n"
    )
    assert broken_links(page) == ["missing.md (no such file)", "#nope (no heading #nope)"]
    assert (
        slug("The gateway's other doors: `send` and `tool` actions")
        == "the-gateways-other-doors-send-and-tool-actions"
    )
    assert doc_references('see docs/gateways.md, "The stub" and docs/x.md') == [
        ("gateways.md", "The stub"),
        ("x.md", ""),
    ]


if __name__ == "__main__":
    if "--write" in sys.argv:
        _write()
    else:
        print(render_settings_reference())
