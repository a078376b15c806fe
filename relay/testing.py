"""Helpers for testing transforms and mappings with pytest, without Redis, HTTP or a gateway.

`map_event` runs a payload through exactly what the ingress runs after verification — the
preset's parsing and skip rules, the mappings (the user's first), the transform under its time
budget, the length cap — and returns the actions. Signatures are not checked.

Example (``tests/test_my_transform.py``)::

    from relay.testing import load_fixture, map_event

    def test_failed_ci_run_asks_the_agent_to_look():
        payload = load_fixture("tests/fixtures/github/workflow_run.completed.json")
        [action] = map_event("github", payload, {"X-GitHub-Event": "workflow_run"},
                             config="relay.yaml")
        assert action.kind == "agent"
        assert "failure" in action.message

    def test_a_transform_on_its_own():
        actions = map_event("ci", {"status": "failed"}, mappings=[
            {"match": {"path": "ci"}, "transform": {"module": "transforms.ci"}}])
        assert actions == []
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

import presets
from relay.config import Settings, SourceConfig, load_settings
from relay.errors import ConfigError
from relay.protocol.budget import TransformBudget
from relay.protocol.mapping import ActionResult
from relay.protocol.mapping_config import MappingConfig
from relay.protocol.pipeline import Pipeline, Source, build_budget, build_mapper, build_sources

__all__ = ["load_fixture", "load_settings", "map_event"]


def load_fixture(path: str | Path, base: str | Path | None = None) -> Any:
    """A recorded payload: parsed JSON for `.json` files, else the raw bytes. Relative paths are
    read from `base` (default: the current directory)."""
    file = Path(base or ".") / path
    data = file.read_bytes()
    return json.loads(data) if file.suffix == ".json" else data


def _placeholders(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _placeholders(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v) for v in value]
    if isinstance(value, str) and value.startswith(("env:", "file:")):
        return "relay-testing-placeholder"
    return value


def _without_secrets(path: str | Path) -> dict[str, Any]:
    """The YAML with `env:`/`file:` secrets replaced: tests map events, they verify no signatures."""
    loaded = yaml.safe_load(Path(path).read_text()) or {}
    return _placeholders(loaded) if isinstance(loaded, dict) else {}


def _settings(
    config: str | Path | Settings | None,
    mappings: Sequence[Mapping[str, Any]] | None,
    base_dir: str | Path | None,
) -> Settings:
    if isinstance(config, Settings):
        settings = config
    elif config is not None:
        settings = load_settings(config, **_without_secrets(config))
    else:
        settings = Settings()
        settings.config_path = Path(base_dir or ".").resolve() / "relay.yaml"
    if mappings is not None:
        settings = settings.model_copy(
            update={"mappings": [MappingConfig.model_validate(m) for m in mappings]}
        )
        if base_dir is not None:
            settings.config_path = Path(base_dir).resolve() / "relay.yaml"
    return settings


def map_event(
    source_or_preset: str,
    payload: Any,
    headers: Mapping[str, str] | None = None,
    *,
    config: str | Path | Settings | None = None,
    mappings: Sequence[Mapping[str, Any]] | None = None,
    base_dir: str | Path | None = None,
    query: Mapping[str, str] | None = None,
    budget: TransformBudget | None = None,
) -> list[ActionResult]:
    """The actions `payload` becomes at `source_or_preset`.

    `source_or_preset` is a source of `config` (a relay.yaml path — its `env:`/`file:` secrets
    need not be set — or a `Settings`), or, when the
    config has no such source, a built-in preset's name (`github`, `gmail`, ...) or any other
    name, read as a `generic` source of that name (for testing `mappings`). `payload` is
    a parsed JSON value, or the raw body as bytes/str (then the preset parses it, as the ingress
    does). `mappings` (OpenClaw's `hooks.mappings` shape) replace the config's, with transform
    modules imported from `base_dir`. An empty list means the event is skipped; a failing
    transform raises (as it would park the event).
    """
    settings = _settings(config, mappings, base_dir)
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    try:
        sources = build_sources(settings)
    except ConfigError:
        if source_or_preset not in settings.sources:
            raise
        sources = {}
    source = sources.get(source_or_preset)
    if source is None:
        # Not a configured source: a preset of that name, else a `generic` source of that name
        # (whose events only the mappings turn into actions).
        preset = presets.REGISTRY.get(source_or_preset) or presets.REGISTRY["generic"]
        source = Source(source_or_preset, preset, SourceConfig(preset=preset.name))
    if isinstance(payload, bytes | str):
        body = payload.encode() if isinstance(payload, str) else payload
        parsed = Pipeline.parse(source, hdrs, body)
    else:
        parsed = orjson.loads(orjson.dumps(payload))  # what the ingress would have parsed
    prepared = Pipeline.prepare(source, hdrs, parsed, delivery_id="test", query=query)
    if prepared.skip is not None:
        return []  # a skipped event has no actions: its mappings need not even load
    pipeline = Pipeline(build_mapper(settings), budget or build_budget(settings))
    return pipeline.decide(prepared).decision.actions
