"""Mappings: matching order, the fields of each action, transform merging, validation, fan-out,
the time budget and the length cap — the rules of OpenClaw's `applyHookMappings`
(src/gateway/hooks-mapping.ts and its hooks-mapping.test.ts), case by case."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from relay.errors import ConfigError, TransformError
from relay.protocol.actions import AgentAction, WakeAction
from relay.protocol.budget import TransformBudget
from relay.protocol.event import Event
from relay.protocol.mapping import (
    MAX_ACTIONS_PER_EVENT,
    Mapper,
    MappingConfig,
    TransformRef,
    cut_text,
    load_transform,
    matches,
    merge,
    transform_key,
)
from relay.testing import map_event
from tests.conftest import wait_until

GMAIL = {"source": "gmail", "messages": [{"id": "m1", "from": "Ada", "subject": "Hello", "snippet": "Hi"}]}


def event(path: str = "gmail", payload: Any = None, headers: dict[str, str] | None = None) -> Event:
    return Event(
        source=path,
        payload=GMAIL if payload is None else payload,
        headers=headers or {},
        path=path,
        delivery_id="d1",
    )


def mapping(**fields: Any) -> MappingConfig:
    return MappingConfig.model_validate(fields)


MATCH_CASES: list[tuple[str, dict[str, Any], str, Any, bool]] = [
    # (case, match, event path, payload, matches)
    ("no match fields match every path", {}, "anything", {}, True),
    ("path", {"path": "gmail"}, "gmail", {}, True),
    ("other path", {"path": "gmail"}, "github", {}, False),
    ("slashes are trimmed (normalizeMatchPath)", {"path": "/gmail/"}, "gmail", {}, True),
    ("blank path matches every path", {"path": "  "}, "github", {}, True),
    ("source is the payload's source field", {"source": "gmail"}, "x", {"source": "gmail"}, True),
    ("other source", {"source": "gmail"}, "x", {"source": "imap"}, False),
    ("source must be a string", {"source": "1"}, "x", {"source": 1}, False),
    ("no source in payload", {"source": "gmail"}, "x", {}, False),
    ("payload not an object", {"source": "gmail"}, "x", [1, 2], False),
    ("match.source is trimmed", {"source": " gmail "}, "x", {"source": "gmail"}, True),
    ("blank match.source matches any", {"source": " "}, "x", {}, True),
    ("both must pass", {"path": "hook", "source": "ci"}, "hook", {"source": "ci"}, True),
    ("both must pass: wrong source", {"path": "hook", "source": "ci"}, "hook", {"source": "cd"}, False),
]


@pytest.mark.parametrize(
    ("match", "path", "payload", "expected"), [c[1:] for c in MATCH_CASES], ids=[c[0] for c in MATCH_CASES]
)
def test_matches(match: dict[str, Any], path: str, payload: Any, expected: bool) -> None:
    assert matches(mapping(match=match, messageTemplate="x"), event(path, payload)) is expected


def test_every_openclaw_mapping_field_is_accepted_and_reaches_the_action() -> None:
    m = mapping(
        id="gmail-deliver",
        match={"path": "gmail", "source": "gmail"},
        action="agent",
        wakeMode="next-heartbeat",
        name="Gmail {{messages[0].from}}",
        agentId="hooks",
        sessionKey="hook:gmail:{{messages[0].id}}",
        messageTemplate="Subject: {{messages[0].subject}}",
        textTemplate="unused for agent",
        deliver=True,
        allowUnsafeExternalContent=False,
        channel="last",
        to="+1555{{messages[0].id}}",
        model="openai/gpt-5.2-mini",
        thinking="low",
        timeoutSeconds=120,
    )
    [action] = Mapper([m], {}).map(event())
    assert action.body() == {
        "message": "Subject: Hello",
        "name": "Gmail Ada",
        "agentId": "hooks",
        "sessionKey": "hook:gmail:m1",
        "wakeMode": "next-heartbeat",
        "deliver": True,
        "channel": "last",
        "to": "+1555m1",
        "model": "openai/gpt-5.2-mini",
        "thinking": "low",
        "timeoutSeconds": 120,
    }


def test_unknown_mapping_field_is_refused() -> None:
    with pytest.raises(ValueError, match="messageTemplat"):
        mapping(messageTemplat="typo")


def test_wake_mapping_uses_text_template_and_wake_mode_as_mode() -> None:
    [action] = Mapper(
        [mapping(action="wake", textTemplate="Mail from {{messages[0].from}}", wakeMode="next-heartbeat")], {}
    ).map(event())
    assert isinstance(action, WakeAction)
    assert action.body() == {"text": "Mail from Ada", "mode": "next-heartbeat"}


VALIDATION_CASES = [
    ("rejects missing message", {"action": "agent"}, "hook mapping requires message"),
    ("blank rendered message", {"messageTemplate": "  {{nothing}} "}, "hook mapping requires message"),
    ("wake without text", {"action": "wake"}, "hook mapping requires text"),
    ("wake with blank text", {"action": "wake", "textTemplate": "{{missing}}"}, "hook mapping requires text"),
]


@pytest.mark.parametrize(
    ("fields", "error"), [c[1:] for c in VALIDATION_CASES], ids=[c[0] for c in VALIDATION_CASES]
)
def test_validation_like_openclaw_validateAction(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(TransformError, match=error):
        Mapper([mapping(**fields)], {}).map(event())


def test_first_matching_mapping_wins_prefers_explicit_mappings_over_presets() -> None:
    # OpenClaw: "prefers explicit mappings over presets"; the relay's preset transform runs last.
    first = mapping(match={"path": "gmail"}, messageTemplate="Override subject: {{messages[0].subject}}")
    second = mapping(match={"path": "gmail"}, messageTemplate="second")
    preset = lambda e: AgentAction(message="from the preset")  # noqa: E731
    [action] = Mapper([first, second], {}).map(event(), preset)
    assert action.message == "Override subject: Hello"
    [action] = Mapper([mapping(match={"path": "other"}, messageTemplate="x")], {}).map(event(), preset)
    assert action.message == "from the preset"
    assert Mapper([], {}).map(event()) == []


def _mapper_with(fn: Any, **fields: Any) -> Mapper:
    ref = TransformRef(module="inline")
    return Mapper(
        [mapping(match={"path": "gmail"}, transform={"module": "inline"}, **fields)], {transform_key(ref): fn}
    )


def test_transform_returning_none_is_a_handled_skip_and_later_mappings_are_not_tried() -> None:
    # OpenClaw: "treats null transform as a handled skip"; the first match owns the request.
    mapper = _mapper_with(lambda e: None, messageTemplate="base")
    mapper.mappings.append(mapping(match={"path": "gmail"}, messageTemplate="later"))
    assert mapper.map(event(), lambda e: AgentAction(message="preset")) == []


def test_transform_dict_merges_over_the_mapping_fields() -> None:
    mapper = _mapper_with(
        lambda e: {"message": "from transform", "sessionKey": None, "model": "m2"},
        messageTemplate="base",
        sessionKey="hook:base",
        model="m1",
        deliver=False,
    )
    [action] = mapper.map(event())
    assert action.body() == {
        "message": "from transform",
        "sessionKey": "hook:base",
        "model": "m2",
        "deliver": False,
        "wakeMode": "now",
    }


def test_runs_transform_module_wake_over_an_agent_mapping() -> None:
    # OpenClaw "runs transform module": an agent mapping whose transform returns a wake.
    mapper = _mapper_with(lambda e: {"kind": "wake", "text": f"Ping {e.payload['name']}"}, sessionKey="k")
    [action] = mapper.map(event(payload={"name": "Ada"}))
    assert isinstance(action, WakeAction) and action.text == "Ping Ada" and action.mode == "now"


def test_transform_may_only_switch_the_mode_to_next_heartbeat_like_openclaw_mergeAction() -> None:
    base = {"kind": "agent", "message": "m", "wakeMode": "next-heartbeat"}
    assert merge(base, {"wakeMode": "now"}).body()["wakeMode"] == "next-heartbeat"
    assert (
        merge({**base, "wakeMode": "now"}, {"wakeMode": "next-heartbeat"}).body()["wakeMode"]
        == "next-heartbeat"
    )
    assert (
        merge({"kind": "wake", "text": "t", "mode": "next-heartbeat"}, {"mode": "now"}).body()["mode"]
        == "next-heartbeat"
    )


def test_transform_returning_action_models_and_a_list_fans_out() -> None:
    mapper = _mapper_with(lambda e: [AgentAction(message="one"), None, WakeAction(text="two")], name="N")
    actions = mapper.map(event())
    assert [a.kind for a in actions] == ["agent", "wake"]
    assert actions[0].body() == {"message": "one", "name": "N", "wakeMode": "now"}


def test_fan_out_is_capped() -> None:
    mapper = _mapper_with(lambda e: [{"message": str(i)} for i in range(MAX_ACTIONS_PER_EVENT + 1)])
    with pytest.raises(TransformError, match=f"at most {MAX_ACTIONS_PER_EVENT}"):
        mapper.map(event())
    assert (
        len(_mapper_with(lambda e: [{"message": "x"}] * MAX_ACTIONS_PER_EVENT).map(event()))
        == MAX_ACTIONS_PER_EVENT
    )


@pytest.mark.parametrize(
    "result",
    [
        42,
        "text",
        {"kind": "agent", "message": "m", "bogus": 1},
        {"kind": "agent", "message": "m", "thinking": "max"},
    ],
)
def test_wrong_type_or_invalid_action_is_a_transform_error(result: Any) -> None:
    with pytest.raises(TransformError):
        _mapper_with(lambda e: result).map(event())


def test_transform_exception_propagates_for_the_ingress_to_park() -> None:
    def boom(e: Event) -> None:
        raise KeyError("pull_request")

    with pytest.raises(KeyError):
        _mapper_with(boom).map(event())


def test_long_message_is_cut_with_a_visible_marker_below_the_gateway_limit() -> None:
    mapper = _mapper_with(lambda e: {"message": "é" * 300_000})
    [action] = mapper.map(event())
    import orjson

    assert len(orjson.dumps(action.body())) < 256 * 1024
    assert "cut by openclaw-relay" in action.message and action.message.startswith("é")
    assert cut_text("short", 100) == "short"
    cut = cut_text("\n" * 1000, 500)  # JSON escapes count: "\n" is 2 bytes on the wire
    assert len(orjson.dumps(cut)) - 2 <= 500


def test_wake_text_is_cut_too() -> None:
    [action] = Mapper([mapping(action="wake", textTemplate="{{t}}")], {}, max_message_bytes=2000).map(
        event(payload={"t": "x" * 5000})
    )
    assert len(action.text) <= 2000 and action.text.endswith("the limit is 2000]")


def test_budget_parks_a_runaway_transform_and_bounds_stuck_threads() -> None:
    budget = TransformBudget(seconds=0.2, max_threads=2)
    mapper = _mapper_with(lambda e: time.sleep(1.5) or {"message": "late"})
    started = time.monotonic()
    for _ in range(2):
        with pytest.raises(TransformError, match="budget"):
            mapper.map_within(budget, event())
    assert budget.stuck == 2
    with pytest.raises(TransformError, match="2 transform threads are stuck"):  # refused at once
        mapper.map_within(budget, event())
    assert time.monotonic() - started < 1.0
    # Templates-only mappings never use a thread, even with every slot stuck.
    assert Mapper([mapping(messageTemplate="x")], {}).map_within(budget, event())[0].message == "x"
    wait_until(lambda: budget.running == 0, timeout=3)  # the stuck threads end with their transforms
    assert budget.running == 0 and budget.stuck == 0


def test_async_budget_does_not_block_the_event_loop() -> None:
    import asyncio

    budget = TransformBudget(seconds=0.1, max_threads=1)
    mapper = _mapper_with(lambda e: time.sleep(0.5))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def main() -> None:
        task = asyncio.create_task(ticker())
        with pytest.raises(TransformError, match="budget"):
            await mapper.amap(budget, event())
        task.cancel()

    asyncio.run(main())
    assert ticks >= 5  # the loop kept running while the transform slept


def test_sys_exit_in_a_transform_is_a_transform_error() -> None:
    import sys

    with pytest.raises(TransformError, match="SystemExit"):
        _mapper_with(lambda e: sys.exit(3)).map_within(TransformBudget(1, 1), event())


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_load_transform_by_dotted_name_or_file_path_with_export(tmp_path: Path) -> None:
    _write(tmp_path / "pkg_t1" / "__init__.py", "")
    _write(
        tmp_path / "pkg_t1" / "multi.py",
        """
        def transform_a(event):
            return {"kind": "wake", "text": "from-A"}
        def transform_b(event):
            return {"kind": "wake", "text": "from-B"}
        def transform(event):
            return None
    """,
    )
    # OpenClaw: "caches transform functions by module path and export name".
    a = load_transform(TransformRef(module="pkg_t1.multi", export="transform_a"), tmp_path)
    b = load_transform(TransformRef(module="pkg_t1/multi.py", export="transform_b"), tmp_path)
    default = load_transform(TransformRef(module="pkg_t1.multi"), tmp_path)
    assert a(event())["text"] == "from-A" and b(event())["text"] == "from-B" and default(event()) is None


@pytest.mark.parametrize(
    ("module", "error"),
    [
        ("no_such_module_xyz", "cannot be imported: ModuleNotFoundError"),
        (
            "../evil.py",
            "must be within",
        ),  # OpenClaw: "rejects transform module traversal outside transformsDir"
        ("/tmp/evil.py", "must be within"),  # noqa: S108 - "rejects absolute transform module path outside"
        ("missing.py", "no such file"),
        ("broken_t2.py", "cannot be imported: SyntaxError"),
        ("raising_t3.py", "cannot be imported: RuntimeError"),
        ("noexport_t4.py", "has no callable 'transform' or 'default'"),
    ],
)
def test_load_transform_fails_fast(tmp_path: Path, module: str, error: str) -> None:
    root = tmp_path / "config"
    _write(root / "broken_t2.py", "def transform(event):\n  return (\n")
    _write(root / "raising_t3.py", "raise RuntimeError('at import')\n")
    _write(root / "noexport_t4.py", "x = 1\n")
    _write(tmp_path / "evil.py", "def transform(event): return None\n")
    with pytest.raises(ConfigError, match=error):
        load_transform(TransformRef(module=module), root)


def test_symlink_escaping_the_config_folder_is_refused(tmp_path: Path) -> None:
    # OpenClaw: "rejects transform module symlink escape outside transformsDir".
    outside = _write(tmp_path / "outside" / "evil.py", "def transform(event): return None\n")
    root = tmp_path / "config"
    root.mkdir()
    (root / "linked.py").symlink_to(outside)
    with pytest.raises(ConfigError, match="must be within"):
        load_transform(TransformRef(module="linked.py"), root)


def test_map_event_helper_with_inline_mappings_and_a_transform_module(tmp_path: Path) -> None:
    _write(
        tmp_path / "ci_t5.py",
        """
        from relay import AgentAction
        def transform(event):
            if event.payload.get("status") != "failed":
                return None
            return AgentAction(message=f"CI failed on {event.payload['branch']}")
    """,
    )
    mappings = [{"match": {"path": "ci"}, "transform": {"module": "ci_t5.py"}, "sessionKey": "hook:ci"}]
    [action] = map_event("ci", {"status": "failed", "branch": "main"}, mappings=mappings, base_dir=tmp_path)
    assert action.body() == {"message": "CI failed on main", "sessionKey": "hook:ci", "wakeMode": "now"}
    assert map_event("ci", b'{"status": "ok"}', mappings=mappings, base_dir=tmp_path) == []


def test_map_event_reads_a_relay_yaml_whose_secrets_are_not_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNSET_SECRET_FOR_TEST", raising=False)
    _write(
        tmp_path / "pr_t6.py",
        """
        def transform(event):
            return {"message": "PR " + str(event.payload["number"])}
    """,
    )
    (tmp_path / "relay.yaml").write_text(
        textwrap.dedent("""
        sources:
          gh: {preset: github, secret: "env:UNSET_SECRET_FOR_TEST"}
        mappings:
          - match: {path: gh}
            transform: {module: pr_t6.py}
            name: "{{headers.x-github-event}}"
    """)
    )
    [action] = map_event(
        "gh", {"number": 5}, {"X-GitHub-Event": "pull_request"}, config=tmp_path / "relay.yaml"
    )
    assert action.body() == {"message": "PR 5", "name": "pull_request", "wakeMode": "now"}
    # The source's preset rules still apply: GitHub's ping is skipped.
    assert map_event("gh", {"zen": "hi"}, {"X-GitHub-Event": "ping"}, config=tmp_path / "relay.yaml") == []
