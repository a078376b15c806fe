"""The worker processes of `relay up`: started, restarted when one exits, stopped warmly.

A worker can exit while `relay up` runs: an operator's SIGTERM for a rolling restart, an OOM kill,
a crash. Without a replacement the ingress would go on answering 202 while nothing delivers. So
each exit is logged and the worker started again, after a pause that grows while workers keep
exiting soon after their start (a configuration error must not spin).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger("relay.up")

# A worker that ran this long before exiting is restarted at once; sooner, after a growing pause.
STEADY_SECONDS = 30.0
MAX_PAUSE_SECONDS = 30.0
POLL_SECONDS = 0.5
# How long a stopping worker may take to finish its deliveries (beyond the gateway's timeout).
STOP_SECONDS = 40.0


class Workers:
    def __init__(self, count: int, env: dict[str, str]) -> None:
        self.env = env
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._pause = 1.0
        self.procs = [self._spawn() for _ in range(count)]
        self._started = [time.monotonic()] * count
        self._watch = threading.Thread(target=self._run, name="workers", daemon=True)
        self._watch.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "relay.cli", "worker"], env=self.env)

    def _run(self) -> None:
        while not self._stopping.wait(POLL_SECONDS):
            for index, proc in enumerate(self.procs):
                code = proc.poll()
                if code is None:
                    continue
                ran = time.monotonic() - self._started[index]
                self._pause = 1.0 if ran >= STEADY_SECONDS else min(self._pause * 2, MAX_PAUSE_SECONDS)
                wait = 0.0 if ran >= STEADY_SECONDS else self._pause
                log.warning(
                    "worker %d (pid %d) exited with code %s after %.0f s; starting a new one in %.0f s",
                    index,
                    proc.pid,
                    code,
                    ran,
                    wait,
                )
                if self._stopping.wait(wait):
                    return
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self.procs[index] = self._spawn()
                    self._started[index] = time.monotonic()

    def stop(self) -> int:
        """Warm shutdown of every worker: each finishes its deliveries, then exits. Returns how many
        had to be killed (still running after STOP_SECONDS)."""
        with self._lock:
            self._stopping.set()
        self._watch.join(timeout=POLL_SECONDS * 4)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        killed = 0
        for proc in self.procs:
            try:
                proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                killed += 1
        return killed
