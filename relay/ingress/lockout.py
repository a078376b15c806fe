"""Failed-authentication counting and the 429 lockout, shared by every ingress process through Redis.

Like the OpenClaw gateway (20 failures in 60 s → 429 with Retry-After), but the signature is
checked first: a sender that presents a valid signature is never locked out, and its success
resets the counters. A lockout that refused before verifying would let anyone who sends bad
requests to a source (or from a shared egress address, as GitHub's are) lock the real sender out.
So the lockout only changes how failures are answered — `429 Retry-After` instead of `401` — which
tells a misconfigured sender to back off and makes a guessing attack visible in the stats, while
the secrets themselves (HMAC keys, long tokens) are what keep a guesser out.

Counters are per client address (the TCP peer: behind a proxy, the proxy's address, since a
forwarded-for header is the sender's word) and per source, in a fixed window that starts with the
first failure. Redis keeps them so that several ingress processes count together; if Redis
cannot be reached the failure is answered 401 as usual.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as aioredis
import redis.exceptions

from relay.errors import TooManyRequests, Unauthorized
from relay.store import keys

log = logging.getLogger("relay.guard")

_MAX_HINTS = 10_000


class AuthGuard:
    def __init__(self, client: aioredis.Redis, *, max_failures: int, window_seconds: int) -> None:
        self.client = client
        self.max_failures = max_failures
        self.window = window_seconds
        # Counter keys this process has incremented, with when they expire: a success resets only
        # these, so a valid request costs no Redis call unless its address or source failed lately.
        self._hints: dict[str, float] = {}

    def _keys(self, address: str, source: str) -> tuple[str, str]:
        return keys.auth_failures("addr", address), keys.auth_failures("source", source)

    async def failed(self, address: str, source: str, exc: Unauthorized) -> Unauthorized | TooManyRequests:
        """Count one failed authentication; the error to answer with (429 once over the limit)."""
        addr_key, source_key = self._keys(address, source)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in (addr_key, source_key):
                    pipe.set(key, 0, ex=self.window, nx=True)
                    pipe.incr(key)
                    pipe.ttl(key)
                _, addr_count, addr_ttl, _, source_count, source_ttl = await pipe.execute()
        except redis.exceptions.RedisError as exc_redis:
            log.warning("cannot count a failed authentication: %s", exc_redis)
            return exc
        self._remember(addr_key, source_key)
        over = [
            ttl
            for count, ttl in ((addr_count, addr_ttl), (source_count, source_ttl))
            if count > self.max_failures
        ]
        if not over:
            return exc
        retry_after = max(1, *(int(ttl) for ttl in over))
        return TooManyRequests(
            "too many failed authentications; retry later", headers={"Retry-After": str(retry_after)}
        )

    async def succeeded(self, address: str, source: str) -> None:
        """A valid signature or token: reset the counters this process knows to be running."""
        if not self._hints:
            return
        running = [k for k in self._keys(address, source) if k in self._hints]
        if not running:
            return
        for key in running:
            del self._hints[key]
        try:
            await self.client.delete(*running)
        except redis.exceptions.RedisError:
            pass

    def _remember(self, *counter_keys: str) -> None:
        until = time.monotonic() + self.window
        for key in counter_keys:
            self._hints[key] = until
        if len(self._hints) > _MAX_HINTS:
            now = time.monotonic()
            self._hints = {k: t for k, t in self._hints.items() if t > now}
