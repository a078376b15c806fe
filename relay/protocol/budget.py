"""A time budget for users' transforms, so one slow or stuck transform never stalls the ingress.

A transform is plain Python, and Python cannot kill a thread: a transform that loops forever
keeps its thread until the process exits. So each call runs in its own daemon thread and the
caller waits at most `seconds` for it. A call past its budget raises `TransformError` (the event
is parked, replayable later) and its thread counts as stuck until its transform returns. Once
`max_threads` threads are stuck, every new call is refused at once (its event parked too) rather
than piling up threads: at most `max_threads` stuck threads, plus the calls that were within
their budget when the last one got stuck. Restart the process to reclaim stuck threads. Calls
within their budget are not limited here: there are at most as many as requests in progress.
Daemon threads never hold up the process at exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from relay.errors import TransformError

T = TypeVar("T")

DEFAULT_SECONDS = 2.0
DEFAULT_MAX_THREADS = 8


class TransformBudget:
    def __init__(self, seconds: float = DEFAULT_SECONDS, max_threads: int = DEFAULT_MAX_THREADS) -> None:
        if seconds <= 0 or max_threads < 1:
            raise ValueError("seconds must be > 0 and max_threads >= 1")
        self.seconds = seconds
        self.max_threads = max_threads
        self._running = 0
        self._stuck = 0
        self._lock = threading.Lock()

    @property
    def running(self) -> int:
        """Calls still running, including those past their budget."""
        return self._running

    @property
    def stuck(self) -> int:
        """Calls still running past their budget."""
        return self._stuck

    def _start(self, fn: Callable[..., T], args: tuple[Any, ...]) -> _Call[T]:
        with self._lock:
            if self._stuck >= self.max_threads:
                raise TransformError(
                    f"{self._stuck} transform threads are stuck past their {self.seconds:g} s budget "
                    f"(transform_max_threads={self.max_threads}); restart the process to free them"
                )
            self._running += 1
        call: _Call[T] = _Call()

        def run() -> None:
            try:
                if call.future.set_running_or_notify_cancel():
                    try:
                        call.future.set_result(fn(*args))
                    except Exception as exc:  # handed to the caller, who parks the event
                        call.future.set_exception(exc)
                    except BaseException as exc:  # sys.exit() in a transform must not stop the relay
                        call.future.set_exception(TransformError(f"transform raised {exc!r}"))
            finally:
                with self._lock:
                    self._running -= 1
                    if call.stuck:
                        self._stuck -= 1
                    call.done = True

        threading.Thread(target=run, name="relay-transform", daemon=True).start()
        return call

    def _timed_out(self, call: _Call[Any]) -> TransformError:
        with self._lock:
            if not call.done:
                call.stuck = True
                self._stuck += 1
        return TransformError(f"transform ran past its {self.seconds:g} s budget (transform_timeout_seconds)")

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` within the budget, blocking the calling thread."""
        call = self._start(fn, args)
        try:
            return call.future.result(timeout=self.seconds)
        except concurrent.futures.TimeoutError:
            raise self._timed_out(call) from None

    async def acall(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` within the budget without blocking the event loop."""
        call = self._start(fn, args)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(call.future), self.seconds)
        except TimeoutError:
            raise self._timed_out(call) from None


class _Call(Generic[T]):
    __slots__ = ("future", "stuck", "done")

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self.stuck = False
        self.done = False
