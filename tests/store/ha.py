"""A Redis Sentinel deployment on loopback, and the failover soak that runs the relay against it.

The cluster: a primary with AOF, one replica and three `redis-server --sentinel` processes, all on
free loopback ports under the test's tmp dir. The soak: `relay serve` ×2 and `relay worker` ×2 on
the `redis+sentinel://` URL, N agent events sent at a steady rate, the primary SIGKILLed part-way
through. Sentinel promotes the replica; the killed primary is then started again (as a supervisor
would) and Sentinel turns it into the new primary's replica. The report counts every event
answered 2xx that never reached the gateway, and every agent run the gateway started twice.

    python -m tests.ha --events 2000 --min-replicas 1
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from relay.store import keys
from tests.conftest import HOOKS_TOKEN, Proc, Relay, free_port, wait_until

MASTER = "relay"


class RedisNode:
    def __init__(self, workdir: Path, port: int, args: list[str]) -> None:
        self.workdir = workdir
        self.port = port
        self.args = args
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: redis.Redis | None = None

    def start(self, extra: list[str] | None = None) -> None:
        with open(self.workdir / "log", "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", *self.args, *(extra or [])],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: _ping(self.client()), timeout=10)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        if self._client is not None:
            self._client.close()

    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis(port=self.port, socket_timeout=2)
        return self._client


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


class SentinelCluster:
    """Primary + replica (both AOF, fsync every second) + three Sentinels with quorum 2."""

    def __init__(self, tmp: Path, down_after_ms: int = 1000) -> None:
        self.tmp = tmp
        ports = [free_port() for _ in range(5)]
        data = [
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ]
        self.nodes = [
            RedisNode(tmp / "primary", ports[0], ["--port", str(ports[0]), *data]),
            RedisNode(
                tmp / "replica",
                ports[1],
                ["--port", str(ports[1]), *data, "--replicaof", "127.0.0.1", str(ports[0])],
            ),
        ]
        self.sentinels: list[RedisNode] = []
        for i, port in enumerate(ports[2:]):
            workdir = tmp / f"sentinel{i}"
            workdir.mkdir(parents=True, exist_ok=True)
            conf = workdir / "sentinel.conf"  # Sentinel rewrites its config file: one each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {ports[0]} 2\n"
                f"sentinel down-after-milliseconds {MASTER} {down_after_ms}\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self.sentinels.append(RedisNode(workdir, port, [str(conf), "--sentinel"]))

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def start(self) -> None:
        for node in [*self.nodes, *self.sentinels]:
            node.start()
        wait_until(self.ready, timeout=30, interval=0.2)

    def ready(self) -> bool:
        """Every Sentinel knows the master, the replica and the two other Sentinels (needed to
        agree on a failover); the replica is in sync."""
        try:
            for sentinel in self.sentinels:
                info = sentinel.client().sentinel_master(MASTER)
                if int(info["num-other-sentinels"]) < 2 or int(info["num-slaves"]) < 1:
                    return False
            return self.primary().client().info("replication").get("connected_slaves", 0) >= 1
        except redis.exceptions.RedisError:
            return False

    def master_port(self) -> int | None:
        try:
            addr = self.sentinels[0].client().sentinel_get_master_addr_by_name(MASTER)
        except redis.exceptions.RedisError:
            return None
        return int(addr[1]) if addr else None

    def primary(self) -> RedisNode:
        port = self.master_port()
        return next(node for node in self.nodes if node.port == port)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.nodes]:
            node.kill(signal.SIGTERM)


@dataclass
class FailoverReport:
    min_replicas: int
    lag: float = 0.0
    sent: int = 0
    acknowledged: int = 0
    lost: int = 0  # answered 2xx, never reached the gateway
    doubled: int = 0  # agent runs the gateway started more than once
    refused: int = 0  # answers of 503 (or no answer) the senders retried
    failover_seconds: float = 0.0  # from the SIGKILL until Sentinel names the new primary
    stall_seconds: float = 0.0  # the longest time no event was acknowledged
    drain_seconds: float = 0.0  # from the last acknowledgement until the last event reached the gateway
    restarted: list[str] = field(default_factory=list)  # relay processes that exited (must be none)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"min_replicas={self.min_replicas} replica_lag={self.lag:g}s "
            f"sent={self.sent} acknowledged={self.acknowledged} "
            f"lost={self.lost} doubled={self.doubled} retried_answers={self.refused} "
            f"failover={self.failover_seconds:.1f}s longest_stall={self.stall_seconds:.1f}s "
            f"drain={self.drain_seconds:.1f}s"
        )


class Soak:
    def __init__(
        self, tmp: Path, events: int, rate: float, min_replicas: int, kill_at: float, lag: float = 0.0
    ) -> None:
        self.events = events
        self.lag = lag
        self.rate = rate
        self.kill_at = kill_at
        self.cluster = SentinelCluster(tmp / "redis")
        self.record = tmp / "gateway.jsonl"
        self.relay = Relay(
            tmp / "relay",
            self.cluster.url,
            {
                "durability": {"min_replicas": min_replicas, "replica_timeout_ms": 500},
            },
        )
        self.ingress_ports = [self.relay.port, free_port()]
        self.report = FailoverReport(min_replicas, lag)
        self.acked: dict[str, float] = {}
        self.lock = threading.Lock()
        self.procs: list[Proc] = []
        self.killed = threading.Event()
        self.last_ack_wall = 0.0
        self.last_run_at = 0.0

    def start(self) -> None:
        self.cluster.start()
        self.relay.start_stub("--record", str(self.record))
        self.procs = [self.relay.start_ingress(port) for port in self.ingress_ports]
        self.procs += [self.relay.start_worker() for _ in range(2)]

    def close(self) -> None:
        self.relay.stop()
        self.cluster.stop()

    def send(self, seq: int) -> None:
        """One event, resent (same Idempotency-Key) until the relay acknowledges it, as a sender does."""
        token = f"failover-{seq:06d}"
        # One event in four belongs to one of ten sessions (delivered in order, one at a time).
        session = {"sessionKey": f"hook:failover:{seq % 10}"} if seq % 4 == 0 else {}
        body = json.dumps({"message": token, **session}).encode()
        headers = {"Authorization": f"Bearer {HOOKS_TOKEN}", "Idempotency-Key": token}
        deadline = time.monotonic() + 60
        attempt = 0
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < deadline:
                port = self.ingress_ports[(seq + attempt) % 2]
                attempt += 1
                try:
                    response = client.post(
                        f"http://127.0.0.1:{port}/hooks/agent", content=body, headers=headers
                    )
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code in (200, 202):
                    with self.lock:
                        self.acked[token] = time.monotonic()
                        self.last_ack_wall = max(self.last_ack_wall, time.time())
                    return
                with self.lock:
                    self.report.refused += 1
                time.sleep(0.2)
        with self.lock:
            self.report.problems.append(f"{token}: never acknowledged")

    def kill_primary(self) -> None:
        old = self.cluster.primary()
        if self.lag:
            # The replica falls behind (a slow network, a busy host): its link to the primary is
            # cut (pointed at a port where nothing listens) for `lag` seconds while the primary
            # keeps acknowledging; then the primary dies, and Sentinel promotes the replica
            # without what it missed.
            replica = next(node for node in self.cluster.nodes if node is not old)
            replica.client().replicaof("127.0.0.1", free_port())
            time.sleep(self.lag)
        killed_at = time.monotonic()
        old.kill()
        self.killed.set()
        wait_until(lambda: self.cluster.master_port() not in (None, old.port), timeout=30, interval=0.1)
        self.report.failover_seconds = time.monotonic() - killed_at
        # A supervisor brings it back as the new primary's replica, as Sentinel-aware charts do
        # (left alone, Sentinel converts it too, but only at its next 10 s INFO round).
        old.start(["--replicaof", "127.0.0.1", str(self.cluster.master_port())])

    def run(self, drain_timeout: float) -> FailoverReport:
        self.start()
        started = time.monotonic()
        killer: threading.Thread | None = None
        with ThreadPoolExecutor(32) as pool:
            for seq in range(self.events):
                due = started + seq / self.rate
                time.sleep(max(0.0, due - time.monotonic()))
                pool.submit(self.send, seq)
                if killer is None and seq >= self.events * self.kill_at:
                    killer = threading.Thread(target=self.kill_primary, daemon=True)
                    killer.start()
        assert killer is not None
        killer.join(timeout=60)
        self.report.sent = self.events
        self.report.acknowledged = len(self.acked)
        times = sorted(self.acked.values())
        self.report.stall_seconds = max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)
        # Drained: every acknowledged event reached the gateway, or (events lost with the old
        # primary never will) nothing is left to deliver.
        try:
            wait_until(lambda: not self.missing() or self.settled(), timeout=drain_timeout, interval=0.5)
        except AssertionError:
            self.report.problems.append(f"not drained: {len(self.missing())} missing")
        self.check()
        return self.report

    def runs(self) -> Counter[str]:
        runs: Counter[str] = Counter()
        self.last_run_at = 0.0
        if self.record.exists():
            for line in self.record.read_text().splitlines():
                entry = json.loads(line) if line.strip() else None
                if entry and entry["path"] == "agent" and entry["status"] == 200 and not entry.get("replay"):
                    match = re.search(r"failover-\d{6}", entry["body"].get("message", ""))
                    if match:
                        runs[match.group(0)] += 1
                        self.last_run_at = max(self.last_run_at, entry["at"])
        return runs

    def missing(self) -> list[str]:
        runs = self.runs()
        return [token for token in self.acked if token not in runs]

    def settled(self) -> bool:
        """Nothing queued, routed or in flight on the current primary, twice a second apart."""
        try:
            client = self.cluster.primary().client()
            states: Counter[bytes | None] = Counter()
            for key in client.scan_iter(match=f"{keys.PREFIX}action:*", count=1000):
                states[client.hget(key, "state")] += 1
            pending = client.xpending(keys.INBOX, keys.ROUTERS)["pending"] if client.exists(keys.INBOX) else 0
            backlog = client.llen("rq:queue:relay") + pending
        except (redis.exceptions.RedisError, StopIteration):
            return False
        return backlog == 0 and states[b"delivered"] + states[b"dead"] == sum(states.values())

    def check(self) -> None:
        report = self.report
        runs = self.runs()
        for token in self.acked:
            if token not in runs:
                report.lost += 1
                report.problems.append(f"lost {token}")
        report.doubled = sum(n - 1 for n in runs.values() if n > 1)
        report.drain_seconds = max(0.0, self.last_run_at - self.last_ack_wall)
        report.restarted = [" ".join(p.args) for p in self.procs if p.proc.poll() is not None]


def run_failover(
    tmp: Path,
    events: int = 400,
    rate: float = 40.0,
    min_replicas: int = 1,
    kill_at: float = 0.4,
    drain_timeout: float = 60.0,
    lag: float = 0.0,
) -> FailoverReport:
    soak = Soak(tmp, events, rate, min_replicas, kill_at, lag)
    try:
        return soak.run(drain_timeout)
    finally:
        soak.close()


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--min-replicas", type=int, default=1)
    parser.add_argument(
        "--lag", type=float, default=0.0, help="seconds the replica is behind when the primary dies"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = run_failover(
            Path(tmp), args.events, args.rate, args.min_replicas, drain_timeout=120, lag=args.lag
        )
    print(report.line())
    for problem in report.problems[:20]:
        print("  " + problem)


if __name__ == "__main__":
    main()
