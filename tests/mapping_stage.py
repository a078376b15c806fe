"""The mapping stage seen from a test: wait for a received event to be mapped, mapping it in this
process when no worker does (a test with only an ingress running), and read its outcome as the
ingress's answer used to give it: actions, skipped, parked or held."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any
from unittest import mock

import redis

from relay.config import Settings, load_settings
from relay.worker.dispatch import Router, ensure_group


class MappingStage:
    """A router of the test's own process, for one relay configuration."""

    def __init__(self, client: redis.Redis, settings: Settings, name: str = "test-mapper") -> None:
        self.client = client
        self.router = Router(client, settings, consumer=f"{name}-{os.getpid()}")

    @classmethod
    def from_config(cls, client: redis.Redis, config: Path, env: dict[str, str]) -> MappingStage:
        with mock.patch.dict(os.environ, env):
            return cls(client, load_settings(config))

    def step(self) -> None:
        """Map and route what is waiting, if no other router holds the lease; then let it go."""
        ensure_group(self.client)
        try:
            self.router.step(0)
        finally:
            self.router.mapper.release()

    def mapped(self, event_id: str, timeout: float = 10.0) -> dict[str, str]:
        """The event's record once it is mapped (state no longer `received`)."""
        deadline = time.monotonic() + timeout
        while True:
            record = {
                k.decode(): v.decode(errors="replace")
                for k, v in self.client.hgetall(f"relay:event:{event_id}").items()
            }
            if record.get("state") not in ("received", None):
                return record
            if time.monotonic() > deadline:
                raise AssertionError(f"event {event_id} was not mapped within {timeout}s: {record}")
            self.step()
            time.sleep(0.01)

    def outcome(self, answer: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """The ingress's answer with what the mapping made of its event: `actions` (queued now),
        `skipped` (the reason), `parked` or `held` (cooldown, batch or delay)."""
        if answer.get("duplicate") or "eventId" not in answer:
            return answer
        record = self.mapped(answer["eventId"], timeout)
        state = record["state"]
        out = {**answer, "state": state, "actions": int(record.get("action_count") or 0)}
        if state == "parked":
            out["parked"] = True
        elif state == "delayed":
            out["held"] = "delay"
        elif state == "held":
            out["held"] = record.get("reason", "").split(" ", 1)[0]  # "cooldown ..." or "batch ..."
        elif state in ("skipped", "cancelled"):
            out["skipped"] = record.get("reason") or "no action"
        return out
