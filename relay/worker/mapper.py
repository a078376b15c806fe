"""The mapping stage: turns received events into actions, after the ingress has answered.

The ingress stores a verified webhook as it came (state `received`) and puts it on the inbox.
The router that holds the mapping lease reads the inbox and, for each received event, runs the
pipeline the ingress used to run before answering (`relay.protocol.pipeline`: the preset's skip
rules, the mapping or transform, under the transform budget), then the hold stage
(`relay.hold`), and commits the outcome with one script call per event: the actions, the state
(`queued`, `skipped` or `parked`, as before), the outcome counter and the session lanes. The
router then routes the queued ones, as it routes a replayed event.

One mapper at a time (the lease, fenced in the commit script) keeps a session's actions in the
order the ingress acknowledged their events: the inbox's order.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

import orjson
import redis.exceptions
from redis import Redis
from rq.job import Job

from relay import hold, tracing
from relay.config import Settings
from relay.errors import RelayError, TransformError
from relay.protocol.actions import action_id
from relay.protocol.pipeline import Pipeline, Source, build_sources
from relay.store import keys, scripts, states
from relay.store.events import encode_actions, session_lanes
from relay.store.skips import note_skip

log = logging.getLogger("relay.mapper")

LEASE_MS = 10_000  # a mapper that stops renewing (crashed, stuck) is replaced this long after
_FIELDS = (
    "state",
    "source",
    "delivery_id",
    "headers",
    "body",
    "query",
    "received_at",
    "reason",
    "traceparent",
)


@dataclass(frozen=True, slots=True)
class Committed:
    """What mapping one event came to: `route` when its actions are to be queued now.

    `routing` is what the router needs of an event this mapper has just committed (its actions as
    stored, source, received_at, delivery id) and `jobs` whether each action already has a job;
    None for an event committed by someone else, which the router reads back."""

    event_id: str
    route: bool
    routing: tuple[bytes, bytes, bytes, bytes] | None = None
    jobs: list[bool] | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """One received event, mapped: what its commit writes and what follows it."""

    event_id: str
    source: str
    delivery_id: str
    keys: list[str]
    args: list[Any]  # the commit script's, after the lease holder
    admission: hold.Admission
    skip: str | None
    error: str | None
    actions: int  # made by the mapping (held ones included)
    routed: bool  # queued now
    encoded: bytes  # the actions, as stored with the event
    received_at: bytes
    action_ids: list[str]  # of the actions queued now


class LeaseLost(Exception):
    """Another router holds the mapping lease now: stop mapping, leave the rest to it."""


class EventMapper:
    """Maps received events with one configuration's sources and pipeline."""

    def __init__(self, redis: Redis, settings: Settings, holder: str) -> None:
        self.redis = redis
        self.settings = settings
        self.holder = holder
        self.sources: dict[str, Source] = build_sources(settings)
        self.pipeline = Pipeline.from_settings(settings)
        self._lease = redis.register_script(scripts.MAPPER_LEASE)
        self._commit = redis.register_script(scripts.MAP_COMMIT)
        self._release = redis.register_script(scripts.MAPPER_RELEASE)

    def lead(self) -> int:
        """Take or keep the lease: 1 kept, 2 newly taken (map what the last holder left first), 0 not ours."""
        return int(self._lease(keys=[keys.MAPPER], args=[self.holder, LEASE_MS]))

    def release(self) -> None:
        """Give the lease up (a stopping worker), so that another router maps at once."""
        self._release(keys=[keys.MAPPER], args=[self.holder])

    def map_received(self, event_ids: list[str], *, recovered: bool = False) -> list[Committed]:
        """Map the events among `event_ids` that are still `received`, committing them in one round
        trip; the others are returned with `route` True when they were queued by someone else (a
        replay, a closed window). `recovered`: entries a router read before it died (claimed or
        re-read): a held event whose hold was not placed yet gets it now."""
        with self.redis.pipeline(transaction=False) as pipe:
            for eid in event_ids:
                pipe.hmget(keys.event(eid), *_FIELDS)
            records = pipe.execute()
        plans: list[Plan] = []
        out: dict[str, Committed] = {}
        for eid, values in zip(event_ids, records, strict=True):
            stored = dict(zip(_FIELDS, values, strict=True))
            state = (stored["state"] or b"").decode()
            if state == states.RECEIVED:
                plans.append(self.plan(eid, stored))
                continue
            if recovered and state in (states.HELD, states.DELAYED) and not stored["reason"]:
                # Committed, then the router died before placing the hold: place it now.
                self.plan(eid, stored).admission.settle(self.redis, eid, self.settings.event_ttl_seconds)
            out[eid] = Committed(eid, route=state == states.QUEUED)
        if plans:
            results, jobs = self._commit_all(plans)
            for plan, result, exist in zip(plans, results, jobs, strict=True):
                out[plan.event_id] = self.finish(plan, result, exist)
        return [out[eid] for eid in event_ids]

    def _commit_all(self, plans: list[Plan]) -> tuple[list[Any], list[list[bool]]]:
        """Commit every plan, and look whether the jobs of the actions to queue exist already (a
        delivery id seen again after its dedupe key expired), in one round trip. EVALSHA without
        redis-py's SCRIPT EXISTS round trip first: the script is loaded once, and again after a
        Redis restart emptied the script cache (every call of the batch failed then, none ran)."""
        for tries_left in (1, 0):
            with self.redis.pipeline(transaction=False) as pipe:
                for plan in plans:
                    pipe.evalsha(self._commit.sha, len(plan.keys), *plan.keys, self.holder, *plan.args)
                for plan in plans:
                    for aid in plan.action_ids:
                        pipe.exists(Job.key_for(aid))
                try:
                    replies = pipe.execute()
                except redis.exceptions.NoScriptError:
                    if not tries_left:
                        raise
                    self.redis.script_load(scripts.MAP_COMMIT)
                    continue
            exists = iter(replies[len(plans) :])
            return replies[: len(plans)], [[bool(next(exists)) for _ in plan.action_ids] for plan in plans]
        raise AssertionError("unreachable")

    def plan(self, event_id: str, stored: dict[str, Any]) -> Plan:
        """Map one stored event: its actions, state and hold, and the commit script's keys and
        arguments (but the lease holder's)."""
        # The mapping runs after the ingress answered, in another process: its `relay.map` span
        # continues the event's trace from the traceparent the ingress stored (relay.tracing), so
        # the trace still holds the mapping step between the ingress's spans and the delivery's.
        traceparent = stored.get("traceparent")
        with tracing.continued(
            "relay.map",
            traceparent.decode() if traceparent else None,
            {"relay.event_id": event_id, "relay.source": (stored["source"] or b"").decode()},
        ):
            return self._plan(event_id, stored)

    def _plan(self, event_id: str, stored: dict[str, Any]) -> Plan:
        source_name = stored["source"].decode()
        delivery_id = stored["delivery_id"].decode()
        error: str | None = None
        actions: list[Any] = []
        gateway = None
        skip: str | None = None
        admission = hold.Admission()
        try:
            source = self.sources.get(source_name)
            if source is None:
                raise TransformError(f"source {source_name!r} is not in the configuration any more")
            mapped = self.pipeline.run(
                source,
                orjson.loads(stored["headers"] or b"{}"),
                stored["body"] or b"",
                delivery_id=delivery_id,
                event_id=event_id,
                received_at=float(stored["received_at"] or 0),
                query=orjson.loads(stored["query"]) if stored["query"] else None,
            )
            skip, decision = mapped.skip, mapped.decision
        except RelayError as exc:
            error = f"{type(exc).__name__}: {exc.message}"
        except Exception as exc:  # a user's transform failed: park the event, keep mapping
            error = describe(exc)
        else:
            actions, gateway = decision.actions, decision.gateway
            admission = hold.admit(self.redis, decision, source_name, delivery_id)
            if admission.dropped is not None:  # a cooldown's `drop` window: recorded as skipped
                skip, actions = admission.dropped, []
        routed = [] if admission.hold is not None else actions
        lanes = session_lanes(source_name, delivery_id, routed)
        now = time.time()
        state = states.PARKED if error else (states.QUEUED if routed else states.SKIPPED)
        if admission.hold is not None and state == states.SKIPPED:  # its hold's offer follows at once
            state = states.DELAYED if admission.hold.kind == "delay" else states.HELD
        tracing.set_attributes(relay__state=state, relay__actions=len(routed))  # the relay.map span
        encoded = encode_actions(source_name, delivery_id, actions, gateway)
        return Plan(
            event_id=event_id,
            source=source_name,
            delivery_id=delivery_id,
            keys=[
                keys.MAPPER,
                keys.event(event_id),
                keys.STATS,
                keys.EVENTS_BY_SOURCE_PREFIX + source_name,
                keys.PARKED,
                keys.LANES,
                *(lane for lane, _ in lanes),
            ],
            args=[
                event_id,
                state,
                encoded,
                len(routed),
                error or "",
                skip or "",
                repr(now),
                self.settings.event_ttl_seconds,
                repr(now - self.settings.event_ttl_seconds),
                keys.ACTION_PREFIX,
                *(aid for _, aid in lanes),
            ],
            admission=admission,
            skip=skip,
            error=error,
            actions=len(actions),
            routed=bool(routed),
            encoded=encoded,
            received_at=stored["received_at"] or b"",
            action_ids=[action_id(source_name, delivery_id, i) for i in range(len(routed))],
        )

    def finish(self, plan: Plan, result: Any, jobs: list[bool]) -> Committed:
        """After the commit: place the hold, note the skip, say what happened. `jobs`: whether the
        queued actions' jobs exist already."""
        answer = result.decode() if isinstance(result, bytes) else str(result)
        if answer == "lease":
            raise LeaseLost(f"mapping lease lost before event {plan.event_id} was committed")
        if answer != "ok":  # mapped meanwhile by the lease's last holder, or expired
            return Committed(plan.event_id, route=answer == "done")
        fields = {"source": plan.source, "delivery_id": plan.delivery_id, "event_id": plan.event_id}
        plan.admission.settle(self.redis, plan.event_id, self.settings.event_ttl_seconds)
        if plan.error is not None:
            log.warning(
                "transform failed; event parked", extra={**fields, "error": plan.error.splitlines()[-1]}
            )
        elif plan.skip:
            note_skip(self.redis, plan.event_id, plan.skip)
            log.info("event mapped, no action", extra={**fields, "reason": plan.skip})
        elif not plan.actions:
            log.info("event mapped, no action", extra={**fields, "reason": "no mapping"})
        elif plan.admission.hold is not None:
            log.debug("event mapped and held", extra={**fields, "held": plan.admission.hold.kind})
        else:
            log.debug("event mapped", extra={**fields, "actions": plan.actions})
        if not plan.routed:
            return Committed(plan.event_id, route=False)
        routing = (plan.encoded, plan.source.encode(), plan.received_at, plan.delivery_id.encode())
        return Committed(plan.event_id, route=True, routing=routing, jobs=jobs)


def describe(exc: BaseException) -> str:
    if isinstance(exc, TransformError):
        return f"TransformError: {exc}"
    return "".join(traceback.format_exception(exc)).strip()
