"""`delay:` on a mapping: the actions go out later, once, unless a `cancel` event comes first."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import orjson
import redis

from relay.store import keys
from tests.conftest import FIXTURES, GENERIC_TOKEN, Relay, wait_until
from tests.mapping_stage import MappingStage

FIRING = orjson.loads((FIXTURES / "alertmanager" / "webhook_v4.firing.json").read_bytes())
RESOLVED = orjson.loads((FIXTURES / "alertmanager" / "webhook_v4.resolved.json").read_bytes())
SOURCES = {"alertmanager": {"preset": "alertmanager", "token": "env:GENERIC_WEBHOOK_TOKEN"}}
MAPPINGS = [
    {
        "match": {"path": "alertmanager", "payload": {"status": "resolved"}},
        "name": "Alerts",
        "messageTemplate": "resolved {{payload.groupLabels.group}}",
        "cancel": {"key": "{{payload.groupKey}}"},
    },
    {
        "match": {"path": "alertmanager"},
        "name": "Alerts",
        "messageTemplate": "still firing {{payload.groupLabels.group}}",
        "sessionKey": "hook:am:{{payload.groupLabels.group}}",
        "delay": {"after": "5s", "key": "{{payload.groupKey}}"},
    },
]


def _post(relay: Relay, template: dict, group: str) -> str:
    payload = orjson.loads(orjson.dumps(template))
    payload["groupKey"] = f'{{}}:{{group="{group}"}}'
    payload["groupLabels"] = {**payload["groupLabels"], "group": group}
    r = relay.post(
        "/hooks/alertmanager",
        orjson.dumps(payload),
        {"Content-Type": "application/json", "Authorization": f"Bearer {GENERIC_TOKEN}"},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["eventId"])


def _events_cli(relay: Relay) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "relay.cli", "events"],
        env=relay.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout


def test_a_delayed_action_fires_once_or_never_when_cancelled(
    relay_factory: Callable[..., Relay], redis_client: redis.Redis
) -> None:
    relay = relay_factory(sources=SOURCES, mappings=MAPPINGS)
    stub = relay.start_stub()
    relay.start_ingress()
    worker = relay.start_worker()
    started = time.monotonic()
    kept = _post(relay, FIRING, "a")
    cancelled = _post(relay, FIRING, "b")
    resolved = _post(relay, RESOLVED, "b")  # within the delay: cancels b's turn, and is sent itself
    # The answers say received; the worker's mapping stage holds and cancels afterwards, in inbox
    # order. The resolved event's `cancelled` count is the last write of its mapping (it settles
    # its cancel after committing its own outcome), so once it is there the rest is done too.
    stage = MappingStage.from_config(redis_client, relay.config_path, relay.env)
    assert stage.mapped(resolved)["state"] == "queued"
    wait_until(lambda: redis_client.hget(keys.event(resolved), "cancelled") is not None, timeout=5)
    assert redis_client.hget(keys.event(kept), "state") == b"delayed"
    assert redis_client.hget(keys.event(cancelled), "state") == b"cancelled"
    assert redis_client.hget(keys.event(resolved), "cancelled") == b"1"
    listing = _events_cli(relay)
    assert f"{kept}" in listing and "delayed: delayed 5 s" in listing
    assert "cancelled: cancelled by" in listing
    worker.kill()  # the delay lives in Redis, not in a worker
    relay.start_worker()
    wait_until(lambda: any(r["body"]["message"] == "still firing a" for r in stub.runs()), timeout=20)
    assert time.monotonic() - started >= 5.0
    wait_until(lambda: len(stub.runs()) >= 2, timeout=30)  # the resolved turn (its job may need re-queueing)
    # Nothing more arrives, well past b's delay too: its cancelled turn would show here.
    time.sleep(max(0.0, 8.0 - (time.monotonic() - started)))
    messages = sorted(r["body"]["message"] for r in stub.runs())
    assert messages == ["resolved b", "still firing a"]
    assert redis_client.hget(keys.event(kept), "state") == b"queued"
    assert redis_client.hget(keys.event(cancelled), "state") == b"cancelled"
    # A cancel after the action went out changes nothing.
    late = _post(relay, RESOLVED, "a")
    assert stage.mapped(late)["state"] == "queued"
    # The router deletes an inbox entry only once its event's mapping settled (its cancel too):
    # a late cancel taking effect would show after this.
    wait_until(lambda: redis_client.xlen(keys.INBOX) == 0, timeout=5)
    assert redis_client.hget(keys.event(kept), "state") == b"queued"
    assert redis_client.hget(keys.STATS, "cancelled_delayed") == b"1"
