"""The delivery job: POST one action to the gateway, classify the answer, record the outcome.

Runs inside RQ workers (`relay.worker`). Each action is sent with its stable `Idempotency-Key`;
a delivered action is recorded after the gateway's 2xx and checked before every send, so a
retried, re-run or replayed job never sends it again.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx
from redis import Redis
from rq import Retry, get_current_job

from . import keys
from .config import Settings

log = logging.getLogger("relay.delivery")

Verdict = Literal["delivered", "retry", "dead"]

# The gateway's answers, per OPENCLAW_CONTRACT.md: these never succeed by being sent again.
PERMANENT = frozenset({400, 405, 413, 422})
# Wrong token or hooks disabled/wrong path: a configuration problem. The events are kept and
# retried with backoff until it is fixed, never dead-lettered for it.
CONFIGURATION = frozenset({401, 403, 404})


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    text: str
    retry_after: float | None = None
    run_id: str | None = None


def classify(answer: Answer) -> Verdict:
    if answer.status is not None and 200 <= answer.status < 300:
        return "delivered"
    if answer.status in PERMANENT:
        return "dead"
    return "retry"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (now if now is not None else time.time()))


def backoff(attempt: int, base: float, cap: float, retry_after: float | None = None) -> int:
    """Exponential backoff with full jitter, never sooner than the gateway's Retry-After."""
    delay = random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(1, math.ceil(delay))


class Context:
    """What a worker process's jobs share: settings, one HTTP client per thread (keep-alive)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()

    @property
    def http(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            timeout = httpx.Timeout(self.settings.gateway.timeout_seconds, connect=5.0)
            client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=4))
            self._local.client = client
        return client

    def url(self, kind: str) -> str:
        gw = self.settings.gateway
        return f"{gw.url}/{gw.hooks_path.strip('/')}/{kind}"

    def headers(self, action_id: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Idempotency-Key": action_id}
        if self.settings.gateway.token:
            headers["Authorization"] = f"Bearer {self.settings.gateway.token.get_secret_value()}"
        return headers


_context: Context | None = None


def configure(settings: Settings) -> None:
    """Called once by the worker process before it runs jobs."""
    global _context
    _context = Context(settings)


def context() -> Context:
    if _context is None:
        raise RuntimeError("relay.delivery.configure(settings) was not called in this worker")
    return _context


def send(ctx: Context, kind: str, action_id: str, body: bytes) -> Answer:
    try:
        response = ctx.http.post(ctx.url(kind), content=body, headers=ctx.headers(action_id))
    except httpx.HTTPError as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:500])
    run_id = None
    if response.is_success:
        try:
            run_id = (response.json() or {}).get("runId")
        except ValueError:
            run_id = None
    return Answer(response.status_code, response.text[:2000], parse_retry_after(response.headers.get("retry-after")),
                  run_id)  # fmt: skip


def deliver(action_id: str) -> str | Retry:
    """RQ job: deliver one action. Returns its final state, or a `Retry` with the delay to wait."""
    ctx = context()
    job = get_current_job()
    redis: Redis = job.connection if job is not None else Redis.from_url(ctx.settings.redis_url or "")
    key = keys.action(action_id)
    record = redis.hmget(key, "state", "kind", "body", "event_id", "first_attempt_at")
    state, kind, body, event_id, first = (v.decode() if isinstance(v, bytes) and i != 2 else v
                                          for i, v in enumerate(record))  # fmt: skip
    if kind is None or body is None:
        log.error("action record missing; nothing to deliver", extra={"action_id": action_id})
        return "missing"
    if state in ("delivered", "dead"):
        log.info("action already %s; not sent again", state, extra={"action_id": action_id})
        return str(state)
    now = time.time()
    attempts = int(redis.hincrby(key, "attempts", 1))
    if first is None:
        redis.hsetnx(key, "first_attempt_at", repr(now))
        first = repr(now)
    redis.hset(key, mapping={"state": "delivering", "last_attempt_at": repr(now)})

    started = time.perf_counter()
    answer = send(ctx, str(kind), action_id, body)
    latency = time.perf_counter() - started
    verdict = classify(answer)
    fields = {"action_id": action_id, "event_id": event_id, "status": answer.status, "attempt": attempts,
              "latency_ms": round(latency * 1000, 1)}  # fmt: skip
    status_text = "" if answer.status is None else str(answer.status)

    if verdict == "delivered":
        with redis.pipeline() as pipe:
            pipe.hset(key, mapping={"state": "delivered", "delivered_at": repr(time.time()),
                                    "last_status": status_text, "run_id": answer.run_id or ""})  # fmt: skip
            pipe.hincrby(keys.STATS, "delivered", 1)
            pipe.execute()
        log.info("action delivered", extra=fields)
        return "delivered"

    age = time.time() - float(first)
    delivery = ctx.settings.delivery
    if verdict == "dead" or attempts >= delivery.max_attempts or age >= delivery.max_age_seconds:
        reason = "permanent error" if verdict == "dead" else "gave up after retries"
        with redis.pipeline() as pipe:
            pipe.hset(key, mapping={"state": "dead", "last_status": status_text, "last_error": answer.text,
                                    "dead_reason": reason, "dead_at": repr(time.time())})  # fmt: skip
            pipe.zadd(keys.DEAD, {action_id: time.time()})
            pipe.hincrby(keys.STATS, "dead", 1)
            pipe.execute()
        log.warning("action dead-lettered: %s", reason, extra={**fields, "error": answer.text[:200]})
        return "dead"

    delay = backoff(attempts, delivery.backoff_base_seconds, delivery.backoff_max_seconds, answer.retry_after)
    redis.hset(key, mapping={"state": "retrying", "last_status": status_text, "last_error": answer.text,
                             "next_attempt_at": repr(time.time() + delay)})  # fmt: skip
    log.info("action will be retried in %ss", delay, extra={**fields, "error": answer.text[:200]})
    return Retry(max=delivery.max_attempts, interval=delay)
