"""A small cached JWKS loader: the one place a preset reads a file or the network (gmail's OIDC keys).

A source is a file path or an http(s) URL. Keys are kept for `ttl` seconds; an unknown key id
triggers one early reload (keys rotate), at most every `min_reload` seconds per source. A file
is re-read when its modification time changes. A JWKS that cannot be loaded is a 503: the sender
(Pub/Sub) retries, and nothing was acknowledged.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import httpx
import jwt
import orjson

from relay.errors import Unavailable

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

    def key(self, source: str, kid: str | None) -> jwt.PyJWK | None:
        """The key `kid` of `source` (the only key when `kid` is None and there is one), or None."""
        with self._lock:
            entry = self._entries.get(source)
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
        mtime = None
        try:
            if self._is_url(source):
                response = httpx.get(source, timeout=self.timeout, follow_redirects=True)
                response.raise_for_status()
                data = response.json()
            else:
                mtime = os.stat(source).st_mtime
                with open(source, "rb") as fh:
                    data = orjson.loads(fh.read())
            if not isinstance(data, dict):
                raise ValueError("a JWKS is a JSON object")
            keyset = jwt.PyJWKSet.from_dict(data)
        except (OSError, ValueError, httpx.HTTPError, jwt.PyJWTError) as exc:
            raise Unavailable(f"cannot load the OIDC signing keys (JWKS): {type(exc).__name__}") from None
        keys = {str(k.key_id or ""): k for k in keyset.keys}
        entry = _Entry(keys=keys, loaded_at=time.monotonic(), mtime=mtime)
        self._entries[source] = entry
        return entry


def _pick(keys: dict[str, jwt.PyJWK], kid: str | None) -> jwt.PyJWK | None:
    if kid is None:
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


CACHE = JwksCache()
