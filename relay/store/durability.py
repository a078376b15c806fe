"""What survives a Redis restart or the loss of its host: `relay check` and `relay up` report it.

A 2xx from the ingress means the event is in Redis. Whether it is still there after Redis
restarts depends on Redis's persistence (AOF, RDB snapshots); after the host is lost, on
replicas (and `durability.min_replicas`). `assess` turns those facts into plain lines, with a
warning wherever an acknowledged event could be lost; `inspect` reads the facts from a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.store.connection import is_sentinel, parse_sentinel_url, sentinels


@dataclass(frozen=True, slots=True)
class Facts:
    appendonly: bool | None  # None: the server would not say (CONFIG disabled, INFO cut down)
    appendfsync: str | None
    save: str | None  # RDB snapshot rules; "" when off
    replicas: int  # connected replicas
    sentinel: str | None  # the master's name when reached through Sentinel
    min_replicas: int = 0
    sentinels: tuple[int, int] | None = None  # (answering, configured)


def assess(facts: Facts) -> list[tuple[str, str]]:
    """(level, text) lines, level being "ok", "note" or "warning"."""
    lines: list[tuple[str, str]] = []
    if facts.appendonly:
        fsync = facts.appendfsync or "unknown"
        loss = {
            "always": "nothing acknowledged",
            "everysec": "about the last second of acknowledged events",
            "no": "up to ~30 s of acknowledged events (fsync left to the OS)",
        }.get(fsync, "an unknown amount")
        lines.append(("ok", f"redis persistence: appendonly yes, appendfsync {fsync}"))
        lines.append(
            (
                "note" if fsync != "no" else "warning",
                f"a crash of the Redis host loses {loss}; a Redis restart alone loses nothing",
            )
        )
    elif facts.appendonly is None:
        lines.append(
            (
                "warning",
                "redis persistence: unknown (the server does not report appendonly); "
                "make sure AOF is on, or acknowledged events may not survive a restart",
            )
        )
    elif facts.save:
        lines.append(
            (
                "warning",
                f"redis persistence: appendonly no, RDB snapshots only (save {facts.save!r}): "
                "events acknowledged since the last snapshot are lost when Redis restarts; "
                "turn on appendonly",
            )
        )
    else:
        lines.append(
            (
                "warning",
                "redis persistence: NONE (appendonly no, no RDB snapshots): every "
                "acknowledged event is lost when Redis restarts; turn on appendonly",
            )
        )
    where = f"Sentinel, master {facts.sentinel!r}" if facts.sentinel else "a single Redis URL (no Sentinel)"
    lines.append(("ok", f"redis topology: {where}, {facts.replicas} replica(s) connected"))
    if facts.sentinels is not None:
        up, configured = facts.sentinels
        level = "ok" if up > configured // 2 else "warning"
        lines.append(
            (
                level,
                f"sentinels: {up} of {configured} answer"
                + ("" if level == "ok" else "; without a majority no failover can happen"),
            )
        )
    if facts.min_replicas:
        if facts.replicas < facts.min_replicas:
            lines.append(
                (
                    "warning",
                    f"durability.min_replicas is {facts.min_replicas} but {facts.replicas} "
                    "replica(s) are connected: the ingress answers 503 to every event",
                )
            )
        else:
            lines.append(
                (
                    "ok",
                    f"durability.min_replicas {facts.min_replicas}: an event is acknowledged only "
                    "once that many replicas hold it",
                )
            )
    elif facts.replicas:
        lines.append(
            (
                "note",
                "replication is asynchronous and durability.min_replicas is 0: a failover can "
                "lose the last acknowledged events (docs/high-availability.md)",
            )
        )
    return lines


def inspect(client: Any, url: str | None, min_replicas: int = 0, settings: Any = None) -> Facts:
    """Read the facts from a live server; CONFIG GET may be refused (managed Redis): INFO then."""
    persistence = client.info("persistence")
    replication = client.info("replication")
    appendonly: bool | None = bool(persistence["aof_enabled"]) if "aof_enabled" in persistence else None
    appendfsync = save = None
    try:
        config = client.config_get("append*") | client.config_get("save")
        appendonly = _text(config.get(b"appendonly", config.get("appendonly"))) == "yes"
        appendfsync = _text(config.get(b"appendfsync", config.get("appendfsync")))
        save = _text(config.get(b"save", config.get("save")))
    except Exception:  # noqa: S110 - CONFIG renamed or disabled: INFO's answer stands
        pass
    sentinel = parse_sentinel_url(url).master if url and is_sentinel(url) else None
    counted = None
    if url and sentinel:
        clients = sentinels(url, settings)
        counted = (sum(_answers(s) for s in clients), len(clients))
    return Facts(
        appendonly,
        appendfsync,
        save,
        int(replication.get("connected_slaves", 0)),
        sentinel,
        min_replicas,
        counted,
    )


def _answers(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def report(client: Any, url: str | None, min_replicas: int = 0, settings: Any = None) -> list[str]:
    """The lines `relay check` prints."""
    facts = inspect(client, url, min_replicas, settings)
    return [text if level == "ok" else f"{level}: {text}" for level, text in assess(facts)]
