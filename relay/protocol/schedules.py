"""Schedules: the `schedules:` entries of relay.yaml, when each one is due, and what it sends.

Pure: no I/O (`relay.worker.ticker` runs them). A schedule fires on a 5-field `cron` expression in
its `timezone`, `every` interval (aligned to multiples of the interval since 1970-01-01 UTC, so
every worker computes the same ticks and `every: 1h` fires on the hour), or once `at` a time.
Each tick has a deterministic delivery id, `<name>@<tick time, UTC ISO>`, so recording a tick
twice (two workers, a restart) is deduplicated like any redelivered webhook.

`catch_up` says what happens to ticks missed while no worker ran: a tick is on time when it is
fired within `grace_seconds` of its time. `skip` (the default) drops late ticks and carries on
with the next one; `once` fires one event (for the latest missed tick) when a worker is back.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from relay.errors import TransformError
from relay.protocol.actions import AgentAction, Thinking, WakeAction, WakeMode
from relay.protocol.compose import DEFAULT_MAX_MESSAGE_BYTES
from relay.protocol.event import Event
from relay.protocol.mapping import Mapper
from relay.protocol.mapping_config import MappingConfig

ScheduleName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"(\d+)\s*([smhd])")


def parse_interval(value: str | int) -> int:
    """`30s`, `5m`, `2h`, `1d`, `1h30m` or a number of seconds → seconds (at least 1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        text = str(value).strip().lower()
        if text.isdigit():
            seconds = int(text)
        else:
            if not text or _INTERVAL.sub("", text).strip():
                raise ValueError(f"{value!r} is not an interval like 30s, 5m, 2h, 1d or 1h30m")
            seconds = sum(int(n) * _UNITS[u] for n, u in _INTERVAL.findall(text))
    if seconds < 1:
        raise ValueError("the interval must be at least 1s")
    return seconds


def parse_at(value: str, tz: ZoneInfo) -> datetime:
    """An ISO 8601 time; without an offset it is read in `tz`."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time like 2026-01-12T08:00:00+01:00") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


def check_cron(expr: str) -> str:
    if len(expr.split()) != 5 or not croniter.is_valid(expr):
        raise ValueError(f"{expr!r} is not a 5-field cron expression (minute hour day month weekday)")
    return expr


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r} (an IANA name such as Europe/Berlin)") from None


class ScheduleConfig(BaseModel):
    """One entry of `schedules:`: when (`cron`, `every` or `at`) and what (an agent turn or a
    wake, with the fields and `{{...}}` templates of a mapping; `{{now}}` is the firing time)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    cron: str | None = None
    every: str | int | None = None
    at: str | None = None
    timezone: str = "UTC"
    catch_up: Literal["skip", "once"] = "skip"
    grace_seconds: float = Field(default=60.0, gt=0, description="a tick fired later than this is missed")
    enabled: bool = True

    action: Literal["agent", "wake"] = "agent"
    message: str | None = Field(default=None, validation_alias=AliasChoices("message", "messageTemplate"))
    text: str | None = Field(default=None, validation_alias=AliasChoices("text", "textTemplate"))
    wake_mode: WakeMode | None = Field(default=None, alias="wakeMode")
    name: str | None = None
    agent_id: str | None = Field(default=None, alias="agentId")
    session_key: str | None = Field(default=None, alias="sessionKey")
    deliver: bool | None = None
    channel: str | None = None
    to: str | None = None
    model: str | None = None
    thinking: Thinking | None = None
    timeout_seconds: int | None = Field(default=None, alias="timeoutSeconds", ge=0)

    @model_validator(mode="after")
    def _check(self) -> ScheduleConfig:
        given = [k for k in ("cron", "every", "at") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of cron, every or at")
        tz = zone(self.timezone)
        if self.cron is not None:
            check_cron(self.cron)
        if self.every is not None:
            parse_interval(self.every)
        if self.at is not None:
            parse_at(self.at, tz)
        if self.action == "agent" and not (self.message or "").strip():
            raise ValueError("an agent schedule needs a message")
        if self.action == "wake" and not (self.text or "").strip():
            raise ValueError("a wake schedule needs a text")
        try:
            build_action("check", self)
        except TransformError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def kind(self) -> Literal["cron", "every", "at"]:
        return "cron" if self.cron is not None else "every" if self.every is not None else "at"

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone})"
        if self.every is not None:
            return f"every {self.every}"
        return f"at {self.at}"


