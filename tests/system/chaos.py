"""The chaos soak: events through real processes while workers, the gateway and Redis fail.

It runs its own redis-server (AOF on), one ingress, 3 workers and the gateway stub; sends N events
across several sources and session keys while it kills random workers with SIGKILL (and restarts
them), makes the gateway answer 429 (with Retry-After), 500, 503 and 400, admit runs but answer
too late (the relay times out), go fully down for a while, and restarts redis-server once. Then
it waits for the queues to drain and checks, from the stub's own record, that every acknowledged
event became exactly its actions: each agent run accepted once, each wake received once, each
session in arrival order, dead letters only for the injected 400s.

    python -m tests.chaos --events 5000 --down 30      # the long form (README: make soak)
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from relay.store import keys
from tests.conftest import (
    GENERIC_TOKEN,
    HOOKS_TOKEN,
    Proc,
    RedisServer,
    Relay,
    github_fixture,
    sign,
    wait_until,
)

PUSH = json.loads(github_fixture("push.default"))


@dataclass
class Report:
    sent: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    dead: int = 0
    injected_dead: int = 0
    unexpected_dead: int = 0
    worker_kills: int = 0
    # Wakes received twice with a worker SIGKILLed in between: the window the README documents (the
    # gateway never dedupes a wake; a worker killed between its 2xx and the delivered write).
    wakes_doubled_by_a_kill: int = 0
    kill_times: list[float] = field(default_factory=list)
    drain_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"sent={self.sent} acknowledged={self.acknowledged} lost={self.lost} "
            f"duplicates={self.duplicates} "
            f"out_of_order={self.out_of_order} dead={self.dead} (injected {self.injected_dead}, "
            f"unexpected {self.unexpected_dead}) worker_kills={self.worker_kills} "
            f"wakes_doubled_by_a_kill={self.wakes_doubled_by_a_kill} drain={self.drain_seconds:.1f}s"
        )


@dataclass
class Sent:
    token: str
    kind: str  # agent | wake
    session: str | None
    seq: int


def _killed_between(kill_times: list[float], first: float, second: float) -> bool:
    """Whether a worker was SIGKILLed after the gateway took a wake and before it took it again."""
    return any(first <= k <= second for k in kill_times)


class Chaos:
    def __init__(self, tmp: Path, events: int, down: float, sessions: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.events = events
        self.down = down
        self.sessions = sessions
        self.redis = RedisServer(tmp / "redis")
        self.redis.start()
        self.client = redis.Redis.from_url(self.redis.url)
        self.record = tmp / "gateway.jsonl"
        self.relay = Relay(
            tmp / "relay",
            self.redis.url,
            {
                "gateway": {"timeout_seconds": 16},
                "delivery": {
                    "heartbeat_grace_seconds": 3,
                    "backoff_base_seconds": 0.5,
                    "backoff_max_seconds": 4,
                    "in_flight": 16,
                },
            },
        )
        self.sent: list[Sent] = []
        self.report = Report()
        self.stop = threading.Event()
        self.gateway_down = threading.Event()
        self.gateway_back = threading.Event()
        self.lock = threading.Lock()
        self.workers: list[Proc] = []
        self.last_states: dict[bytes | None, int] = {}

    # --- processes ---------------------------------------------------------------------------
    def start(self) -> None:
        self.start_stub()
        self.relay.start_ingress()
        self.workers = [self.relay.start_worker() for _ in range(3)]

    def start_stub(self) -> None:
        self.relay.start_stub("--record", str(self.record))

    def close(self) -> None:
        self.stop.set()
        self.relay.stop()
        self.redis.stop()

    # --- sending -----------------------------------------------------------------------------
    def post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST like a sender that retries until the relay accepts (a 503 acknowledges nothing).
        `self.retried` says whether an earlier attempt went unanswered or was refused."""
        self.retried = False
        for attempt in range(200):
            self.retried = attempt > 0
            try:
                response = httpx.post(f"{self.relay.url}{path}", content=body, headers=headers, timeout=10)
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            if response.status_code != 503:
                return response
            time.sleep(0.1)
        raise AssertionError(f"the relay never accepted {path}")

    def send_all(self) -> None:
        for seq in range(self.events):
            session_no = self.rng.randrange(self.sessions)
            token = f"chaos-{seq:06d}"
            kind = self.rng.choice(["github", "github", "agent", "agent", "wake", "generic"])
            if kind == "github":
                payload = json.loads(json.dumps(PUSH))
                payload["repository"]["full_name"] = f"chaos/repo-{session_no}"
                payload["head_commit"]["message"] = token
                payload["commits"] = [{"id": token, "message": token}]
                body = json.dumps(payload).encode()
                headers = {
                    "Content-Type": "application/json",
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": token,
                    "X-Hub-Signature-256": sign(body),
                }
                response = self.post("/hooks/github", body, headers)
                sent = Sent(token, "agent", f"hook:github:chaos/repo-{session_no}", seq)
            elif kind == "generic":
                body = json.dumps({"message": token}).encode()
                headers = {"Authorization": f"Bearer {GENERIC_TOKEN}", "Idempotency-Key": token}
                response = self.post("/hooks/generic-agent", body, headers)
                sent = Sent(token, "agent", None, seq)
            elif kind == "agent":
                session = f"hook:chaos:{session_no}"
                body = json.dumps({"message": token, "sessionKey": session}).encode()
                response = self.post(
                    "/hooks/agent", body, {"Authorization": f"Bearer {HOOKS_TOKEN}", "Idempotency-Key": token}
                )
                sent = Sent(token, "agent", session, seq)
            else:
                body = json.dumps({"text": token, "mode": "now"}).encode()
                response = self.post(
                    "/hooks/wake", body, {"Authorization": f"Bearer {HOOKS_TOKEN}", "Idempotency-Key": token}
                )
                sent = Sent(token, "wake", None, seq)
            self.report.sent += 1
            # A retry of a request whose answer was lost (a timeout while Redis restarted) finds the
            # event already recorded: the relay answers 200 "duplicate", which acknowledges it too.
            repeat = self.retried and response.status_code == 200 and response.json().get("duplicate") is True
            if response.status_code == 202 or repeat:
                self.report.acknowledged += 1
                self.sent.append(sent)
            else:
                self.report.problems.append(f"{token}: {response.status_code} {response.text[:100]}")

    # --- faults ------------------------------------------------------------------------------
    def monkey(self) -> None:
        """Kill a random worker now and then; restart any that is gone (a supervisor would)."""
        self.gateway_down.wait()
        while not self.stop.wait(self.rng.uniform(1.5, 3.0)):
            with self.lock:
                victim = self.rng.choice(self.workers)
                if victim.proc.poll() is None:
                    victim.kill()
                    self.report.worker_kills += 1
                    self.report.kill_times.append(time.time())  # after the kill: no earlier than it
                for i, worker in enumerate(self.workers):
                    if worker.proc.poll() is not None:
                        self.workers[i] = self.relay.start_worker()

    def gateway_faults(self) -> None:
        """Every second or so, make the gateway misbehave for its next few requests."""
        plan = [
            {"fail": [429, 429], "retry_after": 1},
            {"fail": [500, 503, 500]},
            {"fail": [400]},
            {"hang": 1, "hang_seconds": 18},
            {"fail": [503, 400, 503]},
        ]
        while not self.stop.wait(self.rng.uniform(0.5, 1.5)):
            stub = self.relay.stub
            step = self.rng.choice(plan)
            if "hang" in step and not self.gateway_back.is_set():
                continue  # see `outage`
            try:
                if stub is not None:
                    stub.control(**step)
            except httpx.HTTPError:
                pass  # the gateway is down right now

    def outage(self) -> None:
        """The gateway goes fully down for `down` seconds, then Redis restarts once.

        A restarted gateway forgets its idempotency keys (as OpenClaw's does), so a request whose
        answer the relay never got (a worker killed mid-request, a timeout) and that is resent
        after the restart can start a second run: that is the one window no relay can close. The
        soak keeps those faults (worker kills, late answers) after the restart, where the
        gateway's dedupe covers them; see docs/internals.md, "Delivery guarantees".
        """
        if self.stop.wait(2.0):
            return
        stub_proc = self.relay.stub.proc if self.relay.stub else None
        if stub_proc is not None:
            # Shut down as a gateway does: refuse new requests, let the admitted ones answer, stop.
            self.relay.stub.control(refuse_all=True)
            time.sleep(1.0)
            stub_proc.stop()
            self.relay.procs.remove(stub_proc)
        self.gateway_down.set()
        if self.stop.wait(self.down):
            return
        self.start_stub()
        self.gateway_back.set()
        if self.stop.wait(2.0):
            return
        self.redis.stop()  # SIGTERM: Redis writes its AOF and exits
        time.sleep(0.5)
        self.redis.start()

    # --- checking ----------------------------------------------------------------------------
    def settled(self) -> bool:
        if self.client.xlen(keys.INBOX):
            return False
        states: Counter[bytes | None] = Counter()
        cursor = 0
        while True:
            cursor, batch = self.client.scan(cursor, match=f"{keys.PREFIX}action:*", count=1000)
            with self.client.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.hget(key, "state")
                for value in pipe.execute():
                    states[value] += 1
            if cursor == 0:
                break
        total = sum(states.values())
        self.last_states = dict(states)
        return total >= len(self.sent) and states[b"delivered"] + states[b"dead"] == total

    def diagnose(self) -> str:
        from rq import Queue

        queue = Queue("relay", connection=self.client)
        return (
            f"action states {self.last_states}, inbox {self.client.xlen(keys.INBOX)}, "
            f"queued jobs {queue.count}, scheduled {queue.scheduled_job_registry.count}, "
            f"started {queue.started_job_registry.count}, failed {queue.failed_job_registry.count}, "
            f"circuit {self.client.get(keys.CIRCUIT)!r}, "
            f"pending {self.client.xpending(keys.INBOX, keys.ROUTERS)}"
        )

    def check(self) -> Report:
        report = self.report
        entries = [json.loads(line) for line in self.record.read_text().splitlines() if line.strip()]
        runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        injected_400 = {e.get("key") for e in entries if e.get("injected") and e["status"] == 400}
        for e in entries:
            if e["status"] == 200 and not e.get("replay"):
                text = e["body"].get("message") or e["body"].get("text") or ""
                runs[_token(text)].append(e)
        dead_keys = {k.decode() for k in self.client.zrange(keys.DEAD, 0, -1)}
        report.dead = len(dead_keys)
        report.injected_dead = len(dead_keys & injected_400)
        report.unexpected_dead = len(dead_keys - injected_400)
        dead_tokens = set()
        for aid in dead_keys:
            body = self.client.hget(keys.action(aid), "body") or b"{}"
            data = json.loads(body)
            dead_tokens.add(_token(data.get("message") or data.get("text") or ""))
        by_session: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for item in self.sent:
            got = runs.get(item.token, [])
            if not got and item.token not in dead_tokens:
                report.lost += 1
                report.problems.append(f"lost {item.token}")
            if (
                len(got) == 2
                and item.kind == "wake"
                and _killed_between(report.kill_times, got[0]["at"], got[1]["at"])
            ):
                report.wakes_doubled_by_a_kill += 1
            elif len(got) > 1:
                report.duplicates += len(got) - 1
                report.problems.append(f"duplicate {item.token}: {[g.get('runId') for g in got]}")
            if got and item.session:
                by_session[item.session].append((got[0]["at"], item.seq))
        for session, pairs in by_session.items():
            seqs = [seq for _at, seq in sorted(pairs)]
            bad = sum(1 for a, b in zip(seqs, seqs[1:], strict=False) if b < a)
            if bad:
                report.out_of_order += bad
                report.problems.append(f"out of order in {session}: {seqs}")
        return report


