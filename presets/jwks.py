"""A small cached JWKS loader: the one place a preset reads a file or the network (gmail's OIDC keys).

A source is a file path or an http(s) URL. Keys are kept for `ttl` seconds; an unknown key id
triggers one early reload (keys rotate), at most every `min_reload` seconds per source. A file
is re-read when its modification time changes. A JWKS that cannot be loaded is a 503: the sender
(Pub/Sub) retries, and nothing was acknowledged.

A URL is fetched only by `ensure`, asynchronously and one fetch per URL at a time (single-flight):
the event loop never waits on the network, concurrent requests share one fetch, and an expired
set keeps serving while its refresh runs in the background. `key` reads URL keys from the cache only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass, field

import httpx
import jwt
import orjson

from relay.errors import Unavailable

log = logging.getLogger("relay.jwks")
GOOGLE_CERTS = "https://www.googleapis.com/oauth2/v3/certs"


@dataclass
class _Entry:
    keys: dict[str, jwt.PyJWK]
    loaded_at: float
    mtime: float | None = None


@dataclass
class JwksCache:
    ttl: float = 3600.0
    min_reload: float = 30.0
    timeout: float = 5.0
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _inflight: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def ensure(self, source: str, kid: str | None) -> None:
        """Have `source`'s keys cached for `kid` (URLs only; files are read by `key`)."""
        if not self._is_url(source):
            return
        entry = self._entries.get(source)
        now = time.monotonic()
        if entry is not None:
            if _pick(entry.keys, kid) is not None:
                if now - entry.loaded_at > self.ttl:
                    self._start(source)  # serve the cached set while it is refreshed
                return
            if now - entry.loaded_at <= self.min_reload:
                return  # an unknown key id, and the set was loaded moments ago: no fetch
        await asyncio.shield(self._start(source))

    def _start(self, source: str) -> asyncio.Task[None]:
        task = self._inflight.get(source)
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.get_running_loop().create_task(self._fetch(source))
            self._inflight[source] = task
            task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # retrieved here; awaiters re-raise it
            log.warning("JWKS refresh failed: %s", task.exception())

    async def _fetch(self, source: str) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=True) as client:
                response = await client.get(source)
            response.raise_for_status()
            keyset = _keyset(response.json())
        except (ValueError, httpx.HTTPError, jwt.PyJWTError) as exc:
            raise Unavailable(f"cannot load the OIDC signing keys (JWKS): {type(exc).__name__}") from None
        with self._lock:
            self._entries[source] = _Entry(keys=keyset, loaded_at=time.monotonic())

    def key(self, source: str, kid: str | None) -> jwt.PyJWK | None:
        """The key `kid` of `source` (the only key when `kid` is None and there is one), or None."""
        with self._lock:
            entry = self._entries.get(source)
            if self._is_url(source):  # fetched by `ensure`, never here: no network on the event loop
                if entry is None:
                    raise Unavailable("cannot load the OIDC signing keys (JWKS): not fetched yet")
                return _pick(entry.keys, kid)
            now = time.monotonic()
            if entry is None or now - entry.loaded_at > self.ttl or self._file_changed(source, entry):
                entry = self._load(source)
            found = _pick(entry.keys, kid)
            if found is None and now - entry.loaded_at > self.min_reload:
                entry = self._load(source)
                found = _pick(entry.keys, kid)
            return found

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._inflight.clear()

    @staticmethod
    def _is_url(source: str) -> bool:
        return source.startswith(("http://", "https://"))

    def _file_changed(self, source: str, entry: _Entry) -> bool:
        if self._is_url(source):
            return False
        try:
            return os.stat(source).st_mtime != entry.mtime
        except OSError:
            return True

    def _load(self, source: str) -> _Entry:
        """Read a JWKS file (a local read, done in place)."""
        try:
            mtime = os.stat(source).st_mtime
            with open(source, "rb") as fh:
                keys = _keyset(orjson.loads(fh.read()))
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise Unavailable(f"cannot load the OIDC signing keys (JWKS): {type(exc).__name__}") from None
        entry = _Entry(keys=keys, loaded_at=time.monotonic(), mtime=mtime)
        self._entries[source] = entry
        return entry


def _keyset(data: object) -> dict[str, jwt.PyJWK]:
    if not isinstance(data, dict):
        raise ValueError("a JWKS is a JSON object")
    return {str(k.key_id or ""): k for k in jwt.PyJWKSet.from_dict(data).keys}


def _pick(keys: dict[str, jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    if kid is None:
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


CACHE = JwksCache()
