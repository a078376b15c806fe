"""Loading a mapping's transform: a user's Python function, imported once at start-up.

A transform is a module's export, named by a dotted module importable from the config file's
folder or by a `.py` path inside it (OpenClaw keeps transform modules within `transformsDir`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relay.errors import ConfigError
from relay.protocol.event import Event
from relay.protocol.mapping_config import TransformRef

Transform = Callable[[Event], Any]


def transform_key(ref: TransformRef) -> str:
    return f"{ref.module}:{ref.export or 'transform'}"


def _import_file(ref: TransformRef, base_dir: Path) -> Any:
    """Import a transform given as a `.py` path, which must stay inside the config's folder
    (as OpenClaw keeps transform modules inside `transformsDir`: "must be within")."""
    root = base_dir.resolve()
    path = (root / ref.module).resolve()  # resolve() follows symlinks: a link out is refused too
    if not path.is_relative_to(root):
        raise ConfigError(f"transform module {ref.module!r} must be within {root}")
    if not path.is_file():
        raise ConfigError(f"transform module {ref.module!r}: no such file {path}")
    name = "relay_transform_" + "_".join(path.relative_to(root).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_transform(ref: TransformRef, base_dir: Path) -> Transform:
    """Import `module` (a dotted name importable from the config file's folder, or a `.py` path
    inside it) and return its export, failing fast."""
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    try:
        if ref.module.endswith(".py"):
            module = _import_file(ref, base_dir)
        else:
            module = importlib.import_module(ref.module)
    except ConfigError:
        raise
    except BaseException as exc:  # SyntaxError, ImportError, an exception or sys.exit() at import
        raise ConfigError(f"transform module {ref.module!r} cannot be imported: {exc!r}") from exc
    names = [ref.export] if ref.export else ["transform", "default"]
    for name in names:
        fn = getattr(module, name, None)
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    raise ConfigError(f"transform module {ref.module!r} has no callable {' or '.join(map(repr, names))}")
