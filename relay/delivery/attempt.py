"""The delivery job: POST one action to the gateway, classify the answer, record the outcome.

Runs inside RQ workers (`relay.worker.process`). Each action is sent with its stable `Idempotency-Key`;
a delivered action is recorded after the gateway's 2xx and checked before every send, so a
retried, re-run or replayed job never sends it again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import httpx
import redis.exceptions as redis_exceptions
from redis import Redis
from rq import Retry, get_current_job

from relay import metrics, tracing
from relay.config import Settings
from relay.delivery import circuit as health
from relay.delivery import gate
from relay.delivery import send_and_tool as doors
from relay.delivery.answers import Answer, backoff, classify, is_configuration, parse_retry_after
from relay.protocol import policy
from relay.store import keys, lanes, states
from relay.store.connection import connect
from relay.store.jobs import queue_turn
from relay.store.replicas import ReplicasUnconfirmed, confirm_replicas

log = logging.getLogger("relay.delivery")

# The longest pause after a policy refusal (hooks.allowRequestSessionKey and the like): the gateway
# reloads its hooks config live, so a fixed setting is picked up within this long.
POLICY_MAX_PAUSE = 30.0

# RQ fails a job once it has returned `Retry.max` Retries; the relay counts attempts itself
# (deferrals for a session's turn, a paused circuit or the rate cap are not attempts).
UNLIMITED = 2**31


class Context:
    """What a worker process's jobs share: settings and one HTTP client with keep-alive.

    `httpx.Client` is thread-safe; one per process avoids building an SSL context (~60 ms of CPU)
    per delivery thread, and its pool holds one connection per delivery in flight.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        in_flight = settings.delivery.in_flight
        self.http = httpx.Client(
            timeout=httpx.Timeout(settings.gateway.timeout_seconds, connect=5.0),
            limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
        )

    def url(self, kind: str, gateway: str | None = None) -> str:
        gw = self.settings.gateway_config(gateway)
        return f"{gw.url}/{gw.hooks_path.strip('/')}/{kind}"

    def headers(self, idempotency_key: str, gateway: str | None = None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        token = self.settings.gateway_config(gateway).token
        if token:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        return headers


_context: Context | None = None


def configure(settings: Settings) -> None:
    """Called once by the worker process before it runs jobs."""
    global _context
    _context = Context(settings)


def context() -> Context:
    if _context is None:
        raise RuntimeError("relay.delivery.attempt.configure(settings) was not called in this worker")
    return _context


def send(ctx: Context, kind: str, idempotency_key: str, body: bytes, gateway: str | None = None) -> Answer:
    if kind in ("send", "tool"):  # the gateway's other doors: WebSocket RPC and /tools/invoke
        return doors.send(ctx.http, kind, idempotency_key, body, ctx.settings.gateway_config(gateway))
    timeout = httpx.Timeout(ctx.settings.gateway_config(gateway).timeout_seconds, connect=5.0)
    try:
        headers = tracing.inject(ctx.headers(idempotency_key, gateway))  # W3C traceparent when tracing
        response = ctx.http.post(ctx.url(kind, gateway), content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:500])
    run_id = None
    if response.is_success:
        try:
            run_id = (response.json() or {}).get("runId")
        except ValueError:
            run_id = None
    return Answer(
        response.status_code,
        response.text[:2000],
        parse_retry_after(response.headers.get("retry-after")),
        run_id,
    )


def lock_ttl_ms(grace: int) -> int:
    """The send lock outlives a job's heartbeat a little (see RelayWorker)."""
    return (grace + 5) * 1000


def _defer(redis: Redis, key: str, state: str, seconds: float) -> Retry:
    """Wait without spending an attempt: the action is not at fault (lane, circuit, rate cap)."""
    delay = max(1, math.ceil(seconds))
    redis.hset(key, mapping={"state": state, "next_attempt_at": repr(time.time() + delay)})
    return Retry(max=UNLIMITED, interval=delay)


