"""`batch:` on a mapping: the events of one key within a window become one agent turn, durably."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import redis

from relay.store import keys
from tests.conftest import FIXTURES, GENERIC_TOKEN, Relay, wait_until

FIRING = orjson.loads((FIXTURES / "alertmanager" / "webhook_v4.firing.json").read_bytes())
SOURCES = {"alertmanager": {"preset": "alertmanager", "token": "env:GENERIC_WEBHOOK_TOKEN"}}
ITEM = re.compile(r"^(\d+)\. alert InstanceDown (g\d+)-(\d+)$", re.M)


def _mappings(window: str, most: int) -> list[dict[str, Any]]:
    return [
        {
            "match": {"path": "alertmanager"},
            "name": "Alerts",
            "messageTemplate": (
                "alert {{payload.commonLabels.alertname}} {{payload.alerts[0].labels.instance}}"
            ),
            "sessionKey": "hook:am:{{payload.groupKey}}",
            "batch": {"key": "{{payload.groupKey}}", "window": window, "max": most},
        }
    ]


def _alert(group: int, n: int) -> bytes:
    payload = orjson.loads(orjson.dumps(FIRING))
    payload["groupKey"] = f'{{}}:{{alertname="InstanceDown", group="g{group}"}}'
    alert = payload["alerts"][0]
    alert["labels"] = {**alert["labels"], "instance": f"g{group}-{n}"}
    alert["fingerprint"] = f"fp-{group}-{n}"
    payload["alerts"] = [alert]
    return orjson.dumps(payload)


def _post_all(relay: Relay, bodies: list[bytes]) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {GENERIC_TOKEN}"}
    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(16) as pool:

        def post(body: bytes) -> int:
            return client.post(f"{relay.url}/hooks/alertmanager", content=body, headers=headers).status_code

        statuses = list(pool.map(post, bodies))
    assert set(statuses) <= {200, 202}, Counter(statuses)


def _items(run: dict[str, Any]) -> list[tuple[int, str, int]]:
    return [(int(i), g, int(n)) for i, g, n in ITEM.findall(run["body"]["message"])]


def _run_batches(
    relay_factory: Callable[..., Relay], redis_client: redis.Redis, groups: int, per_group: int, window: float
) -> tuple[dict[str, list[int]], Counter[str], set[str]]:
    """Post the alerts, killing the worker mid-window; each turn's alert numbers by group, the
    recorded events' states, and the turns' idempotency keys."""
    relay = relay_factory(sources=SOURCES, mappings=_mappings(f"{window}s", 1000))
    stub = relay.start_stub()
    relay.start_ingress()
    worker = relay.start_worker()
    bodies = [_alert(g, n) for n in range(per_group) for g in range(groups)]
    started = time.monotonic()
    half = len(bodies) // 2
    _post_all(relay, bodies[:half])
    worker.kill()  # SIGKILL mid-window: the held events are in Redis, not in the worker
    _post_all(relay, bodies[half:])
    assert time.monotonic() - started < window, "the events must arrive within one window"
    assert stub.runs() == []  # nothing is sent before the window closes
    relay.start_worker()
    runs = wait_until(
        lambda: (lambda rs: rs if len(rs) >= groups else None)(stub.runs()), timeout=window + 20
    )
    time.sleep(1.5)  # nothing more arrives: a late duplicate would show here
    runs = stub.runs()
    assert len(runs) == groups
    seen: dict[str, list[int]] = {}
    for run in runs:
        items = _items(run)
        assert items, run["body"]["message"][:1500]
        assert [i for i, _, _ in items] == list(range(1, per_group + 1))
        (group,) = {g for _, g, _ in items}
        assert group not in seen
        seen[group] = sorted(n for _, _, n in items)
        assert run["body"]["message"].startswith(f"{per_group} events for ")
        assert run["body"]["sessionKey"].startswith("hook:am:")
        assert run["body"]["name"] == "Alerts"
    states: Counter[str] = Counter()
    for eid in redis_client.zrange(keys.EVENTS, 0, -1):
        states[(redis_client.hget(keys.event(eid.decode()), "state") or b"").decode()] += 1
    return seen, states, {r["key"] for r in runs}


def test_a_thousand_alerts_in_ten_groups_give_ten_turns_despite_a_killed_worker(
    relay_factory: Callable[..., Relay], redis_client: redis.Redis
) -> None:
    groups, per_group = 10, 100
    seen, states, turn_keys = _run_batches(relay_factory, redis_client, groups, per_group, window=12)
    assert seen == {f"g{g}": list(range(per_group)) for g in range(groups)}
    # Every alert is recorded as `batched`; each batch is an event of its own, queued once.
    assert states == {"batched": groups * per_group, "queued": groups}
    assert len(turn_keys) == groups


def test_max_flushes_a_batch_early(relay_factory: Callable[..., Relay], redis_client: redis.Redis) -> None:
    relay = relay_factory(sources=SOURCES, mappings=_mappings("60s", 5))
    stub = relay.start_stub()
    relay.start_ingress()
    relay.start_worker()
    _post_all(relay, [_alert(0, n) for n in range(12)])
    # 60 s window: only `max` flushes. Ten alerts go in two full batches; two wait for the window.
    runs = wait_until(lambda: (lambda rs: rs if len(rs) >= 2 else None)(stub.runs()), timeout=15)
    time.sleep(1.0)  # nothing more arrives: a batch flushed before `max` or the window would show here
    runs = stub.runs()
    sizes = [len(_items(r)) for r in runs]
    assert all(size <= 5 for size in sizes) and sum(sizes) >= 10, sizes
    held = [
        eid
        for eid in redis_client.zrange(keys.EVENTS, 0, -1)
        if redis_client.hget(keys.event(eid.decode()), "state") == b"held"
    ]
    assert len(held) == 12 - sum(sizes) < 5
    numbers = sorted(n for r in runs for _, _, n in _items(r))
    assert len(numbers) == len(set(numbers))


def test_racing_routers_flush_a_window_once(redis_server: Any, redis_client: redis.Redis) -> None:
    """Eight routers flush the same closed windows at once: each batch is recorded and queued once."""
    import threading

    from relay import hold
    from relay.config import Settings
    from relay.hold import batching
    from relay.hold import windows as held
    from relay.protocol.actions import AgentAction
    from relay.protocol.mapping import BatchConfig, Hold
    from relay.store.events import encode_actions, record_event

    settings = Settings.model_validate({"redis_url": redis_server.url})
    for g in range(3):
        for n in range(4):
            did = f"d{g}-{n}"
            rec = record_event(
                redis_client,
                source="src",
                delivery_id=did,
                headers={},
                body=b"{}",
                actions=encode_actions("src", did, [AgentAction(message=f"m{g}-{n}")]),
                action_count=0,
                dedupe_ttl=60,
                event_ttl=60,
            )

            gate = Hold("batch", f"src:k{g}", BatchConfig(key="k", window=0.05, max=50))
            batching.offer(redis_client, gate, rec.event_id, 60)
    wait_until(lambda: len(held.due(redis_client, time.time())) == 3, timeout=5)  # every window closed
    flushed: list[str] = []
    barrier = threading.Barrier(8)

    def router() -> None:
        conn = redis.Redis.from_url(redis_server.url)
        barrier.wait()
        flushed.extend(hold.flush_due(conn, settings))

    threads = [threading.Thread(target=router) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(flushed) == 3
    assert redis_client.xlen(keys.INBOX) == 3
    assert redis_client.zcard(held.DUE) == 0
    messages = sorted(
        orjson.loads(redis_client.hget(keys.event(e), "actions"))[0]["body"]["message"] for e in flushed
    )
    assert [m.splitlines()[0] for m in messages] == [
        f"4 events for k{g} (batched over 0.05 s):" for g in range(3)
    ]
