"""Reload without a restart: re-read relay.yaml and re-import the transforms, in every process.

Triggers: SIGHUP to one process, or `relay reload`, which bumps a generation counter in Redis
(`GENERATION`) that every ingress and worker polls twice a second. A process that sees a new
generation (or gets SIGHUP) loads the config as `relay check` does: validate it, resolve every
source, import every transform afresh. An invalid config is refused with the error `relay check`
gives and the running config stays. A valid one is swapped in as one object: the ingress keeps
the `Ingress` a request started with until that request ends, so in-flight requests finish on
their config and none is refused during the switch. Each process reports the outcome in
`STATUS` (hash: process -> JSON), which `relay reload` reads back.

What a reload changes: sources (secrets, tokens, presets, limits), mappings and transforms,
gateways (URL, token, timeout) and delivery settings used per attempt. What needs a restart:
the listener (host, port, header limits), redis_url, queue, the console, and schedules.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from relay.config import Settings, load_settings
from relay.errors import ConfigError
from relay.store import keys

log = logging.getLogger("relay.reload")

GENERATION = keys.RELOAD_GENERATION  # bumped by `relay reload`
STATUS = keys.RELOAD_STATUS  # hash: process -> {"generation", "ok", "error", "at", "alive_at"}
POLL_SECONDS = 0.5
ALIVE_SECONDS = 10.0  # how often a process refreshes its status entry
RESTART_ONLY = ("redis_url", "queue", "host", "port", "console", "schedules", "max_headers")


def process_id(kind: str) -> str:
    return f"{kind}:{socket.gethostname()}:{os.getpid()}"


@contextmanager
def fresh_transforms(settings: Settings) -> Iterator[None]:
    """Make imports of the transforms' (dotted) modules load them from disk again; on failure
    the modules that were loaded before are put back."""
    names = {m.transform.module for m in settings.mappings if m.transform is not None}
    names = {n for n in names if not n.endswith(".py")}  # .py paths are executed afresh anyway
    saved = {
        name: mod
        for name, mod in sys.modules.items()
        if any(name == n or name.startswith(n + ".") for n in names)
    }
    for name in saved:
        del sys.modules[name]
    importlib.invalidate_caches()
    try:
        yield
    except BaseException:
        for name, mod in saved.items():
            sys.modules.setdefault(name, mod)
        raise


def load_checked(current: Settings) -> Settings:
    """relay.yaml as it is now, validated like `relay check` (sources resolved, transforms imported
    afresh). Raises ConfigError with `relay check`'s message. Keeps the running redis_url."""
    from relay.protocol.pipeline import build_mapper, build_sources

    new = load_settings(current.config_path, redis_url=current.redis_url)
    build_sources(new)
    with fresh_transforms(new):
        build_mapper(new)
    changed = [name for name in RESTART_ONLY if getattr(new, name, None) != getattr(current, name, None)]
    if changed:
        log.warning("reload: %s changed; that takes effect at the next restart", ", ".join(changed))
    return new


def status_entry(generation: int, error: str | None) -> bytes:
    """What a process reports after a reload (or refusal) of `generation`."""
    now = time.time()
    return orjson.dumps(
        {"generation": generation, "ok": error is None, "error": error or "", "at": now, "alive_at": now}
    )


def _current_generation(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


class IngressReloader:
    """Runs in the ingress's event loop: polls the generation, handles SIGHUP, swaps the Ingress."""

    def __init__(
        self, holder: list[Any], settings: Settings, redis: Any, build: Callable[[Settings], Any]
    ) -> None:
        self.holder = holder  # [the current Ingress]: requests take holder[0] once, at their start
        self.settings = settings
        self.redis = redis  # redis.asyncio client
        self.build = build  # Settings -> a new Ingress
        self.who = process_id("ingress")
        self.generation = 0
        self._hup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            self.generation = _current_generation(await self.redis.get(GENERATION))
        except Exception:  # Redis away at start: the poll loop tries again
            self.generation = 0
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hup.set)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / platform
            log.debug("SIGHUP handler not installed")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        last_alive = 0.0
        while True:
            try:
                await asyncio.wait_for(self._hup.wait(), POLL_SECONDS)
            except TimeoutError:
                pass
            try:
                wanted = _current_generation(await self.redis.get(GENERATION))
                if self._hup.is_set() or wanted > self.generation:
                    self._hup.clear()
                    await self.reload(max(wanted, self.generation))
                    last_alive = time.monotonic()
                elif time.monotonic() - last_alive > ALIVE_SECONDS:
                    await self._alive()
                    last_alive = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: keep serving on the current config
                log.warning("reload watch: %s", exc)

    async def reload(self, generation: int) -> bool:
        error = None
        try:
            new_settings = await asyncio.to_thread(load_checked, self.settings)
            new_ingress = await asyncio.to_thread(self.build, new_settings)
        except ConfigError as exc:
            error = str(exc)
        if error is None:
            self.holder[0] = new_ingress  # requests already running keep the one they took
            self.settings = new_settings
            log.info("config reloaded", extra={"generation": generation})
        else:
            log.error("reload refused, running config kept: %s", error, extra={"generation": generation})
        self.generation = generation
        await self.redis.hset(STATUS, self.who, status_entry(generation, error))
        return error is None

    async def _alive(self) -> None:
        raw = await self.redis.hget(STATUS, self.who)
        entry = (
            orjson.loads(raw) if raw else {"generation": self.generation, "ok": True, "error": "", "at": 0}
        )
        entry["alive_at"] = time.time()
        await self.redis.hset(STATUS, self.who, orjson.dumps(entry))


