"""What a newcomer reads: `relay replay --dry-run` without secrets, held events answered as received
and recorded as held (not as actions under way),
a stale signed timestamp explained, OpenClaw's `forEach` refused with what to do instead.

Real processes, a real Redis and real HTTP over loopback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis
import yaml

from relay.store import keys
from tests.conftest import GENERIC_TOKEN, Relay, dump

SW_SECRET = "whsec_" + base64.b64encode(b"readable-answers-secret").decode()
AUTH = {"Authorization": f"Bearer {GENERIC_TOKEN}", "Content-Type": "application/json"}
CRASHING = "def transform(event):\n    return {'message': 'ok ' + str(1 // event.payload['zero'])}\n"
FIXED = "def transform(event):\n    return {'message': 'fixed: run ' + str(event.payload['run'])}\n"
SECRETS = ("OPENCLAW_HOOKS_TOKEN", "GENERIC_WEBHOOK_TOKEN", "SW_WEBHOOK_SECRET")


def cli(relay: Relay, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args],
        env=env or relay.env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=relay.tmp,
    )


def sw_headers(body: bytes, ts: int) -> dict[str, str]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    key = base64.b64decode(SW_SECRET.removeprefix("whsec_"))
    mac = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": f"v1,{mac}",
    }


def test_replay_dry_run_needs_no_secret_and_changes_nothing(
    relay_factory: Any, redis_client: redis.Redis
) -> None:
    relay: Relay = relay_factory(
        sources={
            "generic": {"preset": "generic", "token": "env:GENERIC_WEBHOOK_TOKEN"},
            "sw": {"preset": "standard-webhooks", "secret": "env:SW_WEBHOOK_SECRET"},
        },
        mappings=[
            {
                "match": {"path": "generic"},
                "transform": {"module": "crashy.py"},
                "sessionKey": "hook:ci:{{run}}",
            }
        ],
    )
    relay.env["SW_WEBHOOK_SECRET"] = SW_SECRET
    (relay.tmp / "crashy.py").write_text(CRASHING)
    relay.start_ingress()
    answer = relay.post("/hooks/generic", dump({"run": 7, "zero": 0}), {**AUTH, "Idempotency-Key": "run-7"})
    assert answer.status_code == 202 and answer.json()["state"] == "received"
    assert relay.outcome(answer)["parked"] is True  # parked by the mapping stage, after the answer
    event_id = answer.json()["eventId"]
    before = redis_client.hgetall(keys.event(event_id))
    bare = {k: v for k, v in relay.env.items() if k not in SECRETS}  # a second terminal: nothing exported

    broken = cli(relay, "replay", "--dry-run", event_id, env=bare)
    assert broken.returncode == 1, broken.stderr
    assert f"{event_id}  would stay parked" in broken.stdout and "ZeroDivisionError" in broken.stderr

    (relay.tmp / "crashy.py").write_text(FIXED)
    shown = cli(relay, "replay", "--dry-run", event_id, env=bare)
    assert shown.returncode == 0, shown.stderr
    assert f"{event_id}  would queue  1 action(s)" in shown.stdout
    assert "POST /hooks/agent" in shown.stdout and '"message": "fixed: run 7"' in shown.stdout
    assert '"sessionKey": "hook:ci:7"' in shown.stdout
    parked = cli(relay, "replay", "--dry-run", "--parked", "--json", env=bare)
    assert parked.returncode == 0, parked.stderr
    assert json.loads(parked.stdout) == {
        "eventId": event_id,
        "state": "queued",
        "actions": 1,
        "detail": "",
        "dryRun": True,
        "planned": [
            {
                "kind": "agent",
                "body": {"message": "fixed: run 7", "sessionKey": "hook:ci:7", "wakeMode": "now"},
            }
        ],
    }

    # Nothing changed: the event is still parked, unreplayed, and nothing reached the inbox.
    assert redis_client.hgetall(keys.event(event_id)) == before
    assert redis_client.zscore(keys.PARKED, event_id) is not None
    assert redis_client.xlen(keys.INBOX) == 0
    # The real replay queues it (the worker, not the replay, needs the gateway token).
    done = cli(relay, "replay", event_id, env=bare)
    assert done.returncode == 0, done.stderr
    assert redis_client.xlen(keys.INBOX) == 1 and redis_client.zscore(keys.PARKED, event_id) is None


def test_held_events_are_answered_received_and_recorded_held_with_no_action(
    relay_factory: Any, redis_client: redis.Redis
) -> None:
    generic = {"preset": "generic", "token": "env:GENERIC_WEBHOOK_TOKEN"}
    relay: Relay = relay_factory(
        sources={name: generic for name in ("now", "batchy", "cool", "later")},
        mappings=[
            {"match": {"path": "now"}, "messageTemplate": "now {{n}}"},
            {
                "match": {"path": "batchy"},
                "messageTemplate": "b {{n}}",
                "batch": {"key": "k", "window": "1h"},
            },
            {
                "match": {"path": "cool"},
                "messageTemplate": "c {{n}}",
                "cooldown": {"key": "k", "window": "1h", "mode": "last"},
            },
            {"match": {"path": "later"}, "messageTemplate": "l {{n}}", "delay": "1h"},
        ],
    )
    relay.start_ingress()

    def post(path: str, n: int) -> dict[str, Any]:
        """The answer, which says received for every event, and then its mapped outcome."""
        r = relay.post(f"/hooks/{path}", dump({"n": n}), {**AUTH, "Idempotency-Key": f"{path}-{n}"})
        assert r.status_code == 202, r.text
        assert r.json() == {"ok": True, "eventId": r.json()["eventId"], "state": "received"}, r.text
        return relay.outcome(r)

    sent = post("now", 1)
    assert sent["actions"] == 1 and "held" not in sent
    assert redis_client.hget(keys.event(sent["eventId"]), "state") == b"queued"
    for path, held, state in (
        ("batchy", "batch", b"held"),
        ("cool", "cooldown", b"held"),
        ("later", "delay", b"delayed"),
    ):
        for n in (1, 2):
            outcome = post(path, n)
            assert outcome["actions"] == 0 and outcome["held"] == held, outcome
            record = redis_client.hmget(keys.event(outcome["eventId"]), "state", "action_count")
            assert record == [state, b"0"], (path, n)
    # Only the event that was not held has an action under way (routed, waiting for a worker).
    [routed] = redis_client.zrange(keys.PENDING, 0, -1)
    assert redis_client.hget(keys.action(routed.decode()), "event_id") == sent["eventId"].encode()


def test_a_stale_timestamp_says_how_old_it_is_and_what_allows_it(relay_factory: Any) -> None:
    relay: Relay = relay_factory(
        sources={"sw": {"preset": "standard-webhooks", "secret": "env:SW_WEBHOOK_SECRET"}}
    )
    relay.env["SW_WEBHOOK_SECRET"] = SW_SECRET
    relay.start_ingress()
    body = b'{"type": "user.created", "data": {"id": "u1"}}'
    stale = relay.post("/hooks/sw", body, sw_headers(body, int(time.time()) - 3600))
    assert stale.status_code == 401
    error = stale.json()["error"]
    assert (
        error.startswith("the webhook-timestamp header is 36")
        and " s old; the relay accepts at most 300 s" in error
    )
    assert "tolerance_seconds" in error and "replayed request, or a clock out of sync" in error
    ahead = relay.post("/hooks/sw", body, sw_headers(body, int(time.time()) + 3600))
    assert ahead.status_code == 401 and "s in the future" in ahead.json()["error"]
    assert relay.post("/hooks/sw", body, sw_headers(body, int(time.time()))).status_code == 202


def test_for_each_is_refused_with_what_to_do_instead(relay_factory: Any, tmp_path: Path) -> None:
    relay: Relay = relay_factory(
        mappings=[
            {"match": {"path": "generic"}, "forEach": "{{payload.items}}", "messageTemplate": "{{item.name}}"}
        ]
    )
    checked = cli(relay, "check", "--offline")
    assert checked.returncode == 2
    assert "mappings.0: forEach is not supported by the relay: remove it;" in checked.stderr
    assert "a transform that returns a list" in checked.stderr and "Extra inputs" not in checked.stderr

    openclaw = tmp_path / "openclaw.json"
    mapping = {"match": {"path": "ci"}, "forEach": "{{payload.items}}", "messageTemplate": "{{item.name}}"}
    openclaw.write_text(json.dumps({"hooks": {"enabled": True, "token": "t", "mappings": [mapping]}}))
    out = tmp_path / "imported" / "relay.yaml"
    imported = cli(relay, "import-openclaw", str(openclaw), "-o", str(out))
    assert imported.returncode == 0, imported.stderr
    text = out.read_text()
    assert "hooks.mappings[0].forEach is not supported by the relay; dropped: to fan out" in text
    assert "forEach" not in json.dumps(yaml.safe_load(text)["mappings"])
    assert cli(relay, "--config", str(out), "check", "--offline").returncode == 0
