"""`Mapper.decide` (one match per event: actions, hold, gateway, cancel) and the one pipeline
(parse → skip → Event → decide) that the ingress, replay, `relay try` and `relay.testing` share."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from relay.config import Settings
from relay.errors import TransformError
from relay.protocol import mapping as mapping_module
from relay.protocol.actions import AgentAction
from relay.protocol.budget import TransformBudget
from relay.protocol.event import Event
from relay.protocol.mapping import Decision, Hold, Mapper, MappingConfig
from relay.protocol.pipeline import Pipeline, build_sources
from relay.testing import map_event
from tests.conftest import GITHUB_SECRET


def event(payload: Any = None, path: str = "ci") -> Event:
    return Event(source=path, payload=payload or {}, path=path, delivery_id="d")


def mappings(*entries: dict[str, Any]) -> list[MappingConfig]:
    return [MappingConfig.model_validate(e) for e in entries]


class CountingMapper(Mapper):
    """A Mapper that counts how often it looks for the deciding mapping."""

    calls = 0

    def match(self, event: Event) -> MappingConfig | None:
        self.calls += 1
        return super().match(event)


GATED = mappings(
    {"match": {"path": "other"}, "messageTemplate": "never"},
    {
        "match": {"path": "ci"},
        "messageTemplate": "Build {{payload.status}}",
        "transform": {"module": "t"},
        "gateway": "backup",
        "delay": {"after": "10m", "key": "{{payload.job}}"},
        "cancel": {"key": "{{payload.job}}"},
    },
)


def test_decide_matches_once_and_settles_everything_that_match_decides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str | None] = []
    real = mapping_module.matches

    def counted(mapping: MappingConfig, ev: Event) -> bool:
        seen.append(mapping.match.path)
        return real(mapping, ev)

    monkeypatch.setattr(mapping_module, "matches", counted)
    runs: list[Event] = []
    mapper = CountingMapper(GATED, {"t:transform": lambda e: runs.append(e) or {"name": "T"}})
    decision = mapper.decide(event({"status": "failed", "job": "j1"}), budget=TransformBudget(5, 2))
    assert mapper.calls == 1
    assert seen == ["other", "ci"]  # each mapping tried once, in order
    assert len(runs) == 1
    [action] = decision.actions
    assert isinstance(action, AgentAction) and (action.message, action.name) == ("Build failed", "T")
    assert GATED[1].delay is not None and decision.hold == Hold("delay", "ci:j1", GATED[1].delay)
    assert decision.gateway == "backup"
    assert decision.cancel == "ci:j1"


def test_adecide_matches_once_too() -> None:
    mapper = CountingMapper(GATED, {"t:transform": lambda e: None})
    decision = asyncio.run(mapper.adecide(event({"job": "j2"}), budget=TransformBudget(5, 2)))
    assert mapper.calls == 1
    assert GATED[1].delay is not None
    assert decision == Decision([], Hold("delay", "ci:j2", GATED[1].delay), "backup", "ci:j2")


@pytest.mark.parametrize(
    ("gate", "kind"),
    [
        ({"cooldown": {"key": "{{payload.pr}}", "window": "30s", "mode": "last"}}, "cooldown"),
        ({"batch": {"key": "{{payload.pr}}", "window": "1m"}}, "batch"),
    ],
)
def test_a_windowed_hold_needs_a_key_that_renders(gate: dict[str, Any], kind: str) -> None:
    mapper = Mapper(mappings({"match": {"path": "ci"}, "messageTemplate": "x", **gate}), {})
    held = mapper.decide(event({"pr": 7})).hold
    assert held is not None and (held.kind, held.key) == (kind, "ci:7")
    assert mapper.decide(event({"pr": "  "})).hold is None  # an empty key holds nothing


def test_the_default_gateway_and_no_mapping() -> None:
    mapper = Mapper(mappings({"match": {"path": "ci"}, "messageTemplate": "x"}), {})
    assert mapper.decide(event(), default_gateway="eu").gateway == "eu"
    assert mapper.decide(event(path="other"), default_gateway="eu") == Decision([], None, "eu", None)
    preset = mapper.decide(event(path="other"), lambda e: AgentAction(message="p"))
    assert [a.message for a in preset.actions] == ["p"]  # type: ignore[union-attr]


def test_a_skipped_event_runs_no_transform_but_still_cancels() -> None:
    mapper = CountingMapper(GATED, {"t:transform": lambda e: pytest.fail("the transform ran")})
    decision = mapper.decide(event({"job": "j3"}), skipped=True)
    assert mapper.calls == 1
    assert decision.actions == [] and decision.cancel == "ci:j3"


def test_a_failing_transform_raises_from_decide() -> None:
    mapper = Mapper(GATED, {"t:transform": lambda e: 42})
    with pytest.raises(TransformError, match="transform returned int"):
        mapper.decide(event())


# --- the pipeline ---------------------------------------------------------------------------------

SETTINGS = {
    "sources": {
        "github": {"preset": "github", "secret": GITHUB_SECRET},
        "ci": {"preset": "generic", "token": "t"},
    },
    "mappings": [{"match": {"path": "ci"}, "messageTemplate": "CI {{payload.status}} {{headers.x-run}}"}],
}


def pipeline() -> tuple[Pipeline, dict[str, Any]]:
    settings = Settings.model_validate(SETTINGS)
    return Pipeline.from_settings(settings), build_sources(settings)


def test_run_parses_skips_builds_the_event_and_decides() -> None:
    pipe, sources = pipeline()
    mapped = pipe.run(sources["ci"], {"x-run": "7"}, b'{"status": "red"}', delivery_id="d1", event_id="e1")
    assert (mapped.event.source, mapped.event.path, mapped.event.delivery_id, mapped.event.id) == (
        "ci",
        "ci",
        "d1",
        "e1",
    )
    assert mapped.event.payload == {"status": "red"} and mapped.skip is None
    assert [a.message for a in mapped.decision.actions] == ["CI red 7"]  # type: ignore[union-attr]


def test_prepare_keeps_the_headers_it_is_given_and_skips_by_the_preset() -> None:
    pipe, sources = pipeline()
    prepared = pipe.prepare(
        sources["ci"], {"x-run": "1", "authorization": "t"}, {}, delivery_id="d", kept={"x-run": "1"}
    )
    assert prepared.event.headers == {"x-run": "1"}  # credentials are checked, never kept
    mapped = pipe.run(sources["github"], {"x-github-event": "ping"}, b'{"zen": "hi"}', delivery_id="p")
    assert mapped.skip == "ping" and mapped.decision.actions == []


def test_relay_testing_maps_like_the_pipeline() -> None:
    pipe, sources = pipeline()
    body = orjson.dumps({"status": "green"})
    mapped = pipe.run(sources["ci"], {"x-run": "9"}, body, delivery_id="test")
    tested = map_event("ci", body, {"X-Run": "9"}, config=Settings.model_validate(SETTINGS))
    assert [a.body() for a in tested] == [a.body() for a in mapped.decision.actions]