def _token(text: str) -> str:
    match = re.search(r"chaos-\d{6}", text)
    return match.group(0) if match else text


def run_chaos(
    tmp: Path,
    events: int = 500,
    down: float = 5.0,
    sessions: int = 40,
    seed: int = 7,
    drain_timeout: float = 240.0,
) -> Report:
    chaos = Chaos(tmp, events, down, sessions, seed)
    try:
        chaos.relay.config_path.write_text(
            chaos.relay.config_path.read_text()
            + (
                "  generic-agent:\n    preset: generic\n    token: env:GENERIC_WEBHOOK_TOKEN\n"
                "mappings:\n- match: {path: generic-agent}\n  action: agent\n  name: Generic\n"
                "  messageTemplate: '{{payload.message}}'\n"
            )
        )
        chaos.start()
        threads = [
            threading.Thread(target=fn, daemon=True)
            for fn in (chaos.monkey, chaos.gateway_faults, chaos.outage)
        ]
        for thread in threads:
            thread.start()
        chaos.send_all()
        sent_at = time.monotonic()
        threads[2].join()  # the outage and the Redis restart are part of every run
        try:
            wait_until(chaos.settled, timeout=drain_timeout, interval=0.5)
        except AssertionError:
            raise AssertionError(f"not drained: {chaos.diagnose()}") from None
        chaos.report.drain_seconds = time.monotonic() - sent_at
        chaos.stop.set()
        time.sleep(1.0)  # let a late duplicate, if any, show up in the record
        return chaos.check()
    finally:
        chaos.close()


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--down", type=float, default=30.0, help="seconds the gateway is fully down")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = run_chaos(Path(tmp), args.events, args.down, args.sessions, args.seed, drain_timeout=1800)
    print(report.line())
    for problem in report.problems[:20]:
        print("  " + problem)
    raise SystemExit(
        0 if not (report.lost or report.duplicates or report.out_of_order or report.unexpected_dead) else 1
    )


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
