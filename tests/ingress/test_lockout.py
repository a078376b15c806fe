"""Failed-authentication counting and the 429 lockout (relay.ingress.lockout), shared through Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis

from relay.errors import TooManyRequests, Unauthorized
from relay.ingress.lockout import AuthGuard
from relay.store import keys
from tests.conftest import RedisServer, free_port, wait_until

LIMIT = 3


def run(redis_url: str, body: Callable[..., Awaitable[Any]], guards: int = 1, window: int = 60) -> Any:
    """Run `body(*guards)`, each guard with its own connection, as separate ingress processes have."""

    async def main() -> Any:
        clients = [aioredis.Redis.from_url(redis_url) for _ in range(guards)]
        try:
            return await body(*(AuthGuard(c, max_failures=LIMIT, window_seconds=window) for c in clients))
        finally:
            for client in clients:
                await client.aclose()

    return asyncio.run(main())


async def fail(guard: AuthGuard, address: str = "203.0.113.7", source: str = "github") -> Any:
    return await guard.failed(address, source, Unauthorized("bad signature"))


def test_failures_up_to_the_limit_answer_401_then_429_with_retry_after(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    async def body(guard: AuthGuard) -> list[Any]:
        return [await fail(guard) for _ in range(LIMIT + 2)]

    answers = run(redis_server.url, body)

    assert [type(a) for a in answers] == [Unauthorized] * LIMIT + [TooManyRequests] * 2
    assert all(str(a) == "bad signature" for a in answers[:LIMIT])  # the original error, unchanged
    retry_after = int(answers[-1].headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert int(redis_client.get(keys.auth_failures("addr", "203.0.113.7"))) == LIMIT + 2


def test_the_address_and_the_source_are_counted_apart(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    async def body(guard: AuthGuard) -> tuple[Any, Any, Any]:
        for _ in range(LIMIT):
            await fail(guard, "198.51.100.1", "github")
        other_source_same_address = await fail(guard, "198.51.100.1", "stripe")
        for n in range(LIMIT):
            await fail(guard, f"192.0.2.{n}", "gitlab")  # many addresses, one source
        same_source_new_address = await fail(guard, "192.0.2.99", "gitlab")
        fresh = await fail(guard, "192.0.2.200", "linear")
        return other_source_same_address, same_source_new_address, fresh

    by_address, by_source, fresh = run(redis_server.url, body)

    assert isinstance(by_address, TooManyRequests)  # that address failed too often, whatever the source
    assert isinstance(by_source, TooManyRequests)  # that source failed too often, whatever the address
    assert isinstance(fresh, Unauthorized)


def test_ingress_processes_count_together(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    async def body(one: AuthGuard, two: AuthGuard) -> Any:
        for n in range(LIMIT):
            await fail(one if n % 2 else two)
        return await fail(one)

    assert isinstance(run(redis_server.url, body, guards=2), TooManyRequests)


def test_a_valid_request_resets_the_counters(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    async def body(guard: AuthGuard) -> list[Any]:
        for _ in range(LIMIT):
            await fail(guard)
        await guard.succeeded("203.0.113.7", "github")
        return [await fail(guard) for _ in range(LIMIT)]

    assert all(isinstance(a, Unauthorized) for a in run(redis_server.url, body))


def test_a_success_elsewhere_leaves_counters_it_never_saw(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Only counters this process incremented are reset (so a valid request usually costs no call)."""

    async def body(one: AuthGuard, two: AuthGuard) -> Any:
        for _ in range(LIMIT):
            await fail(one)
        await two.succeeded("203.0.113.7", "github")
        return await fail(one)

    assert isinstance(run(redis_server.url, body, guards=2), TooManyRequests)


def test_the_lockout_ends_with_its_window(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    async def lock_out(guard: AuthGuard) -> Any:
        for _ in range(LIMIT):
            await fail(guard)
        return await fail(guard)

    locked = run(redis_server.url, lock_out, window=1)
    assert isinstance(locked, TooManyRequests)
    assert locked.headers == {"Retry-After": "1"}

    wait_until(lambda: not redis_client.exists(keys.auth_failures("addr", "203.0.113.7")), timeout=5)
    wait_until(lambda: not redis_client.exists(keys.auth_failures("source", "github")), timeout=5)

    assert isinstance(run(redis_server.url, fail, window=1), Unauthorized)


def test_without_redis_a_failure_is_answered_401() -> None:
    async def body(guard: AuthGuard) -> list[Any]:
        answers = [await fail(guard) for _ in range(LIMIT + 2)]
        await guard.succeeded("203.0.113.7", "github")  # and a success does not raise either
        return answers

    answers = run(f"redis://127.0.0.1:{free_port()}/0", body)

    assert all(type(a) is Unauthorized for a in answers)
