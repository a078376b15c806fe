"""Shared fixtures: a private redis-server, and real relay processes (ingress, workers, gateway stub)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

FIXTURES = Path(__file__).parent / "fixtures"
GITHUB_SECRET = "test-github-secret"
HOOKS_TOKEN = "test-hooks-token"
GENERIC_TOKEN = "test-generic-token"
# A gateway configured for the relay: request session keys allowed, a channel to send to.
STUB_ALLOWING = ("--allow-request-session-key", "--channel", "any")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def sign(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_fixture(name: str) -> bytes:
    return (FIXTURES / "github" / f"{name}.json").read_bytes()


class RedisServer:
    def __init__(self, workdir: Path, appendonly: bool = True) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_until(lambda: _ping(client), timeout=10)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


class Proc:
    """A relay process started with `python -m relay.cli ...`, its output kept in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log = log
        self._fh = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relay.cli", *args],
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; if it does not, its threads' stacks go to its log first
        (every relay process dumps them on SIGUSR1), so a hang shows where it waits."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)  # faulthandler writes synchronously; give it a moment to reach the file
            raise

    def kill(self) -> None:
        """SIGKILL the whole process group, as when a host or container dies."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._fh.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


class Stub:
    def __init__(self, port: int, proc: Proc) -> None:
        self.port = port
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    def requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.url}/_stub/requests").json())

    def runs(self, path: str = "agent") -> list[dict[str, Any]]:
        return [
            r for r in self.requests() if r["path"] == path and r["status"] == 200 and not r.get("replay")
        ]

    def control(self, **values: Any) -> None:
        httpx.post(f"{self.url}/_stub/control", json=values).raise_for_status()


class Relay:
    """A relay deployment for one test: config file, ingress, workers and a gateway stub."""

    def __init__(self, tmp: Path, redis_url: str, overrides: dict[str, Any] | None = None) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.procs: list[Proc] = []
        self.stub: Stub | None = None
        self._stage: Any = None
        self.stub_port = free_port()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        config: dict[str, Any] = {
            "redis_url": redis_url,
            "gateway": {"url": f"http://127.0.0.1:{self.stub_port}", "token": "env:OPENCLAW_HOOKS_TOKEN"},
            "delivery": {"heartbeat_grace_seconds": 2, "backoff_base_seconds": 0.5, "backoff_max_seconds": 2},
            "metrics": {"port": self.metrics_port},
            "sources": {
                "github": {"preset": "github", "secret": "env:GITHUB_WEBHOOK_SECRET"},
                "generic": {"preset": "generic", "token": "env:GENERIC_WEBHOOK_TOKEN"},
            },
        }
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(config.get(key), dict):
                config[key] = {**config[key], **value}
            else:
                config[key] = value
        self.config_path = tmp / "relay.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.env = {
            **os.environ,
            "RELAY_CONFIG": str(self.config_path),
            "OPENCLAW_HOOKS_TOKEN": HOOKS_TOKEN,
            "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
            "GENERIC_WEBHOOK_TOKEN": GENERIC_TOKEN,
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("RELAY_REDIS_URL", None)

    def _start(self, args: list[str], name: str) -> Proc:
        proc = Proc(args, self.env, self.tmp / f"{name}.log")
        self.procs.append(proc)
        return proc

    def start_stub(self, *extra: str, default_policy: bool = False) -> Stub:
        """The stub allows request session keys and has every channel configured (as the suite
        expects of a set-up gateway) unless `default_policy`: then it is a default-config gateway."""
        allowing = () if default_policy else STUB_ALLOWING
        proc = self._start(
            ["gateway-stub", "--port", str(self.stub_port), "--token", HOOKS_TOKEN, *allowing, *extra], "stub"
        )
        self.stub = Stub(self.stub_port, proc)
        wait_until(lambda: _http_ok(f"{self.stub.url}/readyz"), timeout=15)
        return self.stub

    def start_ingress(self, port: int | None = None) -> Proc:
        """Start an ingress process (on another port for a second one; all share the config)."""
        metrics_port = self.metrics_port if port in (None, self.port) else free_port()
        port = port or self.port
        proc = self._start(
            ["serve", "--port", str(port), "--metrics-port", str(metrics_port)], f"ingress-{port}"
        )
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=15)
        return proc

    def start_worker(self, name: str | None = None) -> Proc:
        index = sum(1 for p in self.procs if p.args[0] == "worker")
        return self._start(
            ["worker", "--name", name or f"w{index}-{os.getpid()}-{time.monotonic_ns()}"], f"worker{index}"
        )

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", content=body, headers=headers, timeout=10)

    def outcome(self, answer: httpx.Response, timeout: float = 10.0) -> dict[str, Any]:
        """The answer's JSON with what the mapping stage made of its event (tests/mapping_stage.py):
        mapped by a worker when one runs, else by a router in this process."""
        from tests.mapping_stage import MappingStage

        if self._stage is None:
            self._stage = MappingStage.from_config(
                redis.Redis.from_url(self.redis_url), self.config_path, self.env
            )
        return self._stage.outcome(answer.json(), timeout)

    def post_github(
        self, body: bytes, delivery: str, event: str = "push", secret: str = GITHUB_SECRET, **extra: str
    ) -> httpx.Response:
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(body, secret),
            **extra,
        }
        return self.post("/hooks/github", body, headers)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


LOG_TAIL_LINES = 80


def log_tails(relays: list[Relay]) -> str:
    """The end of every relay process's log, and whether it still runs."""
    parts = []
    for relay in relays:
        for proc in relay.procs:
            lines = proc.log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            state = "running" if proc.proc.poll() is None else f"exited {proc.proc.returncode}"
            parts.append(f"----- {proc.log.name} ({' '.join(proc.args[:1])}, {state}) -----")
            parts.extend(lines)
    return "\n".join(parts)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, attach the tail of every relay process's log the test started, so that a
    failure (a flaky one above all) explains itself in the report."""
    report = yield
    relays = getattr(item, "relay_deployments", None)
    if report.failed and relays:
        report.sections.append(("relay process logs", log_tails(relays)))
    return report


@pytest.fixture
def relay_factory(
    request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> Iterator[Callable[..., Relay]]:
    made: list[Relay] = []
    request.node.relay_deployments = made

    def make(**overrides: Any) -> Relay:
        relay = Relay(tmp_path / f"relay{len(made)}", redis_server.url, overrides)
        made.append(relay)
        return relay

    yield make
    for relay in made:
        relay.stop()


@pytest.fixture
def relay(relay_factory: Callable[..., Relay]) -> Relay:
    """Ingress + one worker + gateway stub, all running."""
    r = relay_factory()
    r.start_stub()
    r.start_ingress()
    r.start_worker()
    return r


def dump(obj: Any) -> bytes:
    return json.dumps(obj).encode()