def deliver(action_id: str) -> str | Retry:
    """RQ job: deliver one action. Returns its final state, or a `Retry` with the delay to wait."""
    ctx = context()
    settings = ctx.settings
    job = get_current_job()
    redis: Redis = job.connection if job is not None else connect(settings.redis_url or "", settings)
    key = keys.action(action_id)
    lock_ttl = lock_ttl_ms(settings.delivery.heartbeat_grace_seconds)
    capped = bool(settings.delivery.rate_limit_per_second)
    # The record, the session's turn, the pauses, the circuit and (without a rate cap) the send lock
    # and the attempt's count, in one round trip (relay.delivery.gate).
    begun = gate.begin(redis, settings, action_id, lock_ttl, start=not capped)
    record, body = begun.record, begun.body
    log_fields: dict[str, str] = {
        "action_id": action_id,
        **{k: record[k] for k in ("event_id", "source", "delivery_id") if k in record},
    }
    if begun.verdict == "missing" or body is None:
        log.error("action record missing; nothing to deliver", extra=log_fields)
        return "missing"
    if begun.verdict == "finished":
        log.info("action already %s; not sent again", record["state"], extra=log_fields)
        return record["state"]
    if begun.verdict == "waiting":
        log.info("waiting for an earlier action of its session", extra=log_fields)
        return states.WAITING  # the action before it hands this one its turn when it is done
    if begun.verdict == "held":  # an operator paused its source or gateway: held until `relay resume`
        log.info("held: %s is paused", begun.held_by.replace(":", " "), extra=log_fields)
        return states.HELD
    if begun.verdict == "circuit":
        return _defer(redis, key, states.PAUSED, begun.wait)
    state = record.get("state")
    attempts, now = begun.attempts, begun.now
    if capped:
        wait = health.take_token(
            redis, settings.delivery.rate_limit_per_second, settings.delivery.rate_limit_burst
        )
        if wait > 1.0:
            return _defer(redis, key, states.QUEUED, wait)
        time.sleep(wait)
        now = time.time()
        attempts = gate.start(redis, action_id, lock_ttl, now)
    # The send lock lives as long as the job's heartbeat (renewed by the worker while the job runs),
    # so a re-run of a dead worker's job finds it expired.
    if begun.verdict == "locked" or not attempts:
        return _defer(redis, key, state or states.QUEUED, 1)  # another copy of this job is sending it
    lane_key = keys.lane(record["session_key"]) if record.get("session_key") else None
    try:
        if not tracing.enabled():
            return _attempt(ctx, redis, action_id, record, body, lane_key, log_fields, attempts, now)
        stored = redis.hget(keys.event(record.get("event_id", "")), "traceparent")  # relay.tracing
        with tracing.delivery(
            stored.decode() if stored else None,
            float(record.get("queued_at") or 0) or None,
            {
                "relay.action_id": action_id,
                "relay.event_id": record.get("event_id"),
                "relay.kind": record["kind"],
                "relay.attempt": attempts,
            },
        ):
            outcome = _attempt(ctx, redis, action_id, record, body, lane_key, log_fields, attempts, now)
            tracing.set_attributes(relay__outcome=outcome if isinstance(outcome, str) else "retry")
            return outcome
    finally:
        redis.delete(keys.sending(action_id))


def persist(write: Callable[[], None], patience: float = 300.0) -> None:
    """Run a Redis write, retrying while Redis is unreachable or still loading its data."""
    deadline = time.monotonic() + patience
    while True:
        try:
            write()
            return
        except (
            redis_exceptions.ConnectionError,
            redis_exceptions.TimeoutError,
            redis_exceptions.BusyLoadingError,
            ReplicasUnconfirmed,
        ) as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("redis unavailable while recording a delivery (%s); retrying", exc)
            time.sleep(0.2)


def _confirm(redis: Redis, settings: Settings, key: str, state: str) -> None:
    """With `durability.min_replicas`, wait until replicas hold the final state before the job ends:
    a failover must not bring back a delivered action as undelivered (and send it again)."""
    durability = settings.durability
    if durability.min_replicas:
        persist(
            lambda: confirm_replicas(
                redis, key, "state", state, durability.min_replicas, durability.replica_timeout_ms
            )
        )


def _next_in_lane(redis: Redis, settings: Settings, lane_key: str | None, action_id: str) -> None:
    """Give the session's next action its turn: queue a job for it."""
    if lane_key is None:
        return
    turn = lanes.hand_off(redis, lane_key, action_id)
    if turn is not None:
        # At the queue's front: the action already waited its place in line (its first job found an
        # earlier action of its session in flight). At the end, behind a backlog, each later action
        # of the session would wait through the whole queue again, one turn at a time.
        queue_turn(redis, settings, turn.action_id, turn.job_id, at_front=True)