# --- when ---------------------------------------------------------------------------------------


def latest_tick(cfg: ScheduleConfig, now: float) -> float | None:
    """The latest tick at or before `now` (epoch seconds), or None."""
    if cfg.every is not None:
        period = parse_interval(cfg.every)
        return float(math.floor(now / period) * period)
    tz = zone(cfg.timezone)
    if cfg.cron is not None:
        # +1 µs: croniter's get_prev from a time that is itself a tick returns the one before.
        start = datetime.fromtimestamp(now, tz) + timedelta(microseconds=1)
        return float(croniter(cfg.cron, start).get_prev(datetime).timestamp())
    at = parse_at(cfg.at or "", tz).timestamp()
    return at if at <= now else None


def next_tick(cfg: ScheduleConfig, after: float) -> float | None:
    """The first tick strictly after `after`, or None (an `at` that has passed)."""
    if cfg.every is not None:
        period = parse_interval(cfg.every)
        return float((math.floor(after / period) + 1) * period)
    tz = zone(cfg.timezone)
    if cfg.cron is not None:
        return float(croniter(cfg.cron, datetime.fromtimestamp(after, tz)).get_next(datetime).timestamp())
    at = parse_at(cfg.at or "", tz).timestamp()
    return at if at > after else None


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now: fire `tick` (None: fire nothing), then remember `advance_to` as handled."""

    tick: float | None
    advance_to: float
    late: bool


def decide(cfg: ScheduleConfig, now: float, handled: float) -> Decision | None:
    """`handled`: the last tick fired or skipped (or when the schedule was first seen). None when
    no tick is due; else whether the latest due tick fires, by the catch-up policy."""
    due = latest_tick(cfg, now)
    if due is None or due <= handled:
        return None
    late = now - due > cfg.grace_seconds
    if late and cfg.catch_up == "skip":
        return Decision(tick=None, advance_to=due, late=True)
    return Decision(tick=due, advance_to=due, late=late)


def tick_iso(tick: float) -> str:
    when = datetime.fromtimestamp(tick, UTC)
    spec = "seconds" if when.microsecond == 0 else "milliseconds"
    return when.isoformat(timespec=spec).replace("+00:00", "Z")


def tick_id(name: str, tick: float) -> str:
    """The delivery id of one tick: the same on every worker, so a tick is recorded once."""
    return f"{name}@{tick_iso(tick)}"


def source_name(name: str) -> str:
    return f"schedule:{name}"


# --- what ---------------------------------------------------------------------------------------

_ACTION_FIELDS = (
    "name",
    "agent_id",
    "session_key",
    "deliver",
    "channel",
    "to",
    "model",
    "thinking",
    "timeout_seconds",
)


def build_action(
    name: str, cfg: ScheduleConfig, max_message_bytes: int | None = None
) -> AgentAction | WakeAction:
    """The action a tick sends: the schedule's fields as a mapping's, rendered with an empty
    payload (`{{now}}` is the time it is rendered). Raises TransformError if a template renders empty."""
    fields: dict[str, Any] = {k: getattr(cfg, k) for k in _ACTION_FIELDS}
    fields.update(action=cfg.action, message_template=cfg.message, text_template=cfg.text)
    if cfg.wake_mode is not None:
        fields["wake_mode"] = cfg.wake_mode
    mapping = MappingConfig.model_validate(fields)  # it matches every event: no `match`
    event = Event(source=source_name(name), payload={}, path=source_name(name))
    limit = DEFAULT_MAX_MESSAGE_BYTES if max_message_bytes is None else max_message_bytes
    [action] = Mapper([mapping], {}, max_message_bytes=limit).decide(event).actions
    assert isinstance(action, AgentAction | WakeAction)  # a schedule's action is agent or wake
    return action
