"""Adding a sender means one preset module, one doc page and one fixture folder.

Every registered preset carries what a sender needs (its auth line for `relay up`, its `relay init`
setup), has its page in docs/presets/ and its example payloads in tests/fixtures/; and no module of
relay/ (nor the registry) switches on a sender's name: that knowledge lives in the preset.
"""

from __future__ import annotations

import ast
import re

import presets
from relay.config import SourceConfig
from tests.paths import FIXTURES, ROOT

# openclaw's agent and wake are the relay's own /hooks/agent and /hooks/wake (the gateway's bodies),
# not senders: `relay up` describes them itself, and they have no page, fixtures or init setup.
INTERNAL = {"agent", "wake"}
SENDERS = sorted(set(presets.REGISTRY) - INTERNAL)

# Senders `relay init` does not set up, and why.
NO_SETUP = {"gmail": "a Pub/Sub push authenticates with Google's OIDC token: no secret to generate"}
# Senders without published example payloads, and why.
NO_FIXTURES = {
    "generic": "any sender: its tests build their own bodies",
    "standard-webhooks": "its tests sign bodies built from the spec's example",
}

# String constants of relay/ that may name a sender, and why (each entry must still be needed).
ALLOWED = {
    ("relay/config/models.py", "generic"): "the preset of a source that names none (a default value)",
    ("relay/protocol/pipeline.py", "generic"): "/hooks/agent and /hooks/wake take the token as generic does",
    ("relay/testing.py", "generic"): "map_event's fallback for a name that is no source and no preset",
    ("relay/cli/import_openclaw.py", "gmail"): "OpenClaw's own config names its gmail preset and hooks.gmail",
    ("relay/cli/import_openclaw.py", "generic"): "an imported mapping's path becomes a generic source",
}


def test_every_sender_has_its_auth_line_and_init_setup() -> None:
    for name in SENDERS:
        preset = presets.REGISTRY[name]
        assert preset.auth, f"{name}: no `auth` for relay up's banner"
        if name in NO_SETUP:
            assert preset.setup is None, f"{name}: has a setup now; drop it from NO_SETUP"
            continue
        setup = preset.setup
        assert setup is not None, f"{name}: no `setup` for relay init"
        assert setup.key in SourceConfig.model_fields and set(setup.extra) <= set(SourceConfig.model_fields)
    assert list(presets.SETUPS) == [n for n in presets.REGISTRY if n in SENDERS and n not in NO_SETUP]


def test_every_sender_has_a_doc_page_and_fixtures() -> None:
    index = (ROOT / "docs" / "presets" / "README.md").read_text()
    for name in SENDERS:
        assert (ROOT / "docs" / "presets" / f"{name}.md").is_file(), f"{name}: no docs/presets/{name}.md"
        assert f"]({name}.md)" in index, f"{name}: not linked from docs/presets/README.md"
        has_fixtures = (FIXTURES / name).is_dir() and any((FIXTURES / name).iterdir())
        assert has_fixtures != (name in NO_FIXTURES), f"{name}: tests/fixtures/{name}/ vs NO_FIXTURES"


def sender_names_in(source: str, names: list[str]) -> list[tuple[int, str]]:
    """(line, name) of each string constant naming a sender, leaving out docstrings and the
    settings' field descriptions (documentation, generated into docs/configuration.md)."""
    tree = ast.parse(source)
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?![\w-])")
    prose: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                prose.add(id(first.value))
        if isinstance(node, ast.keyword) and node.arg == "description":
            prose.update(id(n) for n in ast.walk(node.value))
    return [
        (node.lineno, match)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
        for match in pattern.findall(node.value)
    ]


def test_no_module_of_the_relay_switches_on_a_sender() -> None:
    files = [*sorted((ROOT / "relay").rglob("*.py")), ROOT / "presets" / "__init__.py"]
    found: set[tuple[str, str]] = set()
    unexpected = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        for line, name in sender_names_in(path.read_text(), SENDERS):
            found.add((rel, name))
            if (rel, name) not in ALLOWED:
                unexpected.append(f"{rel}:{line}: {name!r}")
    assert not unexpected, f"sender knowledge outside its preset (move it onto the Preset): {unexpected}"
    assert set(ALLOWED) <= found, f"allow-list entries no longer needed: {sorted(set(ALLOWED) - found)}"


def test_the_name_check_sees_switches_not_prose() -> None:
    source = '''
"""The github preset (a docstring)."""
DESCRIPTION = Field(default=None, description="github only")
def auth(cfg):
    """For gitlab."""
    if cfg.preset == "github":  # a comment naming stripe
        return f"signed by {cfg.x} for stripe"
    return {"standard-webhooks": 1, "github-app": 2}
'''
    found = sender_names_in(source, ["github", "gitlab", "stripe", "standard-webhooks"])
    assert sorted(found) == [(6, "github"), (7, "stripe"), (8, "standard-webhooks")]


def test_the_steps_to_add_a_sender_are_written_down() -> None:
    guide = (ROOT / "docs" / "development.md").read_text()
    assert "## Adding a sender" in guide and "presets/<sender>.py" in guide
