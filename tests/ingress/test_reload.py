"""Reload without a restart (relay.reload): `relay reload` and SIGHUP, under a steady stream."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import httpx
import orjson
import redis

from relay.reload import STATUS
from relay.store import keys
from tests.cli.test_operations import relay_cli
from tests.conftest import GENERIC_TOKEN, Relay, wait_until

TRANSFORM = """
from relay import AgentAction


def transform(event):
    return AgentAction(message="{tag}: " + str(event.payload.get("n")))
"""


def write_transform(relay: Relay, tag: str) -> None:
    (relay.tmp / "shape.py").write_text(TRANSFORM.format(tag=tag))


def make(relay_factory) -> Relay:  # type: ignore[no-untyped-def]
    relay: Relay = relay_factory(mappings=[{"match": {"path": "generic"}, "transform": {"module": "shape"}}])
    write_transform(relay, "v1")
    relay.start_stub()
    relay.start_ingress()
    relay.start_worker()
    return relay


def mapped(redis_client: redis.Redis, event_id: str) -> str:
    """The message of the event's first action ('' for none), once the worker has mapped it: the
    mapping stage runs the transforms, after the ingress has answered."""

    def actions() -> list[bytes | None] | None:
        state, raw = redis_client.hmget(keys.event(event_id), "state", "actions")
        return [raw] if state not in (None, b"received") else None

    [raw] = wait_until(actions, timeout=15)
    found = orjson.loads(raw or b"[]")
    return str(found[0]["body"]["message"]) if found else ""


class Stream:
    """A steady stream of webhooks from a thread: (status, event id) of each, in order."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.results: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        with httpx.Client(base_url=self.relay.url, timeout=10) as client:
            n = 0
            while not self.stop.is_set() and n < 3000:  # bounded
                answer = client.post(
                    "/hooks/generic",
                    content=json.dumps({"n": n}).encode(),
                    headers={"Authorization": f"Bearer {GENERIC_TOKEN}", "Content-Type": "application/json"},
                )
                self.results.append((answer.status_code, answer.json().get("eventId", "")))
                n += 1

    def __enter__(self) -> Stream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_a_reload_under_load_changes_the_mapping_and_refuses_no_request(
    relay_factory, redis_client: redis.Redis
) -> None:
    relay = make(relay_factory)
    with Stream(relay) as stream:
        wait_until(lambda: len(stream.results) >= 30, timeout=30)
        # Both processes have reported in (a worker still starting up would load the new config
        # anyway, but would be missing from the report).
        wait_until(
            lambda: {k.split(b":")[0] for k in redis_client.hkeys(STATUS)} >= {b"ingress", b"worker"},
            timeout=30,
        )
        write_transform(relay, "v2")
        done = relay_cli(relay, "reload")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ingress:" in done.stdout and "worker:" in done.stdout and "refused" not in done.stdout
        reloaded_at = len(stream.results)
        wait_until(lambda: len(stream.results) >= reloaded_at + 30, timeout=30)
    statuses = [status for status, _ in stream.results]
    assert statuses and all(200 <= s < 300 for s in statuses), sorted(set(statuses))
    tags = [mapped(redis_client, eid).split(":")[0] for _, eid in stream.results]
    assert tags[0] == "v1" and all(t == "v2" for t in tags[reloaded_at:])
    switch = tags.index("v2")
    assert set(tags[:switch]) == {"v1"} and set(tags[switch:]) == {"v2"}  # one switch, no mixing back
    wait_until(lambda: any(r["body"]["message"].startswith("v2:") for r in relay.stub.runs()), timeout=30)


def test_an_invalid_config_is_refused_with_the_check_error_and_the_running_one_stays(
    relay_factory, redis_client: redis.Redis
) -> None:
    relay = make(relay_factory)
    # Both processes run with the valid config (and have installed their SIGHUP handler) once
    # they report in.
    wait_until(
        lambda: {k.split(b":")[0] for k in redis_client.hkeys(STATUS)} >= {b"ingress", b"worker"},
        timeout=30,
    )
    (relay.tmp / "shape.py").write_text("def transform(event:\n")  # a syntax error
    check = relay_cli(relay, "check", "--offline")
    done = relay_cli(relay, "reload")
    assert done.returncode == 2 and check.returncode == 2
    assert done.stderr == check.stderr and "mappings.0.transform" in done.stderr
    # SIGHUP with the same broken file: refused there too, and each process keeps its config. The
    # ingress keeps serving; the worker, which runs the transforms (the mapping stage), keeps
    # mapping with the running one.
    processes = [next(p for p in relay.procs if p.args[0] == kind) for kind in ("serve", "worker")]
    for process in processes:
        process.proc.send_signal(signal.SIGHUP)
    for process in processes:
        wait_until(lambda p=process: "reload refused, running config kept" in p.output(), timeout=15)
    answer = relay.post("/hooks/generic", b'{"n": 7}', {"Authorization": f"Bearer {GENERIC_TOKEN}"})
    assert answer.status_code == 202 and mapped(redis_client, answer.json()["eventId"]) == "v1: 7"
    # Fixed: SIGHUP alone switches each process.
    write_transform(relay, "v3")
    for process in processes:
        process.proc.send_signal(signal.SIGHUP)
    for process in processes:
        wait_until(lambda p=process: "config reloaded" in p.output(), timeout=15)
    answer = relay.post("/hooks/generic", b'{"n": 8}', {"Authorization": f"Bearer {GENERIC_TOKEN}"})
    assert mapped(redis_client, answer.json()["eventId"]) == "v3: 8"


def test_transforms_are_imported_afresh(tmp_path: Path) -> None:
    from relay.config import load_settings
    from relay.reload import load_checked

    (tmp_path / "relay.yaml").write_text(
        "sources: {generic: {preset: generic, token: t}}\n"
        "mappings: [{match: {path: generic}, transform: {module: fresh_mod}}]\n"
    )
    (tmp_path / "fresh_mod.py").write_text("def transform(event):\n    return None\n")
    settings = load_settings(tmp_path / "relay.yaml")
    load_checked(settings)
    (tmp_path / "fresh_mod.py").write_text("raise RuntimeError('boom at import')\n")
    try:
        load_checked(settings)
    except Exception as exc:
        assert "boom at import" in str(exc) and "mappings.0.transform" in str(exc)
    else:
        raise AssertionError("the changed module was not imported again")
