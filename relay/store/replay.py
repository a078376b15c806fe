"""Replay: re-run the mapping on a stored event with the current config and transforms.

A parked event (its transform raised, returned the wrong type or ran past its budget) keeps its
headers and raw body. Once the transform is fixed, `relay replay` maps the event again and, in one
script call, writes its actions into the event, puts it on the inbox (the router turns it into RQ
jobs) and takes it off the parked list. Action ids come from (source, delivery id, index), so a
replayed action has the id, and the Idempotency-Key, it would have had the first time.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any

import orjson
from redis import Redis

from relay.config import Settings
from relay.errors import RelayError, TransformError
from relay.protocol.mapping import ActionResult
from relay.protocol.pipeline import Pipeline, Source, build_sources
from relay.store import keys, scripts, states
from relay.store.events import encode_actions, load_event, session_lanes


@dataclass(frozen=True, slots=True)
class Outcome:
    event_id: str
    state: str  # queued | skipped | parked (failed again) | missing | refused
    actions: int = 0
    detail: str = ""
    planned: tuple[ActionResult, ...] = ()  # a dry run's actions, shown instead of queued

    @property
    def ok(self) -> bool:
        return self.state in (states.QUEUED, states.SKIPPED)


class Replayer:
    """Holds the current config's sources and pipeline (mapper, transform budget) for a batch of replays."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.sources: dict[str, Source] = build_sources(settings)
        self.pipeline = Pipeline.from_settings(settings)
        self._commit = redis.register_script(scripts.REPLAY_COMMIT)
        self._failed = redis.register_script(scripts.REPLAY_FAILED)

    def remap(self, stored: dict[str, Any]) -> tuple[list[ActionResult], str | None, str | None]:
        """The actions the stored event becomes now, the preset's skip reason if any, and the gateway
        they go to. Raises whatever the transform raises."""
        source = self.sources.get(stored["source"])
        if source is None:
            raise TransformError(f"source {stored['source']!r} is not in the configuration any more")
        headers = {str(k).lower(): str(v) for k, v in stored["headers"].items()}
        mapped = self.pipeline.run(
            source,
            headers,
            stored["body"],
            delivery_id=stored["delivery_id"],
            event_id=stored["id"],
            received_at=stored["received_at"],
            query=stored["query"],
        )
        if mapped.skip is not None:
            return [], mapped.skip, None
        return mapped.decision.actions, None, mapped.decision.gateway

    def replay(self, event_id: str, *, force: bool = False) -> Outcome:
        """Map one event again and queue its actions; only parked events unless `force`."""
        stored = load_event(self.redis, event_id)
        if stored is None:
            self.redis.zrem(keys.PARKED, event_id)  # expired: nothing left to replay
            return Outcome(event_id, "missing", detail="no such event (expired or never recorded)")
        expected = "" if force else states.PARKED
        if not force and stored.get("state") != states.PARKED:
            return Outcome(
                event_id,
                "refused",
                detail=f"state is {stored.get('state')!r}, not parked; "
                "--force maps it again (actions already delivered are not sent twice)",
            )
        now = repr(time.time())
        try:
            actions, reason, gateway = self.remap(stored)
        except RelayError as exc:
            error = f"{type(exc).__name__}: {exc.message}"
        except TransformError as exc:
            error = f"TransformError: {exc}"
        except Exception as exc:
            error = "".join(traceback.format_exception(exc)).strip()
        else:
            encoded = encode_actions(stored["source"], stored["delivery_id"], actions, gateway)
            lanes = session_lanes(stored["source"], stored["delivery_id"], actions)
            state = states.QUEUED if actions else states.SKIPPED
            result = self._commit(
                keys=[keys.event(event_id), keys.INBOX, keys.PARKED, keys.LANES, *(k for k, _ in lanes)],
                args=[
                    event_id,
                    expected,
                    state,
                    encoded,
                    len(actions),
                    now,
                    "1" if actions else "0",
                    self.settings.event_ttl_seconds,
                    keys.ACTION_PREFIX,
                    *(aid for _, aid in lanes),
                ],
            )
            return self._outcome(event_id, result, state, len(actions), reason or "")
        result = self._failed(keys=[keys.event(event_id)], args=[expected, error, now])
        return self._outcome(event_id, result, states.PARKED, 0, error)

    def preview(self, event_id: str, *, force: bool = False) -> Outcome:
        """What `replay` would do, changing nothing: the same checks and mapping, no write.

        Mapping needs no secret (nothing is verified or sent), so it runs with unset `env:` ones.
        """
        stored = load_event(self.redis, event_id)
        if stored is None:
            return Outcome(event_id, "missing", detail="no such event (expired or never recorded)")
        if not force and stored.get("state") != states.PARKED:
            return Outcome(
                event_id,
                "refused",
                detail=f"state is {stored.get('state')!r}, not parked; "
                "--force maps it again (actions already delivered are not sent twice)",
            )
        try:
            actions, reason, _ = self.remap(stored)
        except RelayError as exc:
            return Outcome(event_id, states.PARKED, detail=f"{type(exc).__name__}: {exc.message}")
        except TransformError as exc:
            return Outcome(event_id, states.PARKED, detail=f"TransformError: {exc}")
        except Exception as exc:
            return Outcome(event_id, states.PARKED, detail="".join(traceback.format_exception(exc)).strip())
        state = states.QUEUED if actions else states.SKIPPED
        return Outcome(event_id, state, len(actions), reason or "", tuple(actions))

    @staticmethod
    def _outcome(event_id: str, result: Any, state: str, count: int, detail: str) -> Outcome:
        text = result.decode() if isinstance(result, bytes) else str(result)
        if text == "missing":
            return Outcome(event_id, "missing", detail="no such event (expired or never recorded)")
        if text.startswith("state:"):
            return Outcome(event_id, "refused", detail=f"state changed to {text[6:]!r} meanwhile")
        return Outcome(event_id, state, count, detail)


def parked_ids(redis: Redis, source: str | None = None, limit: int | None = None) -> list[str]:
    """Parked event ids, oldest first, optionally only those of one source."""
    ids = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in redis.zrange(keys.PARKED, 0, -1)]
    if source is not None:
        with redis.pipeline(transaction=False) as pipe:
            for eid in ids:
                pipe.hget(keys.event(eid), "source")
            sources = pipe.execute()
        ids = [eid for eid, src in zip(ids, sources, strict=True) if src is None or src.decode() == source]
    return ids[:limit] if limit is not None else ids


_WOULD = {states.QUEUED: "would queue", states.SKIPPED: "would skip", states.PARKED: "would stay parked"}


def describe(outcome: Outcome, *, dry_run: bool = False) -> str:
    state = _WOULD.get(outcome.state, outcome.state) if dry_run else outcome.state
    line = f"{outcome.event_id}  {state}"
    if outcome.state == states.QUEUED:
        line += f"  {outcome.actions} action(s)"
    if outcome.detail and outcome.state != states.PARKED:
        line += f"  ({outcome.detail})"
    return line


def outcome_json(outcome: Outcome, *, dry_run: bool = False) -> bytes:
    out: dict[str, Any] = {
        "eventId": outcome.event_id,
        "state": outcome.state,
        "actions": outcome.actions,
        "detail": outcome.detail,
    }
    if dry_run:
        out["dryRun"] = True
        out["planned"] = [{"kind": a.kind, "body": a.body()} for a in outcome.planned]
    return orjson.dumps(out)
