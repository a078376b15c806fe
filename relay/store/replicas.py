"""Writes that must reach replicas (`durability.min_replicas`) before they count."""

from __future__ import annotations

from redis import Redis

from relay.errors import Unavailable


class ReplicasUnconfirmed(Unavailable):
    """The write reached the primary but not `durability.min_replicas` replicas in time: answer 503."""


def confirm_replicas(
    redis: Redis, key: str, field: str, value: str, min_replicas: int, timeout_ms: int
) -> None:
    """Raise ReplicasUnconfirmed unless `min_replicas` replicas hold every write made so far.

    WAIT counts the writes of its own connection, so it follows a write on the same one: setting
    `field` to the value it already has. Its offset is past every earlier write, whichever
    connection made it; after a failover it puts the field back on the new primary.
    """
    if not min_replicas:
        return
    with redis.pipeline(transaction=False) as pipe:
        pipe.hset(key, field, value)
        pipe.execute_command("WAIT", min_replicas, timeout_ms)
        _, confirmed = pipe.execute()
    if int(confirmed) < min_replicas:
        raise ReplicasUnconfirmed(f"{confirmed} of {min_replicas} replicas confirmed within {timeout_ms} ms")
