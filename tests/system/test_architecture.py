"""The shape of the code: no import cycles, no upward imports from the protocol, no module over 400 lines.

The import graph is read with `ast` from relay/ and presets/: every `import` and `from ... import`,
at module level or inside a function (a function-level import is a cycle all the same, only a
later one). `from relay.x import y` counts as an import of relay.x.y when y is a module. Importing
a module also runs its parent packages' __init__, but that is how packages work, not a cycle: only
the module named is an edge. Imports under `if TYPE_CHECKING:` count for cycles (a type is a
dependency too) but not for the protocol's layering: they never run, so the protocol stays pure.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.paths import ROOT

PACKAGES = ("relay", "presets")
MAX_LINES = 400


def module_files() -> dict[str, Path]:
    """Every module of relay/ and presets/ by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: set[str], *, typing: bool = True) -> set[str]:
    """The modules of `modules` that module `name` imports, anywhere in its body (with `typing`
    False, leaving out those under `if TYPE_CHECKING:`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skipped = (
        set() if typing else {id(node) for block in _type_checking_blocks(tree) for node in ast.walk(block)}
    )
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from . import x`, `from .y import z`
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from a.b import c`: the module a.b.c if there is one, else a.b itself.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _type_checking_blocks(tree: ast.Module) -> list[ast.If]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        )
    ]


def import_graph(*, typing: bool = True) -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files), typing=typing) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_function_level_and_module_imports() -> None:
    graph = import_graph()
    assert "relay.delivery.attempt" in graph["relay.delivery"]  # `from relay.delivery.attempt import`
    assert "relay.console.data" in graph["relay.console.browse"]  # `from relay.console import data`
    assert "relay.delivery.gateway_check" in graph["relay.cli.config"]  # inside `relay check`
    assert "presets.github" in graph["presets"]  # `from . import github`
    assert "relay.config" in graph["relay.store.connection"]  # under `if TYPE_CHECKING:`
    assert "relay.config" not in import_graph(typing=False)["relay.store.connection"]


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, f"import cycles: {[sorted(c) for c in found]}"


def test_the_protocol_imports_nothing_above_it() -> None:
    """relay.protocol is pure: from the relay it imports only itself, relay.errors and the settings
    models of relay.config, which the pipeline's builders read (data: loading them is the caller's)."""
    upward = {
        name: sorted(t for t in targets if t.startswith("relay") and not _protocol_may_import(t))
        for name, targets in import_graph(typing=False).items()
        if name == "relay.protocol" or name.startswith("relay.protocol.")
    }
    assert not {name: targets for name, targets in upward.items() if targets}


def _protocol_may_import(target: str) -> bool:
    return target in ("relay.errors", "relay.protocol", "relay.config") or target.startswith(
        "relay.protocol."
    )


def test_no_module_over_400_lines() -> None:
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in module_files().values()
    }
    long = {path: n for path, n in lengths.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
