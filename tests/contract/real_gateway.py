"""The real OpenClaw gateway for the contract suite: install it once into a cache, boot it, stop it.

Install (OPENCLAW_CONTRACT.md, "Running a real gateway here"): Node 24 from the npm package
`node@24` and the pinned `openclaw` with `--ignore-scripts`, then its bundled-plugins postinstall,
into `$OPENCLAW_RELAY_GATEWAY_CACHE` (default `~/.cache/openclaw-relay`)/gateway-<version>,
outside the checkout. A `.complete` marker says the install finished; an flock serialises two
test processes that find it missing.

Boot: own process group, scratch HOME/state/config/TMPDIR, a free loopback port, `/readyz`.
The gateway hot-reloads `hooks.*` from its config file, so one process serves both the
default configuration and the one that allows request session keys (`Gateway.configure`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

OPENCLAW_VERSION = "2026.9.6"
NODE_PACKAGE = "node@24"
GATEWAY_TOKEN = "contract-gateway-token"
HOOKS_TOKEN = "test-hooks-token"  # = tests.conftest.HOOKS_TOKEN, which every test Relay sends
INSTALL_TIMEOUT = 240.0
BOOT_TIMEOUT = 180.0  # ~15-30 s when idle; much more on a loaded 2-core machine
# What a default-config gateway has of `hooks`: enabled, with a token and nothing else.
DEFAULT_HOOKS: dict[str, Any] = {"enabled": True, "token": HOOKS_TOKEN, "path": "/hooks"}
# The pairing the gateway's security audit recommends, and the relay's `relay check` prints.
ALLOWING_HOOKS: dict[str, Any] = {
    **DEFAULT_HOOKS,
    "allowRequestSessionKey": True,
    "allowedSessionKeyPrefixes": ["hook:"],
}


def cache_root() -> Path:
    env = os.environ.get("OPENCLAW_RELAY_GATEWAY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "openclaw-relay"


class Install:
    def __init__(self, root: Path | None = None, version: str = OPENCLAW_VERSION) -> None:
        self.dir = (root or cache_root()) / f"gateway-{version}"
        self.version = version
        self.node = self.dir / "node24" / "node_modules" / "node" / "bin" / "node"
        self.package = self.dir / "app" / "node_modules" / "openclaw"
        self.entry = self.package / "openclaw.mjs"
        self.seconds: float | None = None  # how long ensure() took to install (None: cached)

    def present(self) -> bool:
        if (self.dir / ".complete").exists():
            return True
        # An install made by hand with the documented commands (no marker): accept it when whole.
        return self.node.exists() and self.entry.exists() and (self.dir / "post.log").exists()

    def ensure(self) -> Install:
        if self.present():
            return self
        if shutil.which("npm") is None:
            raise RuntimeError("npm is not installed: the contract suite installs the gateway with it")
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir.parent / f".gateway-{self.version}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits here, then finds it present
            if not self.present():
                started = time.monotonic()
                self._install()
                self.seconds = time.monotonic() - started
        return self

    def _run(self, cmd: list[str], log: str) -> None:
        with open(self.dir / log, "wb") as fh:
            subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT)

    def _install(self) -> None:
        npm = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"]
        self._run([*npm, "--prefix", str(self.dir / "node24"), NODE_PACKAGE], "node.log")
        self._run(
            [*npm, "--prefix", str(self.dir / "app"), f"openclaw@{self.version}", "--ignore-scripts"],
            "app.log",
        )
        self._run(
            [str(self.node), str(self.package / "scripts" / "postinstall-bundled-plugins.mjs")], "post.log"
        )
        (self.dir / ".complete").write_text(f"openclaw@{self.version} {NODE_PACKAGE}\n")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Gateway:
    """One running gateway process (group) with its scratch folder."""

    def __init__(self, install: Install, scratch: Path, hooks: dict[str, Any] | None = None) -> None:
        self.install = install
        self.scratch = scratch
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = scratch / "state" / "openclaw.json"
        self.log_path = scratch / "gateway.log"
        self.hooks = dict(hooks or DEFAULT_HOOKS)
        self.proc: subprocess.Popen[bytes] | None = None
        self.boot_seconds: float | None = None

    def config(self) -> dict[str, Any]:
        return {
            "gateway": {
                "mode": "local",
                "port": self.port,
                "bind": "loopback",
                "auth": {"mode": "token", "token": GATEWAY_TOKEN},
            },
            "hooks": self.hooks,
            "update": {"checkOnStart": False},
            "discovery": {"mdns": {"mode": "off"}},
            "logging": {"file": str(self.scratch / "gw-file.log")},
        }

    def _write_config(self) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.config(), indent=2))
        tmp.replace(self.config_path)

    def start(self) -> Gateway:
        for sub in ("home", "state", "tmp"):
            (self.scratch / sub).mkdir(parents=True, exist_ok=True)
        self._write_config()
        env = {
            "PATH": f"{self.install.node.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.scratch / "home"),
            "TMPDIR": str(self.scratch / "tmp"),
            "OPENCLAW_STATE_DIR": str(self.scratch / "state"),
            "OPENCLAW_CONFIG_PATH": str(self.config_path),
            "OPENCLAW_DISABLE_BONJOUR": "1",
            "OPENCLAW_NO_RESPAWN": "1",
            "OPENCLAW_SKIP_CHANNELS": "1",
            "OPENCLAW_NO_AUTO_UPDATE": "1",
        }
        cmd = [
            str(self.install.node),
            str(self.install.entry),
            "gateway",
            "run",
            "--port",
            str(self.port),
            "--bind",
            "loopback",
            "--auth",
            "token",
        ]
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, env=env, cwd=self.scratch, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = started + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.proc.returncode}: {self.tail()}")
            if self._ready():
                self.boot_seconds = time.monotonic() - started
                return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"the gateway was not ready within {BOOT_TIMEOUT:.0f}s: {self.tail()}")

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def configure(self, hooks: dict[str, Any], probe: Any = None, timeout: float = 30.0) -> None:
        """Rewrite `hooks` in the config file; the gateway reloads it (hot). `probe()` returns
        true once the new setting is in force."""
        self.hooks = dict(hooks)
        self._write_config()
        if probe is None:
            return
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not reload its hooks config: {self.tail()}")
            time.sleep(0.2)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _groups(self) -> set[int]:
        """The process groups of the gateway and its descendants: its spawn broker makes its own."""
        assert self.proc is not None
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        groups, todo = {self.proc.pid}, [self.proc.pid]
        while todo:
            pid = todo.pop()
            for child in children.get(pid, []):
                try:
                    groups.add(os.getpgid(child))
                except ProcessLookupError:
                    continue
                todo.append(child)
        return groups

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        groups = self._groups()
        for group in groups:
            _signal_group(group, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        for group in groups:  # whatever is left of the gateway's processes
            _signal_group(group, signal.SIGKILL)
        self.proc.wait()


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass
