"""The scheduler thread: every worker process fires the `schedules:` of relay.yaml, exactly once per tick.

RQ 3's `rq.cron.CronScheduler` keeps its schedule in process memory: each process running it
enqueues every job (n workers, n runs per tick), an interval job runs at once whenever a process
starts, and nothing records which ticks were done, so it cannot give once-per-tick across
processes and restarts. The relay's scheduler needs no lock or leader instead: every worker looks
at every schedule, and a due tick is recorded as an ordinary event of source `schedule:<name>`
whose delivery id is the tick's deterministic id (`relay.protocol.schedules.tick_id`). The record
script's dedupe key (SET NX) lets the first recording through and answers every other one (other
workers, a worker that restarted before it noted the tick) as a duplicate. The last tick handled
per schedule is kept in Redis (`keys.schedule`) for the catch-up policy.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis.exceptions
from redis import Redis

from relay.config import Settings
from relay.protocol.schedules import (
    ScheduleConfig,
    build_action,
    decide,
    next_tick,
    source_name,
    tick_id,
    tick_iso,
)
from relay.store import keys, scripts
from relay.store.submit import Submitted, record_action, text_map

log = logging.getLogger("relay.scheduler")

MAX_SLEEP = 1.0


@dataclass(frozen=True, slots=True)
class Fired:
    schedule: str
    tick: float
    submitted: Submitted


class Scheduler:
    """Fires due ticks of every enabled schedule; `run` in a thread, `step` to do one round."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.schedules = {n: s for n, s in settings.schedules.items() if s.enabled}
        self._advance = redis.register_script(scripts.SCHEDULE_ADVANCE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (nothing to do without schedules)."""
        if self.schedules and self._thread is None:
            self._thread = threading.Thread(target=self.run, name="scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to finish the round it is in (after `stop`)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Fire ticks until stopped; survives Redis outages by waiting and trying again."""
        while not self._stop.is_set():
            try:
                self.step()
                wait = self.sleep_time(time.time())
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("scheduler cannot reach redis (%s); retrying", exc)
                wait = MAX_SLEEP
            except Exception:
                log.exception("scheduler step failed; retrying")
                wait = MAX_SLEEP
            self._stop.wait(wait)

    def sleep_time(self, now: float) -> float:
        ticks = [t for s in self.schedules.values() if (t := next_tick(s, now)) is not None]
        return max(0.01, min([MAX_SLEEP, *(t - now for t in ticks)]))

    def step(self, now: float | None = None) -> list[Fired]:
        """One round over every schedule at `now` (default: the clock)."""
        fired = []
        for name, cfg in self.schedules.items():
            result = self.step_one(name, cfg, time.time() if now is None else now)
            if result is not None:
                fired.append(result)
        return fired

    def step_one(self, name: str, cfg: ScheduleConfig, now: float) -> Fired | None:
        key = keys.schedule(name)
        last, since = self.redis.hmget(key, "last_tick", "since")
        if last is None and since is None:
            # First sight of this schedule: ticks before now were never missed, they did not exist.
            self.redis.hsetnx(key, "since", repr(now))
            since = self.redis.hget(key, "since")
        handled = float(last) if last is not None else float(since or now)
        decision = decide(cfg, now, handled)
        if decision is None:
            return None
        if decision.tick is None:
            self._advance(
                keys=[key],
                args=[repr(decision.advance_to), "last_outcome", "skipped", "skipped_at", repr(now)],
            )
            log.warning("schedule %s: tick %s missed (catch_up: skip)", name, tick_iso(decision.advance_to))
            return None
        submitted = self.fire(name, cfg, tick_id(name, decision.tick))
        self._advance(
            keys=[key],
            args=[
                repr(decision.advance_to),
                "last_outcome",
                "fired",
                "last_fired_at",
                repr(now),
                "last_event_id",
                submitted.event_id,
                "last_action_id",
                submitted.action_id,
            ],
        )
        if not submitted.duplicate:
            log.info(
                "schedule %s fired tick %s%s",
                name,
                tick_iso(decision.tick),
                " (late)" if decision.late else "",
                extra={"event_id": submitted.event_id, "action_id": submitted.action_id},
            )
        return Fired(name, decision.tick, submitted)

    def fire(self, name: str, cfg: ScheduleConfig, delivery_id: str) -> Submitted:
        return fire(self.redis, self.settings, name, cfg, delivery_id)


def fire(redis: Redis, settings: Settings, name: str, cfg: ScheduleConfig, delivery_id: str) -> Submitted:
    """Record one firing of schedule `name` as an event of source `schedule:<name>`."""
    action = build_action(name, cfg, settings.max_message_bytes)
    return record_action(redis, settings, action, source=source_name(name), delivery_id=delivery_id)


def describe(redis: Redis, settings: Settings, now: float | None = None) -> list[dict[str, Any]]:
    """Every schedule with its spec, next tick and last firing (for `relay schedules list`)."""
    now = time.time() if now is None else now
    rows = []
    for name, cfg in settings.schedules.items():
        state = text_map(redis.hgetall(keys.schedule(name)))
        handled = float(state.get("last_tick") or state.get("since") or now)
        nxt = next_tick(cfg, max(now, handled)) if cfg.enabled else None
        rows.append(
            {
                "name": name,
                "spec": cfg.describe(),
                "action": cfg.action,
                "enabled": cfg.enabled,
                "catch_up": cfg.catch_up,
                "next": tick_iso(nxt) if nxt is not None else None,
                "last_tick": tick_iso(float(state["last_tick"])) if state.get("last_tick") else None,
                "last_outcome": state.get("last_outcome"),
                "last_fired_at": tick_iso(round(float(state["last_fired_at"]), 3))
                if state.get("last_fired_at")
                else None,
                "last_event_id": state.get("last_event_id"),
                "last_action_id": state.get("last_action_id"),
            }
        )
    return rows