class WorkerReloader:
    """A worker process's thread: polls the generation, handles SIGHUP, applies new settings."""

    def __init__(self, settings: Settings, redis: Any, apply: Callable[[Settings], None], who: str) -> None:
        self.settings = settings
        self.redis = redis
        self.apply = apply
        self.who = f"worker:{who}"
        self._wake = threading.Event()
        self._hup = False
        self._stop = threading.Event()
        try:
            self.generation = _current_generation(redis.get(GENERATION))
        except Exception:
            self.generation = 0

    def install_sighup(self) -> None:
        """Call from the main thread."""

        def on_hup(signum: int, frame: Any) -> None:
            self._hup = True
            self._wake.set()

        signal.signal(signal.SIGHUP, on_hup)

    def start(self) -> None:
        threading.Thread(target=self._run, name="reload", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        last_alive = 0.0
        while not self._stop.is_set():
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            try:
                wanted = _current_generation(self.redis.get(GENERATION))
                if self._hup or wanted > self.generation:
                    self._hup = False
                    self.reload(max(wanted, self.generation))
                    last_alive = time.monotonic()
                elif time.monotonic() - last_alive > ALIVE_SECONDS:
                    raw = self.redis.hget(STATUS, self.who)
                    entry = (
                        orjson.loads(raw)
                        if raw
                        else {"generation": self.generation, "ok": True, "error": "", "at": 0}
                    )
                    entry["alive_at"] = time.time()
                    self.redis.hset(STATUS, self.who, orjson.dumps(entry))
                    last_alive = time.monotonic()
            except Exception as exc:  # Redis away: keep delivering on the current config
                log.warning("reload watch: %s", exc)

    def reload(self, generation: int) -> bool:
        error = None
        try:
            new = load_checked(self.settings)
            self.apply(new)
        except ConfigError as exc:
            error = str(exc)
        if error is None:
            self.settings = new
            log.info("config reloaded", extra={"generation": generation})
        else:
            log.error("reload refused, running config kept: %s", error, extra={"generation": generation})
        self.generation = generation
        self.redis.hset(STATUS, self.who, status_entry(generation, error))
        return error is None


def apply_to_worker(worker: Any, router: Any) -> Callable[[Settings], None]:
    """How a worker process takes new settings: the delivery context (gateways, tokens, timeouts),
    the router's settings and mapping, and the gateways whose circuits the worker watches."""
    from relay.delivery import attempt as delivery

    def apply(new: Settings) -> None:
        old = delivery._context
        delivery.configure(new)
        router.configure(new)
        worker.gateways = new.gateway_names()
        if old is not None:  # deliveries in flight still use it; close it once they are done
            timer = threading.Timer(old.settings.gateway.timeout_seconds + 30, old.http.close)
            timer.daemon = True
            timer.start()

    return apply


def request(redis: Any) -> int:
    """Ask every running process to reload; returns the new generation."""
    return int(redis.incr(GENERATION))


def answers(redis: Any, generation: int, wait: float) -> dict[str, dict[str, Any]]:
    """The status of every live process, waiting up to `wait` s for all to reach `generation`."""
    deadline = time.monotonic() + wait
    while True:
        now = time.time()
        known = {f.decode(): orjson.loads(v) for f, v in redis.hgetall(STATUS).items()}
        live = {who: e for who, e in known.items() if now - float(e.get("alive_at", 0)) < 3 * ALIVE_SECONDS}
        gone = [who for who, e in known.items() if now - float(e.get("alive_at", 0)) > 86400]
        if gone:  # processes that stopped a day ago
            redis.hdel(STATUS, *gone)
        if (
            live and all(e["generation"] >= generation for e in live.values())
        ) or time.monotonic() > deadline:
            return live
        time.sleep(0.1)