def _attempt(
    ctx: Context,
    redis: Redis,
    action_id: str,
    record: dict[str, str],
    body: bytes,
    lane_key: str | None,
    log_fields: dict[str, str],
    attempts: int,
    now: float,
) -> str | Retry:
    """One send of a record read by `deliver`, counted and marked delivering at `now` (gate.start)
    as attempt number `attempts`, and what its answer means for the action."""
    settings = ctx.settings
    kind, gateway, queued_at = record["kind"], record.get("gateway") or None, record.get("queued_at")
    key = keys.action(action_id)

    started = time.perf_counter()
    answer = send(ctx, kind, record.get("idempotency_key") or action_id, body, gateway)
    latency = time.perf_counter() - started
    tracing.set_attributes(http__response__status_code=answer.status)
    verdict = classify(answer)
    configuration = is_configuration(answer)
    # The gateway answers: whatever the circuit said, it is up. A delivered action closes it in the
    # same round trip as its record, to keep the instant between the 2xx and that write short.
    if answer.status is not None and not configuration and verdict != "delivered":
        health.close(redis, gateway)
    fields = {
        **log_fields,
        "status": answer.status,
        "attempt": attempts,
        "latency_ms": round(latency * 1000, 1),
        "outcome": verdict,
    }
    status_text = "" if answer.status is None else str(answer.status)

    if verdict == "delivered":

        def record_delivered() -> None:
            with redis.pipeline() as pipe:
                pipe.hset(
                    key,
                    mapping={
                        "state": states.DELIVERED,
                        "delivered_at": repr(time.time()),
                        "last_status": status_text,
                        "run_id": answer.run_id or "",
                        "latency_ms": fields["latency_ms"],
                        "answer": answer.text[:500],
                    },
                )
                metrics.count_action(pipe, "delivered", kind)
                pipe.zrem(keys.PENDING, action_id)
                metrics.observe_latency(pipe, latency)
                pipe.delete(*keys.circuit(gateway))  # health.close, in this round trip
                pipe.execute()

        # The gateway has the action: a Redis blip now must not make this job fail and be re-run,
        # which would send it again (a wake, which the gateway never dedupes, twice).
        persist(record_delivered)
        _confirm(redis, settings, key, states.DELIVERED)
        log.info("action delivered", extra=fields)
        _next_in_lane(redis, settings, lane_key, action_id)
        return states.DELIVERED

    delivery = settings.delivery
    age = time.time() - float(queued_at or now)  # since it was queued (or replayed)
    gateway_fault = answer.status is None or configuration
    if (
        verdict == "dead"
        or age >= delivery.max_age_seconds
        or (not gateway_fault and attempts >= delivery.max_attempts)
    ):
        reason = "permanent error" if verdict == "dead" else "gave up after retries"
        with redis.pipeline() as pipe:
            pipe.hset(
                key,
                mapping={
                    "state": states.DEAD,
                    "last_status": status_text,
                    "last_error": answer.text,
                    "dead_reason": reason,
                    "dead_at": repr(time.time()),
                    "latency_ms": fields["latency_ms"],
                },
            )
            pipe.expire(key, delivery.dead_letter_ttl_seconds)
            pipe.zadd(keys.DEAD, {action_id: time.time()})
            metrics.count_action(pipe, "dead", kind)
            pipe.zrem(keys.PENDING, action_id)
            pipe.execute()
        _confirm(redis, settings, key, states.DEAD)
        log.warning("action dead-lettered: %s", reason, extra={**fields, "error": answer.text[:200]})
        _next_in_lane(redis, settings, lane_key, action_id)
        return states.DEAD

    if gateway_fault:
        # Down, unreachable or misconfigured: pause every worker instead of burning retries.
        redis.hincrby(key, "attempts", -1)
        hint = policy.refusal_hint(answer.status, answer.text)
        reason = f"{status_text or 'no answer'}: {answer.text[:200]}"
        if hint:  # the gateway's policy: its message and the one setting to change
            reason = f"{status_text}: {policy.gateway_message(answer.text)[:200]} -- to fix: {hint}"
            redis.hset(key, mapping={"last_status": status_text, "last_error": reason})
            # An operator is changing a setting the gateway reloads live: look again soon.
            pause = health.trip(redis, reason, gateway, max_pause=POLICY_MAX_PAUSE)
            log.warning(
                "gateway refuses by policy; delivery paused for %.0fs: %s", pause, reason, extra=fields
            )
        else:
            pause = health.trip(redis, reason, gateway)
            log.warning(
                "gateway unavailable; delivery paused for %.0fs",
                pause,
                extra={**fields, "error": answer.text[:200]},
            )
        return _defer(redis, key, states.PAUSED, pause)

    delay = backoff(attempts, delivery.backoff_base_seconds, delivery.backoff_max_seconds, answer.retry_after)
    with redis.pipeline() as pipe:
        pipe.hset(
            key,
            mapping={
                "state": states.RETRYING,
                "last_status": status_text,
                "last_error": answer.text,
                "next_attempt_at": repr(time.time() + delay),
                "latency_ms": fields["latency_ms"],
            },
        )
        metrics.count_action(pipe, "retried", kind)
        pipe.execute()
    log.info("action will be retried in %ss", delay, extra={**fields, "error": answer.text[:200]})
    return Retry(max=UNLIMITED, interval=delay)
