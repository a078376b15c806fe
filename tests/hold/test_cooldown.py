"""Cooldown per entity across two ingress processes sharing one Redis, and skips visible in the log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import redis

from relay.store import keys
from tests.conftest import Relay, github_fixture, wait_until

MAPPINGS = [
    {
        "match": {"path": "github"},
        "name": "PR",
        "messageTemplate": "PR {{payload.pull_request.number}} push {{headers.x-github-delivery}}",
        "sessionKey": "hook:pr:{{payload.pull_request.number}}",
        "cooldown": {
            "key": "{{payload.repository.full_name}}#{{payload.pull_request.number}}",
            "window": "30s",
            "mode": "drop",
        },
    },
    {
        "match": {"path": "github-last"},
        "name": "PR",
        "messageTemplate": "PR {{payload.pull_request.number}} push {{headers.x-github-delivery}}",
        "sessionKey": "hook:pr-last:{{payload.pull_request.number}}",
        "cooldown": {
            "key": "{{payload.repository.full_name}}#{{payload.pull_request.number}}",
            "window": "5s",
            "mode": "last",
        },
    },
]
SOURCES = {"github-last": {"preset": "github", "secret": "env:GITHUB_WEBHOOK_SECRET"}}


def _post(relay: Relay, path: str, delivery: str, body: bytes, event: str) -> Any:
    from tests.conftest import sign

    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body),
    }
    return relay.post(path, body, headers)


def _event_states(client: redis.Redis, source: str) -> list[tuple[str, str, str]]:
    out = []
    for eid in client.zrange(keys.EVENTS, 0, -1):
        rec = {
            k.decode(): v.decode()
            for k, v in client.hgetall(keys.event(eid.decode())).items()
            if k != b"body"
        }
        if rec.get("source") == source:
            out.append((rec["delivery_id"], rec["state"], rec.get("reason", "")))
    return sorted(out)


def test_ten_pushes_to_one_pr_give_one_turn_across_two_ingresses(
    relay_factory: Callable[..., Relay], redis_client: redis.Redis
) -> None:
    overrides = {"sources": SOURCES, "mappings": MAPPINGS}
    a = relay_factory(**overrides)
    b = relay_factory(**overrides)  # a second ingress process on the same Redis
    stub = a.start_stub()
    a.start_ingress()
    b.start_ingress()
    a.start_worker()
    sync = github_fixture("pull_request.synchronize")
    for i in range(10):
        for path in ("/hooks/github", "/hooks/github-last"):
            r = _post((a, b)[i % 2], path, f"sync-{path[-4:]}-{i}", sync, "pull_request")
            assert r.status_code in (200, 202), r.text
    # drop: the first push of the window; last: the latest, once the window closed.
    # The `last` window (5 s) must outlast the 20 posts even on a busy machine, and closes after.
    runs = wait_until(lambda: (lambda rs: rs if len(rs) >= 2 else None)(stub.runs()), timeout=20)
    time.sleep(1.0)  # nothing more arrives: a third turn would show here
    runs = stub.runs()
    messages = sorted(r["body"]["message"] for r in runs)
    number = orjson.loads(sync)["pull_request"]["number"]
    assert messages == [f"PR {number} push sync-last-9", f"PR {number} push sync-thub-0"]
    dropped = _event_states(redis_client, "github")
    assert [s for _, s, _ in dropped].count("skipped") == 9
    assert all("(mode drop)" in reason for _, s, reason in dropped if s == "skipped")
    held = _event_states(redis_client, "github-last")
    assert sorted(s for _, s, _ in held) == ["queued"] + ["skipped"] * 9
    assert all(reason.startswith("cooldown") for _, _, reason in held)
    assert redis_client.hget(keys.STATS, "skipped_cooldown") == b"9"
    # A bot's comment is recorded, skipped, with its reason (what `relay events` shows).
    comment = orjson.loads(github_fixture("issue_comment.created"))
    comment["sender"] = {**comment["sender"], "login": "dependabot[bot]", "type": "Bot"}
    r = _post(b, "/hooks/github", "bot-1", orjson.dumps(comment), "issue_comment")
    # The answer only says it was received; the mapping stage skips it afterwards.
    assert r.status_code == 202 and r.json()["state"] == "received"
    assert "is a bot" in b.outcome(r)["skipped"]
    reason = redis_client.hget(keys.event(r.json()["eventId"]), "reason")
    assert reason is not None and b"feedback-loop guard" in reason
    assert redis_client.hget(keys.STATS, "skipped_bot") == b"1"
    assert len(stub.runs()) == 2
