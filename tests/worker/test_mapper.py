"""The mapping stage (`relay.worker.mapper`) at its edges: the lease fences a mapper that lost it,
and a hold cut short by a crash between the commit and its placement is placed on recovery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import redis

from relay.store import keys
from relay.worker.dispatch import ensure_group
from relay.worker.mapper import LeaseLost
from tests.conftest import FIXTURES, GENERIC_TOKEN, Relay
from tests.mapping_stage import MappingStage

FIRING = (FIXTURES / "alertmanager" / "webhook_v4.firing.json").read_bytes()
SOURCES = {"alertmanager": {"preset": "alertmanager", "token": "env:GENERIC_WEBHOOK_TOKEN"}}
BATCHED = [
    {
        "match": {"path": "alertmanager"},
        "messageTemplate": "alert {{payload.commonLabels.alertname}}",
        "batch": {"key": "{{payload.groupKey}}", "window": "1h", "max": 100},
    }
]


def _post(relay: Relay, fingerprint: str) -> str:
    payload: dict[str, Any] = orjson.loads(FIRING)
    payload["alerts"][0]["fingerprint"] = fingerprint
    answer = httpx.post(
        f"{relay.url}/hooks/alertmanager",
        content=orjson.dumps(payload),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {GENERIC_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 202 and answer.json()["state"] == "received", answer.text
    return str(answer.json()["eventId"])


def _stage(relay: Relay, name: str) -> MappingStage:
    stage = MappingStage.from_config(redis.Redis.from_url(relay.redis_url), relay.config_path, relay.env)
    stage.router.consumer = stage.router.mapper.holder = name
    return stage


def test_a_mapper_that_lost_the_lease_commits_nothing(
    relay_factory: Callable[..., Relay], redis_client: redis.Redis
) -> None:
    relay = relay_factory(sources=SOURCES)
    relay.start_ingress()
    event_id = _post(relay, "fp-lease")
    first, second = _stage(relay, "first"), _stage(relay, "second")
    assert first.router.mapper.lead() == 2
    assert second.router.mapper.lead() == 0  # one mapper at a time
    redis_client.set(keys.MAPPER, "second")  # the lease changed hands (first stalled past it)
    with pytest.raises(LeaseLost):
        first.router.mapper.map_received([event_id])
    assert redis_client.hget(keys.event(event_id), "state") == b"received"  # nothing committed
    assert second.mapped(event_id)["state"] == "queued"


def test_a_hold_cut_short_by_a_crash_is_placed_by_the_next_holder(
    relay_factory: Callable[..., Relay], redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = relay_factory(sources=SOURCES, mappings=BATCHED)
    relay.start_ingress()
    event_id = _post(relay, "fp-crash")
    crashed = _stage(relay, "crashed")
    ensure_group(redis_client)
    from relay import hold

    def die(self: Any, *args: Any) -> None:
        raise SystemExit("killed between the commit and the hold")

    with monkeypatch.context() as patched:
        patched.setattr(hold.Admission, "settle", die)
        with pytest.raises(SystemExit):
            crashed.router.step(0)
    assert redis_client.hget(keys.event(event_id), "state") == b"held"  # committed
    assert not redis_client.hget(keys.event(event_id), "reason")  # but its hold never placed
    assert redis_client.xpending(keys.INBOX, keys.ROUTERS)["pending"] == 1

    redis_client.delete(keys.MAPPER)  # the lease lapsed (the crashed router is gone)
    _stage(relay, "next").router.step(0)
    assert "batch" in redis_client.hget(keys.event(event_id), "reason").decode()
    held = [k for k in redis_client.scan_iter(f"{keys.BATCH_HELD}*")]
    assert held and redis_client.zscore(held[0], event_id) is not None  # waits in its window
    assert redis_client.xpending(keys.INBOX, keys.ROUTERS)["pending"] == 0
