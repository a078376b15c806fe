"""Warm shutdown: a worker stopped with SIGTERM finishes or hands back everything it holds.

A rolling restart must never strand an action: not in RQ's intermediate queue (RQ's own cleanup
would find it only after a minute), and not as an inbox entry read but not routed (another router
claims those only after `claim_idle_ms`, 30 s). So after the restart every action is delivered
within the time it takes to deliver, far below either recovery time.
"""

from __future__ import annotations

import signal
import threading

import pytest
from rq import Queue, Worker
from rq.worker import WorkerStatus

from relay.client import RelayClient
from relay.store import keys
from relay.worker.process import RelayWorker
from tests.conftest import wait_until

# Far below RQ's intermediate-queue cleanup (60 s) and the router's claim of abandoned entries
# (30 s): reaching it means nothing waited for either.
DELIVERED_WITHIN = 15.0
QUEUE = "relay"  # the default `queue` of the test deployments
INTERMEDIATE = f"rq:queue:{QUEUE}:intermediate"  # RQ's list between a dequeue and a job's start


def test_a_stop_signal_on_an_idle_worker_only_flags_the_stop(redis_server, redis_client) -> None:
    # RQ's own handler raises StopRequested from inside whatever the main thread is doing when the
    # worker looks idle, which is usually a blocking dequeue that may have just moved a job.
    worker = RelayWorker([Queue(QUEUE, connection=redis_client)], connection=redis_client)
    worker.set_state(WorkerStatus.IDLE)
    worker.request_stop(signal.SIGTERM, None)
    assert worker._stop_requested


def test_rolling_sigterm_under_a_steady_stream_strands_nothing(
    relay_factory, redis_server, redis_client
) -> None:
    relay = relay_factory()
    stub = relay.start_stub()
    workers = [relay.start_worker(), relay.start_worker()]
    client = RelayClient(redis_server.url)
    sent: list[str] = []
    done = threading.Event()

    def feed() -> None:  # about 50 actions a second, bounded
        for i in range(600):
            if done.wait(0.02):
                return
            sent.append(client.agent(message=f"stream {i}"))

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        for restart in range(4):
            wait_until(lambda: len(Worker.all(connection=redis_client)) == 2, timeout=30, interval=0.1)
            slot = restart % 2
            workers[slot].stop()  # SIGTERM: a warm shutdown
            assert workers[slot].proc.returncode == 0, workers[slot].output()[-2000:]
            workers[slot] = relay.start_worker()
    finally:
        done.set()
        feeder.join()

    def states() -> dict[str, str]:
        return {a: (redis_client.hget(keys.action(a), "state") or b"?").decode() for a in sent}

    try:
        wait_until(lambda: set(states().values()) == {"delivered"}, timeout=DELIVERED_WITHIN, interval=0.2)
    except AssertionError:
        stuck = {a: s for a, s in states().items() if s != "delivered"}
        pytest.fail(
            f"{len(stuck)} of {len(sent)} actions not delivered: {dict(list(stuck.items())[:5])}; "
            f"intermediate queue {redis_client.lrange(INTERMEDIATE, 0, -1)}, "
            f"inbox pending {redis_client.xpending(keys.INBOX, keys.ROUTERS)['pending']}"
        )
    assert redis_client.xpending(keys.INBOX, keys.ROUTERS)["pending"] == 0
    assert redis_client.llen(INTERMEDIATE) == 0
    keys_seen = sorted(r["key"] for r in stub.runs())
    assert keys_seen == sorted(sent)  # each delivered exactly once
