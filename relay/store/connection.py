"""Redis connections for every process: `redis://`, `rediss://`, `unix://` and `redis+sentinel://`.

A Sentinel URL names the Sentinels, the master's name and the database:

    redis+sentinel://[[user]:password@]host1:26379,host2:26379,host3:26379/<master-name>/<db>

The password in the URL (or `redis_password`) is the data nodes'; `redis_sentinel_password` is the
Sentinels' own. Connections to the master are made through redis-py's Sentinel pool, which asks
the Sentinels for the current master on every new connection and drops a connection that finds
itself on a demoted master (READONLY): after a failover every process reaches the new primary on
its own, without a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relay.config.redis_url import SentinelURL, is_sentinel, parse_sentinel_url

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis

    from relay.config import Settings

# The URL parser lives with the settings, which validate redis_url with it; imported from here too.
__all__ = ["SentinelURL", "connect", "connect_async", "is_sentinel", "parse_sentinel_url", "sentinels"]

# Short socket timeouts toward the Sentinels: one that is down must not stall a reconnect.
SENTINEL_SOCKET_TIMEOUT = 1.0


def _secrets(settings: Settings | None) -> tuple[str | None, str | None]:
    if settings is None:
        return None, None
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    sentinel = (
        settings.redis_sentinel_password.get_secret_value() if settings.redis_sentinel_password else None
    )
    return password, sentinel


def _sentinel_kwargs(
    url: str, settings: Settings | None, kwargs: dict[str, Any]
) -> tuple[SentinelURL, dict, dict]:
    parsed = parse_sentinel_url(url)
    password, sentinel_password = _secrets(settings)
    node: dict[str, Any] = {"db": parsed.db, **kwargs}
    if parsed.username:
        node["username"] = parsed.username
    if password or parsed.password:
        node["password"] = password or parsed.password
    if parsed.ssl:
        node["ssl"] = True
    sentinel: dict[str, Any] = {
        "socket_timeout": SENTINEL_SOCKET_TIMEOUT,
        "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT,
    }
    if sentinel_password:
        sentinel["password"] = sentinel_password
    if parsed.ssl:
        sentinel["ssl"] = True
    return parsed, node, sentinel


def connect(url: str, settings: Settings | None = None, **kwargs: Any) -> Redis:
    """A client for `url` (any supported scheme); `settings` supplies the password secrets."""
    from redis import Redis

    if not is_sentinel(url):
        password, _ = _secrets(settings)
        if password:
            kwargs.setdefault("password", password)
        return Redis.from_url(url, **kwargs)
    from redis.sentinel import Sentinel

    class SentinelRedis(Redis):
        def close(self) -> None:  # the Sentinels' connections too
            super().close()
            for client in self.connection_pool.sentinel_manager.sentinels:
                client.close()

    parsed, node, sentinel = _sentinel_kwargs(url, settings, kwargs)
    manager = Sentinel(list(parsed.hosts), sentinel_kwargs=sentinel, **node)
    return manager.master_for(parsed.master, redis_class=SentinelRedis)


def connect_async(url: str, settings: Settings | None = None, **kwargs: Any) -> AsyncRedis:
    """The asyncio client for `url`, as `connect`."""
    from redis.asyncio import Redis as AsyncRedis

    if not is_sentinel(url):
        password, _ = _secrets(settings)
        if password:
            kwargs.setdefault("password", password)
        return AsyncRedis.from_url(url, **kwargs)
    from redis.asyncio.sentinel import Sentinel

    class SentinelRedis(AsyncRedis):
        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            await super().aclose(close_connection_pool)
            for client in self.connection_pool.sentinel_manager.sentinels:
                await client.aclose()

    parsed, node, sentinel = _sentinel_kwargs(url, settings, kwargs)
    manager = Sentinel(list(parsed.hosts), sentinel_kwargs=sentinel, **node)
    return manager.master_for(parsed.master, redis_class=SentinelRedis)


def sentinels(url: str, settings: Settings | None = None) -> list[Redis]:
    """Clients of the Sentinels themselves (for `relay check`)."""
    from redis import Redis

    parsed, _, sentinel = _sentinel_kwargs(url, settings, {})
    return [Redis(host=h, port=p, **sentinel) for h, p in parsed.hosts]
