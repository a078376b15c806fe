"""Trigger agent turns and wakes from Python code, durably: `RelayClient` and `AsyncRelayClient`.

A client records an action straight into the relay's Redis, exactly as the ingress records a
webhook (the same script: dedupe key, event, event-log entry and inbox entry in one call), so no
ingress has to run: any `relay worker` delivers it, with retries, backoff, session order and its
stable `Idempotency-Key`, even if the gateway is down when you call. `relay agent` and
`relay wake`, `relay send` and `relay tool` are this client on the command line.

Sync::

    from relay.client import DeliveryFailed, RelayClient

    relay = RelayClient("redis://127.0.0.1:6379/0")          # or a Settings, or a Redis client
    action_id = relay.agent(message="Summarise overnight alerts", name="Cron",
                            session_key="hook:cron:daily",
                            idempotency_key="daily-2026-01-12")  # the same key twice: one run
    try:
        status = relay.wait(action_id, timeout=120)           # until delivered
        print("run", status.run_id)
    except DeliveryFailed as exc:                              # dead-lettered
        print("gateway said", exc.status.last_status, exc.status.last_error)

    relay.wake(text="New email", mode="now")

Async::

    from relay.client import AsyncRelayClient

    async with AsyncRelayClient("redis://127.0.0.1:6379/0") as relay:
        action_id = await relay.agent(message="Build failed on main", agent_id="ops")
        await relay.wait(action_id, timeout=60)

A delivery id is the idempotency key when given, else a fresh UUID; keys are scoped by source
(`client` here, `cli` for the command line), and a key recorded again within `dedupe_ttl_seconds`
returns the first call's action id without recording anything.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from relay.config import Settings, load_settings
from relay.errors import ConfigError
from relay.protocol.actions import AgentAction, AnyAction, SendAction, ToolAction, WakeAction
from relay.store import keys, states
from relay.store.connection import connect, connect_async
from relay.store.events import EventStore
from relay.store.submit import Submitted, cut, event_fields, record_action, submitted, text_map

__all__ = [
    "ActionStatus",
    "AsyncRelayClient",
    "DeliveryFailed",
    "RelayClient",
    "Submitted",
    "WaitTimeout",
    "record_action",
]

FINAL = frozenset(states.FINISHED)
MAX_DELIVERY_ID = 200


@dataclass(frozen=True, slots=True)
class ActionStatus:
    """An action's record: `state` is queued, waiting (for its session's turn), delivering,
    retrying, paused (gateway down), delivered or dead."""

    action_id: str
    state: str
    attempts: int = 0
    last_status: str = ""
    last_error: str = ""
    run_id: str = ""

    @property
    def done(self) -> bool:
        return self.state in FINAL

    @classmethod
    def from_record(cls, aid: str, record: dict[str, str]) -> ActionStatus:
        # No record yet: recorded, not yet routed to a job.
        return cls(
            aid,
            record.get("state") or states.QUEUED,
            int(record.get("attempts") or 0),
            record.get("last_status", ""),
            record.get("last_error", ""),
            record.get("run_id", ""),
        )


class DeliveryFailed(Exception):
    """The action was dead-lettered: the gateway refused it for good, or retries ran out."""

    def __init__(self, status: ActionStatus) -> None:
        detail = f"{status.last_status}: {status.last_error}" if status.last_status else status.last_error
        super().__init__(f"action {status.action_id} is dead: {detail or 'no answer'}")
        self.status = status


class WaitTimeout(TimeoutError):
    """`wait` ran out of time; the action stays queued and will still be delivered."""

    def __init__(self, status: ActionStatus, timeout: float) -> None:
        super().__init__(f"action {status.action_id} still {status.state} after {timeout:g}s")
        self.status = status


def _delivery_id(idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return uuid.uuid4().hex
    if not idempotency_key or len(idempotency_key) > MAX_DELIVERY_ID:
        raise ValueError(f"idempotency key must be 1 to {MAX_DELIVERY_ID} characters")
    return idempotency_key


def agent_action(message: str, **fields: Any) -> AgentAction:
    """An `AgentAction` from snake_case keywords; None values are left out. Raises ValueError."""
    return AgentAction.model_validate(
        {"message": message, **{k: v for k, v in fields.items() if v is not None}}
    )


def send_action(
    to: str, message: str | None = None, *, media: list[str] | tuple[str, ...] = (), **fields: Any
) -> SendAction:
    """A `SendAction` (the gateway's `send` params) from snake_case keywords; None values are left
    out. One media URL is `mediaUrl`, several are `mediaUrls`. Raises ValueError."""
    body: dict[str, Any] = {"to": to, "message": message, **fields}
    if len(media) == 1:
        body["media_url"] = media[0]
    elif media:
        body["media_urls"] = list(media)
    return SendAction.model_validate({k: v for k, v in body.items() if v is not None})


def tool_action(tool: str, args: dict[str, Any] | None = None, **fields: Any) -> ToolAction:
    """A `ToolAction` (`POST /tools/invoke`): `tool` with `args`; `action` and `session_key` optional."""
    body = {"tool": tool, "args": args or {}, **fields}
    return ToolAction.model_validate({k: v for k, v in body.items() if v is not None})


def _settings_and_url(target: str | Settings | None) -> tuple[Settings, str]:
    if isinstance(target, str):
        # Defaults without reading the environment or a file: the URL is all the caller gave.
        return Settings.model_construct(redis_url=target), target
    from relay.store.embedded import NoRedis, resolve_redis_url

    settings = target if target is not None else load_settings(lenient_secrets=True)
    try:  # redis_url, else the running `relay up`'s embedded Redis
        return settings, resolve_redis_url(settings)
    except NoRedis as exc:
        raise ConfigError(str(exc)) from None


class RelayClient:
    """Records agent turns and wakes for the relay's workers to deliver (blocking calls).

    `target` is a Redis URL, a `Settings` (its `redis_url` and limits are used), or None for
    `load_settings()` (relay.yaml / RELAY_CONFIG and the RELAY_ environment). Pass `redis` to
    reuse a client you already have.
    """

    def __init__(
        self, target: str | Settings | None = None, *, source: str = "client", redis: Redis | None = None
    ) -> None:
        self.settings, url = _settings_and_url(target)
        self.redis = redis if redis is not None else connect(url, self.settings)
        self.source = source

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.redis.close()

    def submit(self, action: AnyAction, *, idempotency_key: str | None = None) -> Submitted:
        """Record `action`; returns its ids. A repeated idempotency key records nothing new."""
        return record_action(
            self.redis, self.settings, action, source=self.source, delivery_id=_delivery_id(idempotency_key)
        )

    def agent(
        self,
        message: str,
        *,
        name: str | None = None,
        agent_id: str | None = None,
        session_key: str | None = None,
        wake_mode: str | None = None,
        deliver: bool | None = None,
        channel: str | None = None,
        to: str | None = None,
        model: str | None = None,
        thinking: str | None = None,
        timeout_seconds: int | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Queue an agent turn (`POST /hooks/agent`); returns the action id.

        >>> RelayClient(url).agent(message="Check the build", agent_id="ops", thinking="low")
        'act_5f0c…'
        """
        action = agent_action(
            message,
            name=name,
            agent_id=agent_id,
            session_key=session_key,
            wake_mode=wake_mode,
            deliver=deliver,
            channel=channel,
            to=to,
            model=model,
            thinking=thinking,
            timeout_seconds=timeout_seconds,
        )
        return self.submit(action, idempotency_key=idempotency_key).action_id

    def wake(self, text: str, *, mode: str = "now", idempotency_key: str | None = None) -> str:
        """Queue a wake (`POST /hooks/wake`, a system event); returns the action id.

        The gateway does not dedupe wakes; the relay sends each action once.
        """
        action = WakeAction.model_validate({"text": text, "mode": mode})
        return self.submit(action, idempotency_key=idempotency_key).action_id

    def send(
        self, to: str, message: str | None = None, *, idempotency_key: str | None = None, **fields: Any
    ) -> str:
        """Queue a channel message (the gateway's WebSocket `send`, no agent turn); returns the action id.

        Keywords: channel, media (URLs), reply_to_id, thread_id, account_id, agent_id, silent, session_key.
        """
        return self.submit(send_action(to, message, **fields), idempotency_key=idempotency_key).action_id

    def tool(
        self,
        tool: str,
        args: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> str:
        """Queue one gateway tool call (`POST /tools/invoke`); returns the action id."""
        return self.submit(tool_action(tool, args, **fields), idempotency_key=idempotency_key).action_id

    def status(self, action_id: str) -> ActionStatus:
        raw = self.redis.hgetall(keys.action(action_id))
        return ActionStatus.from_record(action_id, text_map(raw))

    def wait(self, action_id: str, timeout: float | None = None, *, poll: float = 0.2) -> ActionStatus:
        """Block until the action is delivered (returns its status) or dead (raises DeliveryFailed).

        Raises WaitTimeout after `timeout` seconds (None: no limit); the action stays queued.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(action_id)
            if status.state == states.DELIVERED:
                return status
            if status.state == states.DEAD:
                raise DeliveryFailed(status)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(status, timeout or 0)
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))


class AsyncRelayClient:
    """`RelayClient` for asyncio code; concurrent calls share script calls (group commit)."""

    def __init__(
        self, target: str | Settings | None = None, *, source: str = "client", redis: AsyncRedis | None = None
    ) -> None:
        self.settings, url = _settings_and_url(target)
        self.redis = redis if redis is not None else connect_async(url, self.settings)
        self.source = source
        self.store = EventStore(
            self.redis, dedupe_ttl=self.settings.dedupe_ttl_seconds, event_ttl=self.settings.event_ttl_seconds
        )

    async def __aenter__(self) -> AsyncRelayClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def submit(self, action: AnyAction, *, idempotency_key: str | None = None) -> Submitted:
        delivery_id = _delivery_id(idempotency_key)
        fields = event_fields(self.source, delivery_id, cut(action, self.settings.max_message_bytes))
        return submitted(self.source, delivery_id, await self.store.record(**fields))

    async def agent(self, message: str, *, idempotency_key: str | None = None, **fields: Any) -> str:
        """Queue an agent turn; keywords as `RelayClient.agent`. Returns the action id."""
        return (await self.submit(agent_action(message, **fields), idempotency_key=idempotency_key)).action_id

    async def wake(self, text: str, *, mode: str = "now", idempotency_key: str | None = None) -> str:
        action = WakeAction.model_validate({"text": text, "mode": mode})
        return (await self.submit(action, idempotency_key=idempotency_key)).action_id

    async def status(self, action_id: str) -> ActionStatus:
        raw = await self.redis.hgetall(keys.action(action_id))
        return ActionStatus.from_record(action_id, text_map(raw))

    async def wait(self, action_id: str, timeout: float | None = None, *, poll: float = 0.2) -> ActionStatus:
        """`RelayClient.wait` without blocking the event loop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = await self.status(action_id)
            if status.state == states.DELIVERED:
                return status
            if status.state == states.DEAD:
                raise DeliveryFailed(status)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(status, timeout or 0)
            await asyncio.sleep(
                poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
            )
