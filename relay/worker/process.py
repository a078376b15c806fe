"""The RQ worker that delivers actions: many deliveries in flight per process, and the router.

RQ runs one job at a time per worker; a gateway holds each /hooks/agent request until the run is
admitted (often seconds), so one-at-a-time delivery would cap a worker near one action per second.
`RelayWorker` keeps RQ's own per-job path (prepare the execution, perform, success / failure /
retry bookkeeping, registries) and changes only the dispatch: jobs run in a bounded thread pool,
a heartbeat thread keeps every running execution alive, and shutdown waits for running jobs.
`rq info` and rq-dashboard see an ordinary worker with several executions.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis.exceptions
from redis import Redis
from rq import Queue, SimpleWorker, worker_registration
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.registry import clean_registries
from rq.scheduler import RQScheduler
from rq.timeouts import TimerDeathPenalty
from rq.utils import now
from rq.worker import WorkerStatus

from relay import tracing
from relay.config import Settings
from relay.delivery import attempt as delivery
from relay.delivery import circuit as health
from relay.store import keys
from relay.worker.dispatch import Router
from relay.worker.ticker import Scheduler

log = logging.getLogger("relay.worker")

GIL_SWITCH_SECONDS = 0.001
# How long a stopping worker waits for its router and scheduler threads to finish their round
# (a blocking read lasts one second; routing a batch takes milliseconds).
SHUTDOWN_JOIN_SECONDS = 5.0
# How often RQ's command listener looks whether the worker is stopping.
PUBSUB_ROUND_SECONDS = 1.0
# RQ renews the worker's key (three commands) several times per job; its TTL is minutes. One
# renewal per this many seconds keeps it alive and leaves the job's own path those round trips.
HEARTBEAT_EVERY_SECONDS = 1.0


class RelayWorker(SimpleWorker):
    # SIGALRM only works in the main thread; jobs run in pool threads.
    death_penalty_class = TimerDeathPenalty

    def __init__(
        self,
        *args: Any,
        in_flight: int = 16,
        heartbeat_interval: int = 5,
        grace: int = 60,
        gateways: list[str | None] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = in_flight
        self.gateways = gateways or [None]  # whose circuits decide whether to take new jobs
        self.heartbeat_interval = heartbeat_interval
        self.grace = grace
        self._slots = threading.BoundedSemaphore(in_flight)
        self._pool = ThreadPoolExecutor(in_flight, thread_name_prefix="deliver")
        self._running: dict[str, tuple[Job, Execution]] = {}
        self._prepared = threading.local()  # set by `_prepare` for the perform_job that follows
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._stop_announced = False
        self._last_beat = 0.0
        self._last_suspension_check = 0.0
        self.lock_ttl_ms = delivery.lock_ttl_ms(grace)

    # A dead worker's jobs are re-run `grace` seconds after their last heartbeat, which the
    # heartbeat thread renews every `heartbeat_interval` seconds while a job runs.
    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.heartbeat_interval + self.grace

    @property
    def dequeue_timeout(self) -> int:
        # Short, so that a warm shutdown or maintenance (which re-queues abandoned jobs) never
        # waits long for a blocking dequeue to return.
        return max(1, min(self.worker_ttl - 15, self.maintenance_interval, 2))

    def request_stop(self, signum: int, frame: Any) -> None:
        # The first SIGTERM or SIGINT: a warm shutdown. A signal handler interrupts the main thread
        # anywhere, possibly inside redis-py's connection pool lock or a write to stderr; RQ's own
        # handler writes to Redis and logs from here, which can deadlock the process for good.
        # RQ's also raises StopRequested when the worker looks idle, which can land after Redis moved
        # a job into the intermediate queue and strand it there until RQ's one-minute cleanup.
        # This one only sets flags; the main loop announces the stop (`_announce_stop`) and ends
        # within `dequeue_timeout`. Running deliveries finish in `teardown`. A second signal is
        # RQ's cold shutdown.
        signal.signal(signal.SIGINT, self.request_force_stop)
        signal.signal(signal.SIGTERM, self.request_force_stop)
        self._shutdown_requested_date = now()
        self._stop_requested = True

    def _announce_stop(self) -> None:
        if self._stop_requested and not self._stop_announced:
            self._stop_announced = True
            log.info("warm shutdown requested: finishing %d running deliveries", len(self._running))
            try:
                self.set_shutdown_requested_date()  # shown by `rq info`; the stop does not need it
            except redis.exceptions.RedisError as exc:
                log.warning("could not record the shutdown request: %s", exc)

    # RQ listens on its command channel (`rq` suspend, stop-job) in rounds of 60 s, and redis-py 8's
    # PubSubWorkerThread.stop() joins the thread: a round that began just before the stop made a
    # warm shutdown wait up to 60 s, and an orchestrator's SIGKILL then stranded what the worker
    # held. Rounds of one second bound that wait; the connection's close ends the subscription.
    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_ROUND_SECONDS, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def unsubscribe(self) -> None:
        if self.pubsub_thread:
            self.pubsub_thread.stop()
            self.pubsub_thread.join(timeout=2 * PUBSUB_ROUND_SECONDS)
            self.pubsub.close()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if state == WorkerStatus.IDLE and self._running:
            state = WorkerStatus.BUSY
        if pipeline is None and state == self._state:
            return  # RQ sets it before every dequeue; written once, it stays
        self._patiently(super().set_state, state, pipeline=pipeline)

    # RQ's work loop quits on any Redis error outside its blocking dequeue. While Redis is away (a
    # restart, a Sentinel failover) the worker waits for it instead, and carries on with the new
    # primary: the calls its loop makes are retried until Redis answers or a stop is requested.
    # Then the error is a StopRequested: RQ's dequeue retries a lost connection forever, and would
    # keep a worker told to stop while Redis is gone running (its heartbeat call leaves that loop).
    def _patiently(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        wait = 0.1
        while True:
            try:
                return call(*args, **kwargs)
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                redis.exceptions.BusyLoadingError,
            ) as exc:
                if self._stop_requested:
                    raise StopRequested from exc
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, wait)
                time.sleep(wait)
                wait = min(wait * 2, 2.0)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:  # part of RQ's own writes, at no extra round trip
            super().heartbeat(timeout, pipeline=pipeline)
            return
        if timeout is None and time.monotonic() - self._last_beat < HEARTBEAT_EVERY_SECONDS:
            return
        self._patiently(self._beat, timeout)

    def _beat(self, timeout: int | None) -> None:
        """RQ's heartbeat (the worker key's last_heartbeat and TTLs) in one round trip, with the
        state, which `set_state` writes only when it changes (Redis may have restarted empty)."""
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipeline=pipe)
            pipe.hset(self.key, "state", self._state)
            pipe.execute()
        self._last_beat = time.monotonic()

    def check_for_suspension(self, burst: bool) -> None:
        self._announce_stop()  # the work loop's first call of each round
        # RQ looks for `rq suspend` once per job; once a second is soon enough, and saves a round trip.
        if time.monotonic() - self._last_suspension_check < HEARTBEAT_EVERY_SECONDS:
            return
        self._last_suspension_check = time.monotonic()
        self._patiently(super().check_for_suspension, burst)

    def run_maintenance_tasks(self) -> None:
        self._patiently(super().run_maintenance_tasks)

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        while not self._slots.acquire(timeout=1.0):
            if self._stop_requested:
                return None
        # While the gateway circuit is open (or its one probe is out), leave jobs in the queue, in
        # order, rather than taking them only to put them back on the scheduler.
        while self._patiently(health.hold_deliveries, self.connection, self.gateways):
            self.heartbeat()
            if self._stop_requested or self._stopping.wait(0.5):
                self._slots.release()
                return None
        # RQ's blocking dequeue loops until a job comes and never looks at a stop requested while
        # a job ran (a warm shutdown); dequeue in rounds of `dequeue_timeout` and look in between.
        while True:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time or self.dequeue_timeout)
            if result is not None or self._stop_requested or max_idle_time is not None:
                break
        if result is None:
            self._slots.release()
        return result

    def execute_job(self, job: Job, queue: Queue) -> None:
        # RQ writes the execution's records here, in the main thread, one round trip before the
        # job's own preparation; the delivery thread does both in one (`_prepare`).
        self._pool.submit(self._perform, job, queue)

    def _perform(self, job: Job, queue: Queue) -> None:
        execution: Execution | None = None
        try:
            execution = self._patiently(self._prepare, job)
            with self._lock:
                self._running[execution.id] = (job, execution)
            self._prepared.done = True  # RQ's perform_job prepares again: `prepare_job_execution`
            self.perform_job(job, queue, execution)
        except StopRequested:  # stopping while Redis is away: RQ's cleanup re-queues the job
            log.warning("job %s not started: redis unavailable while stopping", job.id)
        except Exception:
            log.exception("job %s crashed outside RQ's handling", job.id)
        finally:
            with self._lock:
                if execution is not None:
                    self._running.pop(execution.id, None)
                    self.executions.pop(execution.id, None)
                idle = not self._running
            if idle:
                self.set_state(WorkerStatus.IDLE)
            self._slots.release()

    def _prepare(self, job: Job) -> Execution:
        """RQ's two writes before a job runs, in one pipeline: the execution's records
        (`prepare_execution`) and the job's start (`prepare_job_execution`)."""
        with self.connection.pipeline() as pipe:
            ttl = self.get_heartbeat_ttl(job)
            execution = Execution.create(job, ttl, pipeline=pipe, worker_name=self.name)
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self.heartbeat(ttl, pipeline=pipe)
            job.heartbeat(now(), ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            pipe.persist(job.key)
            if len(self.queues) == 1:  # as RQ's perform_job: the job leaves the intermediate queue
                pipe.lrem(Queue(job.origin, connection=self.connection).intermediate_queue_key, 1, job.id)
            pipe.execute()
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        if getattr(self._prepared, "done", False):  # `_prepare` wrote it with the execution
            self._prepared.done = False
            return
        super().prepare_job_execution(job, remove_from_intermediate_queue)

    def _heartbeats(self) -> None:
        while not self._stopping.wait(self.heartbeat_interval):
            with self._lock:
                running = list(self._running.values())
            for job, execution in running:
                try:
                    self.maintain_heartbeats(job, execution)
                    if job.func_name == "relay.delivery.deliver":
                        self.connection.pexpire(keys.sending(job.args[0]), self.lock_ttl_ms)
                except Exception as exc:  # Redis away for a moment: try again next round
                    log.warning("heartbeat for job %s failed: %s", job.id, exc)

    # RQ's own scheduler and registry cleaning hold their locks for 61 s and 899 s; a worker killed
    # while holding one would stall retries or abandoned-job recovery that long. The relay runs
    # both under short locks that every worker renews or takes over.
    def clean_registries(self) -> None:
        for queue in self.queues:
            lock = keys.maintenance(queue.name)
            if self.connection.set(lock, self.name, nx=True, ex=30):
                try:
                    clean_registries(queue, self._exc_handlers)
                    worker_registration.clean_worker_registry(queue)
                    queue.intermediate_queue.cleanup(self, queue)
                finally:
                    self.connection.delete(lock)
        self.last_cleaned_at = now()  # type: ignore[assignment]  # RQ annotates it as None only

    def _schedule(self) -> None:
        """Move due scheduled jobs (retries, deferrals) to the queue, one worker at a time."""
        scheduler = RQScheduler(self.queues, connection=self.connection, serializer=self.serializer)
        scheduler.prepare_registries([q.name for q in self.queues])
        lock = keys.SCHEDULER
        while not self._stopping.wait(0.5):
            try:
                if self.connection.set(lock, self.name, nx=True, px=3000) or (
                    self.connection.get(lock) == self.name.encode() and self.connection.pexpire(lock, 3000)
                ):
                    scheduler.enqueue_scheduled_jobs()
            except Exception as exc:  # Redis away for a moment: try again next round
                log.warning("scheduling failed: %s", exc)

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        # RQ registers the worker (others now see it, and may stop it) before it installs its
        # signal handlers: a SIGTERM in between would kill it. Installed first, the same handlers
        # turn that SIGTERM into a warm stop at the loop's first round.
        self._install_signal_handlers()
        super().bootstrap(*args, **kwargs)

    def work(self, *args: Any, **kwargs: Any) -> bool:
        beat = threading.Thread(target=self._heartbeats, name="heartbeats", daemon=True)
        beat.start()
        threading.Thread(target=self._schedule, name="scheduler", daemon=True).start()
        try:
            return super().work(*args, **kwargs)
        finally:
            self._stopping.set()

    def teardown(self) -> None:
        # Warm shutdown: let running deliveries finish and record their outcome.
        self._announce_stop()
        self._pool.shutdown(wait=True)
        try:
            super().teardown()  # the worker's death, recorded in Redis
        except redis.exceptions.RedisError as exc:
            log.warning("stopped; the stop is not recorded in redis (%s)", exc)


def run_worker(settings: Settings, redis: Redis, *, burst: bool = False, name: str | None = None) -> bool:
    """Run one worker process: RelayWorker with its router, scheduler and heartbeat threads."""
    # A job passes from the main thread (RQ's dequeue) to a delivery thread, and the router thread
    # maps and queues: with Python's 5 ms switch interval a thread ready to go could wait that long
    # for one busy with CPU (bench e2e: the dequeue-to-attempt stage, 4.7 → 3.0 ms at 0.5 ms).
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    delivery.configure(settings)
    tracing.configure_from_env("openclaw-relay")  # relay.tracing: only when OTEL_* asks for it
    queue = Queue(settings.queue, connection=redis)
    worker = RelayWorker(
        [queue],
        connection=redis,
        name=name,
        in_flight=settings.delivery.in_flight,
        gateways=settings.gateway_names(),
        heartbeat_interval=min(5, settings.delivery.heartbeat_grace_seconds),
        grace=settings.delivery.heartbeat_grace_seconds,
        maintenance_interval=max(1, min(30, settings.delivery.heartbeat_grace_seconds)),
        worker_ttl=60,
    )
    router = Router(redis, settings, consumer=worker.name)
    thread = threading.Thread(target=router.run, name="router", daemon=True)
    schedules = Scheduler(redis, settings)  # `schedules:` of relay.yaml, once per tick across workers
    from relay.reload import WorkerReloader, apply_to_worker  # SIGHUP and `relay reload` (docs/operations.md)

    reloader = WorkerReloader(settings, redis, apply_to_worker(worker, router), worker.name)
    if burst:
        while router.step():
            pass
        router.mapper.release()
    else:
        thread.start()
        schedules.start()
        reloader.install_sighup()
        reloader.start()
    try:
        return worker.work(
            burst=burst, logging_level=logging.getLevelName(logging.getLogger("rq.worker").level)
        )
    finally:
        # Let the router finish the batch it read (its entries would otherwise stay pending until
        # another router claims them, `claim_idle_ms` later) and the scheduler the tick it fires.
        router.stop()
        schedules.stop()
        reloader.stop()
        if thread.is_alive():  # not started in burst mode
            thread.join(timeout=SHUTDOWN_JOIN_SECONDS)
        schedules.join(timeout=SHUTDOWN_JOIN_SECONDS)
