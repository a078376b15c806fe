"""Warm shutdown: a worker stopped with SIGTERM finishes or hands back everything it holds.

A rolling restart must never strand an action: not in RQ's intermediate queue (RQ's own cleanup
would find it only after a minute), and not as an inbox entry read but not routed (another router
claims those only after `claim_idle_ms`, 30 s). So after the restart every action is delivered
within the time it takes to deliver, far below either recovery time.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
import redis
from rq import Queue, Worker
from rq.worker import WorkerStatus

from relay.client import RelayClient
from relay.store import keys
from relay.worker.process import PUBSUB_ROUND_SECONDS, RelayWorker
from tests.conftest import RedisServer, Relay, wait_until

# Far below RQ's intermediate-queue cleanup (60 s) and the router's claim of abandoned entries
# (30 s): reaching it means nothing waited for either.
DELIVERED_WITHIN = 15.0
QUEUE = "relay"  # the default `queue` of the test deployments
INTERMEDIATE = f"rq:queue:{QUEUE}:intermediate"  # RQ's list between a dequeue and a job's start


def test_a_stop_signal_only_flags_the_stop_and_the_main_loop_records_it(redis_server, redis_client) -> None:
    # RQ's own handler writes to Redis and logs from inside whatever the main thread was doing:
    # inside redis-py's pool lock that deadlocks the worker; inside a blocking dequeue that may have
    # just moved a job, its StopRequested strands the job. The handler must only set flags.
    worker = RelayWorker([Queue(QUEUE, connection=redis_client)], connection=redis_client)
    worker.register_birth()
    worker.set_state(WorkerStatus.IDLE)
    pool = worker.connection.connection_pool
    get_connection = pool.get_connection

    def no_redis(*args: object, **kwargs: object) -> None:
        pytest.fail("the signal handler touched Redis")

    pool.get_connection = no_redis  # type: ignore[method-assign]
    try:
        worker.request_stop(signal.SIGTERM, None)
    finally:
        pool.get_connection = get_connection  # type: ignore[method-assign]
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert worker._stop_requested
    assert redis_client.hget(worker.key, "shutdown_requested_date") is None
    worker.check_for_suspension(burst=False)  # the work loop's next round announces the stop
    assert redis_client.hget(worker.key, "shutdown_requested_date") is not None


def test_a_sigterm_right_after_registration_is_a_warm_stop(redis_server, redis_client) -> None:
    # RQ registers the worker before it installs its handlers; a rolling restart that stops a
    # worker as soon as it is listed must not kill it (SIGTERM's default action).
    worker = RelayWorker([Queue(QUEUE, connection=redis_client)], connection=redis_client)
    register_birth = worker.register_birth
    previous = signal.getsignal(signal.SIGTERM)

    def birth_then_sigterm(*args: object, **kwargs: object) -> None:
        register_birth(*args, **kwargs)
        signal.raise_signal(signal.SIGTERM)  # default action here: this test process would die

    worker.register_birth = birth_then_sigterm  # type: ignore[method-assign]
    try:
        started = time.monotonic()
        worker.work(burst=False, with_scheduler=False)
        assert time.monotonic() - started < 15  # stopped at its first round, not by a timeout
        assert worker._stop_requested
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_teardown_does_not_wait_out_rqs_command_listener(redis_server, redis_client) -> None:
    # The listener thread waits for a subscription in rounds; once the channel is unsubscribed it
    # sits out a whole round, and redis-py's stop() joins it. RQ's rounds last 60 s.
    worker = RelayWorker([Queue(QUEUE, connection=redis_client)], connection=redis_client)
    worker.subscribe()
    wait_until(lambda: worker.pubsub.subscribed, timeout=5, interval=0.05)
    worker.pubsub.unsubscribe()  # what RQ's unsubscribe() does first; the thread now waits a round
    wait_until(lambda: not worker.pubsub.subscribed, timeout=5, interval=0.05)
    started = time.monotonic()
    worker.unsubscribe()
    assert time.monotonic() - started < 3 * PUBSUB_ROUND_SECONDS  # RQ's own took up to 60 s
    assert not worker.pubsub_thread.is_alive()


def test_sigusr1_writes_every_threads_stack_to_the_log_and_the_worker_goes_on(
    relay_factory, redis_client
) -> None:
    relay = relay_factory()
    worker = relay.start_worker()
    wait_until(lambda: len(Worker.all(connection=redis_client)) == 1, timeout=30, interval=0.1)
    worker.proc.send_signal(signal.SIGUSR1)
    # The dump names the relay's own frames (read once it has reached them: it is written as we read).
    wait_until(lambda: "relay/worker/process.py" in worker.output(), timeout=10, interval=0.1)
    assert "most recent call first" in worker.output()
    assert worker.proc.poll() is None  # a diagnostic, not a stop
    worker.stop()
    assert worker.proc.returncode == 0


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


def test_a_worker_told_to_stop_while_redis_is_gone_stops(tmp_path) -> None:
    # RQ's dequeue retries a lost connection forever; a warm stop must not wait for Redis to return
    # (an orchestrator would SIGKILL it, or it would run on after a `relay up` that stopped).
    server = RedisServer(tmp_path / "redis")
    server.start()
    relay = Relay(tmp_path / "relay", server.url)
    try:
        worker = relay.start_worker()
        client = redis.Redis.from_url(server.url)
        wait_until(lambda: client.scard("rq:workers") == 1, timeout=20)
        client.close()
        time.sleep(3)  # past its first round's maintenance: it waits in RQ's blocking dequeue
        server.stop(signal.SIGKILL)
        time.sleep(3)  # RQ's dequeue now retries the lost connection, with a heartbeat each round
        started = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) is not None, worker.output()
        assert time.monotonic() - started < 30
    finally:
        relay.stop()
        server.stop(signal.SIGKILL)
