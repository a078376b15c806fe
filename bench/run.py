"""One command that measures openclaw-relay and its baselines side by side, on this machine, in one run.

    python bench/run.py [--quick | --smoke] [--only ingress,cpu,delivery,e2e,burst] [--sessions N]
                        [--out FILE] [--profile DIR] [--keep]

Starts its own redis-server on a free loopback port (never 127.0.0.1:6379), the relay's real
processes (`python -m relay.cli.main serve | worker | gateway-stub`) and the baselines
(bench/bare_app.py, bench/asyncio_consumer.py), drives them with wrk and bench/loadgen.py, and
prints a markdown table with ratios, versions and the machine; the same table goes to --out
(default bench/results.md). Everything is bounded in count and time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_PY = ROOT / ".venv" / "bin" / "python"

# Run with the project's venv (it has the relay installed) even when started as `python3 bench/run.py`.
if (
    VENV_PY.exists()
    and Path(sys.prefix).resolve() != (ROOT / ".venv").resolve()
    and not os.environ.get("BENCH_NO_REEXEC")
):
    os.execv(str(VENV_PY), [str(VENV_PY), *sys.argv])  # noqa: S606

import httpx  # noqa: E402
import redis  # noqa: E402

sys.path.insert(0, str(ROOT))
from relay.protocol.actions import action_id  # noqa: E402

sys.path.insert(0, str(BENCH))
from workloads import ALERTMANAGER_TOKEN, workloads, write_list  # noqa: E402

PUSH = ROOT / "tests" / "fixtures" / "github" / "push.default.json"
SECRET = "bench-github-secret"  # noqa: S105 - a throwaway secret for local processes
HOOKS_TOKEN = "bench-hooks-token"  # noqa: S105
IN_FLIGHT = 32
WRK_CONNS = 32
SECTIONS = ("ingress", "cpu", "delivery", "e2e", "burst")
# An event's way to the gateway, stage by stage (bench e2e): each ends at the time a record keeps.
E2E_STAGES = (
    "sender → stored (ingress write)",
    "stored → mapped (router reads the inbox, maps)",
    "mapped → queued (RQ job made)",
    "queued → attempt (RQ worker takes the job)",
    "attempt → gateway has it (checks, HTTP)",
)
# Issue 21's workloads: each against the bare and the verify baseline (push1 is section 1's own).
WORKLOADS = ("push1", "push7", "single", "alerts20")


@dataclass(frozen=True)
class Sizes:
    wrk_s: float  # measured wrk run per target
    warm_s: float  # wrk warm-up before it
    rounds: int  # bare/relay alternations
    open_s: float  # open-loop run at half capacity
    deliver_n: int  # actions per delivery run, stub answering at once
    deliver_slow_n: int  # actions per delivery run, stub holding each request 1 s
    single_n: int  # actions of ONE session (one repository), stub at once; 0: skip
    single_slow_n: int  # same, stub holding each request 1 s; 0: skip
    e2e_n: int
    burst_n: int
    drain_timeout: float
    extra_variants: bool  # ingress decomposition rows (verify-only baseline, relay at log level WARNING)
    cpu_n: int  # requests per server and workload in bench/cpu.py (in process)
    workloads: tuple[str, ...]  # issue 21's workloads sent with wrk in section 1b


FULL = Sizes(10, 2, 2, 5, 2000, 640, 100, 20, 200, 10_000, 420, True, 3000, WORKLOADS)
QUICK = Sizes(2, 1, 1, 2, 150, 64, 0, 0, 30, 1_000, 15, False, 500, WORKLOADS)
SMOKE = Sizes(1, 1, 1, 1, 64, 32, 0, 0, 5, 64, 10, False, 50, ("alerts20",))  # the path push1 does not take


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class RecordTail:
    """Follows the gateway stub's --record JSONL file (one line per request it handled)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.buf = b""
        self.entries: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []  # accepted, non-replay agent runs

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return len(self.runs)
        self.offset += len(data)
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            if line:
                entry = json.loads(line)
                self.entries.append(entry)
                if entry.get("path") == "agent" and entry.get("status") == 200 and not entry.get("replay"):
                    self.runs.append(entry)
        return len(self.runs)

    def wait(self, count: int, timeout: float, interval: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while self.poll() < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)
        return True


class Bench:
    def __init__(self, sizes: Sizes, profile_dir: Path | None, keep: bool, sessions: int) -> None:
        self.sizes = sizes
        self.sessions = sessions
        self.keep = keep
        self.profile_dir = profile_dir
        self.tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        # The push fixture for `sessions` repositories (Codertocat/Hello-World-00, -01, ...): the github
        # preset keys the agent session on the repository, and the relay delivers one session's
        # actions in order, one at a time, so the number of sessions bounds delivery concurrency.
        template = PUSH.read_bytes()
        self.variants: list[tuple[str, bytes]] = []
        lines = []
        for k in range(sessions):
            body = template.replace(b"Codertocat/Hello-World", f"Codertocat/Hello-World-{k:02d}".encode())
            path = self.tmp / f"push-{k:02d}.json"
            path.write_bytes(body)
            self.variants.append((sign(body), body))
            lines.append(f"{sign(body)}\t{path}\n")
        self.variants_file = self.tmp / "variants.tsv"
        self.variants_file.write_text("".join(lines))
        self.single_file = self.tmp / "variants-1.tsv"
        self.single_file.write_text(lines[0])
        self.workloads = workloads(sessions)
        self.workload_files = {
            name: write_list(w, self.tmp / "workloads") for name, w in self.workloads.items()
        }
        self.signature, self.body = self.variants[0]
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.stub_port = free_port()
        self.ingress_port = free_port()
        self.config = self.tmp / "relay.yaml"
        self.config.write_text(
            json.dumps(
                {  # JSON is YAML
                    "redis_url": self.redis_url,
                    "gateway": {
                        "url": f"http://127.0.0.1:{self.stub_port}",
                        "token": "env:OPENCLAW_HOOKS_TOKEN",
                    },
                    "delivery": {"in_flight": IN_FLIGHT},
                    "sources": {
                        "github": {"preset": "github", "secret": "env:GITHUB_WEBHOOK_SECRET"},
                        "alertmanager": {"preset": "alertmanager", "token": "env:ALERTMANAGER_TOKEN"},
                    },
                },
                indent=2,
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        self.env = {
            **env,
            "RELAY_CONFIG": str(self.config),
            "OPENCLAW_HOOKS_TOKEN": HOOKS_TOKEN,
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "ALERTMANAGER_TOKEN": ALERTMANAGER_TOKEN,
            "PYTHONUNBUFFERED": "1",
        }
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.r: redis.Redis | None = None
        self.seq = 0
        self.notes: list[str] = []
        self.stop_times: list[tuple[str, float]] = []
        self.worker_stops = 0
        self.slow_worker_stops = 0

    # ---- processes -------------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        self.seq += 1
        logf = open(self.tmp / f"{self.seq:02d}-{name}.log", "ab")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            argv,
            env=env or self.env,
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
            start_new_session=True,
        )
        logf.close()
        self.procs.append(proc)
        return proc

    def relay(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.spawn(name, [sys.executable, "-m", "relay.cli.main", *args], env)

    def stop(self, proc: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
        if proc is None:
            return
        if proc.poll() is None:
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                if os.environ.get("BENCH_DUMP_ON_HANG"):
                    subprocess.run(
                        [str(Path(sys.executable).parent / "py-spy"), "dump", "--pid", str(proc.pid)],
                        stdout=sys.stderr,
                        stderr=subprocess.STDOUT,
                        timeout=30,
                    )
                proc.kill()
                proc.wait()
                if timeout >= 1:
                    command = " ".join(proc.args[2:4])
                    log(f"pid {proc.pid} ({command}) ignored SIGTERM for {timeout:.0f}s: killed")
            self.stop_times.append((" ".join(proc.args[2:4]), time.monotonic() - t0))
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_workers(self, procs: list[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
        """SIGTERM all at once; a worker still alive after `grace` seconds is counted and killed.

        Everything was delivered when this is called, so a kill loses nothing here; the count is
        reported because a deployment's stop timeout (docker: 10 s) would kill it the same way."""
        t0 = time.monotonic()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=max(0.1, grace - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                self.slow_worker_stops += 1
        for p in procs:
            self.stop(p, timeout=0.1)
        self.worker_stops += len(procs)

    def start_redis(self) -> None:
        rdir = self.tmp / "redis"
        rdir.mkdir()
        self.redis_proc = self.spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(rdir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                # No automatic AOF rewrite: each run starts from an empty dataset and appends ~40 MB/s, so
                # Redis forked a rewrite every few seconds and a run's figures hung on when one landed.
                # The per-event cost (the append, its fsync every second) is measured; a rewrite is
                # compaction, paid per dataset size, not per event (bench/README.md).
                "--auto-aof-rewrite-percentage",
                "0",
            ],
        )
        self.r = redis.Redis(port=self.redis_port)
        self.wait(lambda: self._ping(), 10, "redis-server")

    def _ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.exceptions.ConnectionError:
            return False

    def flush(self) -> None:
        self.r.flushall()

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready within {timeout}s (logs in {self.tmp})")
            time.sleep(0.02)

    def http_ok(self, url: str) -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def start_ingress(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = self.relay("ingress", "serve", "--port", str(self.ingress_port), env=env)
        self.wait(lambda: self.http_ok(f"http://127.0.0.1:{self.ingress_port}/healthz"), 20, "relay serve")
        return proc

    def start_bare(self, mode: str) -> subprocess.Popen[bytes]:
        proc = self.spawn(
            f"bare-{mode}",
            [
                sys.executable,
                str(BENCH / "bare_app.py"),
                "--port",
                str(self.ingress_port),
                "--mode",
                mode,
                "--secret",
                SECRET,
                "--token",
                ALERTMANAGER_TOKEN,
            ],
        )
        self.wait(
            lambda: self.http_ok(f"http://127.0.0.1:{self.ingress_port}/healthz"), 20, f"bare app ({mode})"
        )
        return proc

    def start_stub(self, admit_delay: float, record: Path) -> subprocess.Popen[bytes]:
        proc = self.relay(
            "stub",
            "gateway-stub",
            "--port",
            str(self.stub_port),
            "--token",
            HOOKS_TOKEN,
            "--admit-delay",
            str(admit_delay),
            "--record",
            str(record),
            "--allow-request-session-key",
        )
        self.wait(lambda: self.http_ok(f"http://127.0.0.1:{self.stub_port}/readyz"), 20, "gateway stub")
        return proc

    def start_worker(self, index: int) -> subprocess.Popen[bytes]:
        return self.relay(
            f"worker{index}", "worker", "--name", f"bench-w{index}-{os.getpid()}-{time.monotonic_ns()}"
        )

    def cleanup(self) -> None:
        for proc in list(reversed(self.procs)):
            self.stop(proc, timeout=10)
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- load ------------------------------------------------------------------------------

    def wrk(self, seconds: float, prefix: str, workload: str | None = None) -> dict[str, Any]:
        w = self.workloads[workload] if workload else None
        extra = (
            [str(self.workload_files[w.name]), prefix, f"/hooks/{w.source}", w.source]
            if w
            else [str(self.variants_file), prefix]
        )
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{WRK_CONNS}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(BENCH / "wrk_github.lua"),
                f"http://127.0.0.1:{self.ingress_port}",
                "--",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
        line = next(line for line in out.stdout.splitlines() if line.startswith("BENCH_JSON "))
        res = json.loads(line[len("BENCH_JSON ") :])
        res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
        return res

    def loadgen(self, *args: str, timeout: float = 600, variants: Path | None = None) -> dict[str, Any]:
        out = subprocess.run(
            [
                sys.executable,
                str(BENCH / "loadgen.py"),
                *args,
                "--port",
                str(self.ingress_port),
                "--variants",
                str(variants or self.variants_file),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    def blast(self, count: int, prefix: str, variants: Path | None = None) -> dict[str, Any]:
        res = self.loadgen(
            "blast", "--count", str(count), "--conns", str(WRK_CONNS), "--prefix", prefix, variants=variants
        )
        bad = {k: v for k, v in res["statuses"].items() if k != "202"}
        if bad or res["errors"] or res["completed"] != count:
            raise RuntimeError(f"ingress refused part of a pre-fill/burst: {res}")
        return res

    def py_spy(self, pid: int, seconds: float, name: str) -> subprocess.Popen[bytes] | None:
        if (
            self.profile_dir is None
            or shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
            is None
        ):
            return None
        exe = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, int(seconds))),
                "--rate",
                "250",
                "--nonblocking",
                "--format",
                "raw",
                "-o",
                str(self.profile_dir / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    # ---- 1. ingress ------------------------------------------------------------------------

    def ingress(self) -> dict[str, Any]:
        s = self.sizes
        targets = ["bare", "relay"] + (["verify", "relay-warn"] if s.extra_variants else [])
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
        for rnd in range(s.rounds):
            order = targets if rnd == 0 else ["bare", "relay"]
            for target in order:
                self.flush()
                if target == "relay":
                    proc = self.start_ingress()
                elif target == "relay-warn":
                    proc = self.start_ingress({**self.env, "RELAY_LOG_LEVEL": "WARNING"})
                else:
                    proc = self.start_bare(target)
                self.wrk(s.warm_s, f"warm-{target}-{rnd}")
                before = self.r.zcard("relay:events")
                c0, r0 = cpu_seconds(proc.pid), cpu_seconds(self.redis_proc.pid)
                spy = self.py_spy(proc.pid, s.wrk_s, "ingress") if target == "relay" and rnd == 0 else None
                res = self.wrk(s.wrk_s, f"run-{target}-{rnd}")
                c1, r1 = cpu_seconds(proc.pid), cpu_seconds(self.redis_proc.pid)
                if spy is not None:
                    spy.wait(timeout=30)
                res["cpu_us"] = (c1 - c0) / res["requests"] * 1e6
                res["redis_cpu_us"] = (r1 - r0) / res["requests"] * 1e6
                if target.startswith("relay"):
                    res["stored"] = self.r.zcard("relay:events") - before
                self.stop(proc)
                runs[target].append(res)
                log(
                    f"ingress {target} round {rnd + 1}: {res['rps']:.0f} req/s, p99 "
                    f"{res['p99_us'] / 1000:.1f} ms, {res['cpu_us']:.0f} µs CPU/req, non-2xx {res['non2xx']}"
                )
        mean_rps = {t: statistics.mean(r["rps"] for r in rs) for t, rs in runs.items()}
        # Open loop at half of the relay's capacity; the bare app gets the same absolute rate.
        rate = mean_rps["relay"] / 2
        half: dict[str, Any] = {}
        for target in ("relay", "bare"):
            self.flush()
            proc = self.start_ingress() if target == "relay" else self.start_bare("bare")
            self.loadgen(
                "open", "--rate", str(rate), "--duration", "1", "--conns", "64", "--prefix", f"hwarm-{target}"
            )
            half[target] = self.loadgen(
                "open",
                "--rate",
                str(rate),
                "--duration",
                str(s.open_s),
                "--conns",
                "64",
                "--prefix",
                f"half-{target}",
            )
            self.stop(proc)
            h = half[target]
            log(
                f"open loop {target} at {rate:.0f}/s: achieved {h['achieved_rate']:.0f}/s, p50 "
                f"{h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms, statuses {h['statuses']}"
            )
        return {
            "runs": runs,
            "rps": mean_rps,
            "half_rate": rate,
            "half": half,
            "workloads": self.workload_runs(),
        }

    def _workload_run(self, workload: str, target: str) -> dict[str, Any]:
        """One wrk run of `workload` against bare, verify or relay: req/s, server and Redis CPU per
        request."""
        s = self.sizes
        self.flush()
        proc = self.start_ingress() if target == "relay" else self.start_bare(target)
        self.wrk(s.warm_s, f"warm-{workload}-{target}", workload)
        before, calls = self.r.zcard("relay:events"), self.script_calls()
        c0, r0 = cpu_seconds(proc.pid), cpu_seconds(self.redis_proc.pid)
        res = self.wrk(s.wrk_s, f"run-{workload}-{target}", workload)
        c1, r1 = cpu_seconds(proc.pid), cpu_seconds(self.redis_proc.pid)
        res["cpu_us"] = (c1 - c0) / res["requests"] * 1e6
        res["redis_cpu_us"] = (r1 - r0) / res["requests"] * 1e6
        if target == "relay":
            res["stored"] = self.r.zcard("relay:events") - before
            res["batch"] = res["stored"] / max(1, self.script_calls() - calls)  # events per group commit
        self.stop(proc)
        log(
            f"workload {workload} {target}: {res['rps']:.0f} req/s, {res['cpu_us']:.0f} µs CPU/req, "
            f"redis {res['redis_cpu_us']:.0f} µs/req, non-2xx {res['non2xx']}"
        )
        return res

    def script_calls(self) -> int:
        """Script calls Redis ran so far (each group commit of the ingress is one)."""
        stats = self.r.info("commandstats")
        return sum(int(stats.get(k, {}).get("calls", 0)) for k in ("cmdstat_evalsha", "cmdstat_eval"))

    def workload_runs(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Issue 21: every workload against both baselines, one wrk run each, in the same order."""
        return {
            w: {t: self._workload_run(w, t) for t in ("bare", "verify", "relay")}
            for w in self.sizes.workloads
        }

    # ---- 1b. CPU per request in process ----------------------------------------------------

    def cpu(self) -> dict[str, Any]:
        """bench/cpu.py in its own process: CPU per request through each ASGI app, far less sensitive
        to other load on the machine than req/s."""
        out = subprocess.run(
            [
                sys.executable,
                str(BENCH / "cpu.py"),
                "--json",
                "--n",
                str(self.sizes.cpu_n),
                "--rounds",
                "2" if self.sizes.extra_variants else "1",
            ],
            capture_output=True,
            text=True,
            timeout=1800,
            check=True,
        )
        res = json.loads(out.stdout.strip().splitlines()[-1])
        for name, r in res["results"].items():
            log(
                f"cpu {name}: bare {r['bare']['cpu_us']:.0f}, verify {r['verify']['cpu_us']:.0f}, relay "
                f"{r['relay']['cpu_us']:.0f} µs/request; redis {r['relay']['redis_cpu_us']:.0f} µs/event"
            )
        return res

    # ---- 2. delivery -----------------------------------------------------------------------

    def sample_action(self, ingress_proc: subprocess.Popen[bytes]) -> dict[str, Any]:
        self.flush()
        self.blast(1, "sample")
        (eid,) = self.r.zrange("relay:events", 0, -1)
        self.map_inbox()
        actions = json.loads(self.r.hget(f"relay:event:{eid.decode()}", "actions"))
        assert len(actions) == 1 and actions[0]["kind"] == "agent", actions
        return actions[0]

    def map_inbox(self) -> None:
        """Map what the inbox holds, as a worker's mapping stage would, in this process (no job is
        run): for reading an event's actions without starting a worker."""
        from unittest import mock

        from relay.config import load_settings
        from relay.worker.dispatch import Router, ensure_group

        with mock.patch.dict(os.environ, self.env):
            router = Router(self.r, load_settings(self.config), consumer="bench")
        ensure_group(self.r)
        router.step(0)
        router.mapper.release()

    def delivery(self) -> dict[str, Any]:
        s = self.sizes
        ingress = self.start_ingress()
        sample = self.sample_action(ingress)
        out: dict[str, Any] = {}
        try:
            for delay, n, single_n in (
                (0.0, s.deliver_n, s.single_n),
                (1.0, s.deliver_slow_n, s.single_slow_n),
            ):
                for workers in (1, 2):
                    out[(delay, workers)] = self._deliver_relay(delay, n, workers)
                out[(delay, "asyncio")] = self._deliver_baseline(delay, n, sample)
                if single_n:
                    out[(delay, "single")] = self._deliver_relay(delay, single_n, 1, single=True)
        finally:
            self.stop(ingress)
        return out

    def _deliver_relay(self, delay: float, n: int, workers: int, single: bool = False) -> dict[str, Any]:
        self.flush()
        self.blast(n, f"d{delay:g}w{workers}{'s' if single else ''}", self.single_file if single else None)
        assert self.r.xlen("relay:inbox") == n
        record = self.tmp / f"record-d{delay:g}-w{workers}{'-single' if single else ''}.jsonl"
        stub = self.start_stub(delay, record)
        tail = RecordTail(record)
        cs0 = cpu_seconds(stub.pid)
        t0 = time.monotonic()
        procs = [self.start_worker(i) for i in range(workers)]
        spy = self.py_spy(procs[0].pid, 8, "worker") if (delay == 0 and workers == 1 and not single) else None
        ok = tail.wait(n, timeout=max(60, n / 5) if not single else 30 + n * 3 * (1 + delay))
        elapsed = time.monotonic() - t0 + delay
        cpu = sum(cpu_seconds(p.pid) for p in procs)
        cs1 = cpu_seconds(stub.pid)
        if spy is not None:
            spy.wait(timeout=30)
        self.stop_workers(procs)
        time.sleep(0.2)
        tail.poll()
        self.stop(stub)
        what = f"{workers} worker(s), stub delay {delay:g}s" + (", ONE session" if single else "")
        return self._delivery_result(tail, n, elapsed, ok, cpu, cs1 - cs0, delay, what)

    def _deliver_baseline(self, delay: float, n: int, sample: dict[str, Any]) -> dict[str, Any]:
        self.flush()
        key = "bench:actions"
        with self.r.pipeline(transaction=False) as pipe:
            for i in range(n):
                aid = action_id("github", f"base-{delay:g}-{i}", 0)
                pipe.lpush(key, json.dumps({"id": aid, "kind": sample["kind"], "body": sample["body"]}))
            pipe.execute()
        record = self.tmp / f"record-d{delay:g}-asyncio.jsonl"
        stub = self.start_stub(delay, record)
        tail = RecordTail(record)
        cs0 = cpu_seconds(stub.pid)
        t0 = time.monotonic()
        proc = self.spawn(
            "asyncio-consumer",
            [
                sys.executable,
                str(BENCH / "asyncio_consumer.py"),
                "--redis-url",
                self.redis_url,
                "--list",
                key,
                "--gateway",
                f"http://127.0.0.1:{self.stub_port}",
                "--token",
                HOOKS_TOKEN,
                "--in-flight",
                str(IN_FLIGHT),
            ],
        )
        ok = tail.wait(n, timeout=max(60, n / 5))
        elapsed = time.monotonic() - t0 + delay
        cpu = cpu_seconds(proc.pid)
        cs1 = cpu_seconds(stub.pid)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.stop(proc)
        tail.poll()
        self.stop(stub)
        return self._delivery_result(
            tail, n, elapsed, ok, cpu, cs1 - cs0, delay, f"asyncio consumer, stub delay {delay:g}s"
        )

    def _delivery_result(
        self,
        tail: RecordTail,
        n: int,
        elapsed: float,
        ok: bool,
        cpu: float,
        stub_cpu: float,
        delay: float,
        what: str,
    ) -> dict[str, Any]:
        # The stub records a run when it admits it, then holds the answer `delay` seconds: the last
        # run is answered `delay` after it is recorded, so both times include that hold.
        runs = tail.runs
        keys = [r["key"] for r in runs]
        ats = sorted(r["at"] for r in runs)
        steady = (
            (len(ats) - 1) / (ats[-1] - ats[0] + delay)
            if len(ats) > 1 and ats[-1] + delay > ats[0]
            else float("nan")
        )
        res = {
            "n": n,
            "arrived": len(runs),
            "complete": ok,
            "elapsed_s": elapsed,
            "rate": len(runs) / elapsed,
            "steady_rate": steady,
            "duplicates": len(keys) - len(set(keys)),
            "cpu_us": cpu / max(1, len(runs)) * 1e6,
            "stub_cpu_us": stub_cpu / max(1, len(runs)) * 1e6,
        }
        log(
            f"delivery {what}: {res['arrived']}/{n} in {elapsed:.1f}s = {res['rate']:.1f}/s "
            f"(steady {steady:.1f}/s), {res['cpu_us']:.0f} µs CPU/action, dup {res['duplicates']}"
        )
        return res

    # ---- 3. end to end ---------------------------------------------------------------------

    def e2e_stages(self, event_id: str, sent: float, arrived: float) -> dict[str, float]:
        """Where one event's time went, from the times its records keep (seconds)."""
        received, mapped, actions = self.r.hmget(
            f"relay:event:{event_id}", "received_at", "mapped_at", "actions"
        )
        aid = orjson.loads(actions)[0]["id"]
        queued, attempt = self.r.hmget(f"relay:action:{aid}", "queued_at", "first_attempt_at")
        marks = [sent, float(received), float(mapped), float(queued), float(attempt), arrived]
        return {name: b - a for name, a, b in zip(E2E_STAGES, marks[:-1], marks[1:], strict=True)}

    def e2e(self) -> dict[str, Any]:
        n = self.sizes.e2e_n
        self.flush()
        record = self.tmp / "record-e2e.jsonl"
        stub = self.start_stub(0, record)
        ingress = self.start_ingress()
        worker = self.start_worker(0)
        tail = RecordTail(record)
        url = f"http://127.0.0.1:{self.ingress_port}/hooks/github"
        latencies: list[float] = []
        acks: list[float] = []
        stages: list[dict[str, float]] = []
        try:
            with httpx.Client(timeout=10) as client:
                for i in range(-5, n):  # 5 warm-up events first (worker start-up, connections)
                    seen = tail.poll()
                    headers = {
                        "Content-Type": "application/json",
                        "X-GitHub-Event": "push",
                        "X-GitHub-Delivery": f"e2e-{i}",
                        "X-Hub-Signature-256": self.signature,
                    }
                    sent = time.time()
                    resp = client.post(url, content=self.body, headers=headers)
                    ack = time.time() - sent
                    if resp.status_code != 202:
                        raise RuntimeError(f"ingress answered {resp.status_code}: {resp.text}")
                    deadline = time.monotonic() + 30
                    while tail.poll() <= seen:
                        if time.monotonic() > deadline:
                            raise RuntimeError("event did not reach the stub within 30 s")
                        # The latency is the stub's own timestamp, so this wait does not bias it;
                        # polled every 0.5 ms, this process took CPU the relay's needed on 2 cores.
                        time.sleep(0.005)
                    if i >= 0:
                        latencies.append(tail.runs[-1]["at"] - sent)
                        acks.append(ack)
                        stages.append(self.e2e_stages(resp.json()["eventId"], sent, tail.runs[-1]["at"]))
        finally:
            self.stop_workers([worker])
            for p in (ingress, stub):
                self.stop(p)
        res = {
            "stages": {name: pct([s[name] for s in stages], 50) * 1000 for name in E2E_STAGES},
            "n": n,
            "p50_ms": pct(latencies, 50) * 1000,
            "p99_ms": pct(latencies, 99) * 1000,
            "max_ms": max(latencies) * 1000,
            "ack_p50_ms": pct(acks, 50) * 1000,
            "ack_p99_ms": pct(acks, 99) * 1000,
        }
        log(
            f"e2e: p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms"
            f" (ack p50 {res['ack_p50_ms']:.1f} ms)"
        )
        return res

    # ---- 4. burst + 5. memory --------------------------------------------------------------

    def burst(self) -> dict[str, Any]:
        n = self.sizes.burst_n
        self.flush()
        ingress = self.start_ingress()
        worker = self.start_worker(0)
        self.wait(lambda: self.r.scard("rq:workers") >= 1, 20, "relay worker")
        time.sleep(1.0)
        idle = {"ingress": rss_mb(ingress.pid), "worker": rss_mb(worker.pid)}
        record = self.tmp / "record-burst.jsonl"
        tail = RecordTail(record)
        stub = None
        try:
            t0 = time.monotonic()
            sent = self.blast(n, "burst")
            t_sent = time.monotonic()
            log(
                f"burst: {n} events accepted in {sent['elapsed_s']:.1f}s ({sent['rate']:.0f}/s) with the "
                "gateway down"
            )
            stub = self.start_stub(0, record)
            t_stub = time.monotonic()
            complete = tail.wait(n, timeout=self.sizes.drain_timeout, interval=0.05)
            t_done = time.monotonic()
            time.sleep(1.0)  # late duplicates would show up here
            tail.poll()
            after = {"ingress": rss_mb(ingress.pid), "worker": rss_mb(worker.pid)}
            dead = int(self.r.hget("relay:stats", "dead") or 0)
        finally:
            self.stop_workers([worker])
            for p in (ingress, stub):
                self.stop(p)
        expected = {action_id("github", f"burst-{i}", 0) for i in range(n)}
        run_keys = [r["key"] for r in tail.runs]
        all_keys = {e.get("key") for e in tail.entries if e.get("path") == "agent" and e.get("key")}
        res = {
            "n": n,
            "send_s": sent["elapsed_s"],
            "send_rate": sent["rate"],
            "send_p99_ms": sent["p99_ms"],
            "complete": complete,
            "arrived": len(set(run_keys)),
            "drain_s": t_done - t_stub,
            "total_s": t_done - t0,
            "gateway_down_s": t_stub - t_sent + sent["elapsed_s"],
            "distinct_keys": len(all_keys),
            "double_runs": len(run_keys) - len(set(run_keys)),
            "missing": len(expected - set(run_keys)),
            "unexpected": len(set(run_keys) - expected),
            "replays": sum(1 for e in tail.entries if e.get("replay")),
            "requests_at_stub": len(tail.entries),
            "dead": dead,
            "rss_idle": idle,
            "rss_after": after,
        }
        res["exactly_once"] = (
            complete and res["double_runs"] == 0 and res["missing"] == 0 and res["unexpected"] == 0
        )
        log(
            f"burst: drained in {res['drain_s']:.1f}s after the stub started; exactly once: "
            f"{res['exactly_once']}"
        )
        return res


# ---- report ----------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for label, dist in (
        ("starlette", "starlette"),
        ("uvicorn", "uvicorn"),
        ("uvloop", "uvloop"),
        ("httptools", "httptools"),
        ("httpx", "httpx"),
        ("redis-py", "redis"),
        ("hiredis", "hiredis"),
        ("rq", "rq"),
        ("orjson", "orjson"),
    ):
        try:
            out[label] = pkg_version(dist)
        except PackageNotFoundError:
            out[label] = "not installed"
    try:
        text = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        out["redis-server"] = (re.search(r"v=(\S+)", text) or re.search(r"(\d+\.\d+\.\d+)", text)).group(1)
    except (OSError, AttributeError):
        out["redis-server"] = "?"
    try:
        text = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout + ""
        out["wrk"] = text.split()[1] if text else "?"
    except (OSError, IndexError):
        out["wrk"] = "?"
    return out


def machine() -> dict[str, str]:
    model = "?"
    mem = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
    }


def f0(x: float) -> str:
    return "n/a" if x != x else f"{x:,.0f}"


def f1(x: float) -> str:
    return "n/a" if x != x else f"{x:,.1f}"


def ratio(a: float, b: float) -> str:
    return "n/a" if not b or a != a or b != b else f"{a / b:.2f}×"


def verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def report(mode: str, results: dict[str, Any], started: float, profiled: bool, sessions: int) -> str:
    v, m = versions(), machine()
    flags = ("" if mode == "full" else f" --{mode}") + ("" if sessions == 64 else f" --sessions {sessions}")
    lines = [
        f"# openclaw-relay benchmark ({mode})",
        "",
        f"`python bench/run.py{flags}` on {time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"took {time.monotonic() - started:.0f} s."
        + (" **Profiled with py-spy: numbers are perturbed.**" if profiled else ""),
        "",
        "Machine: " + ", ".join(f"{k} {val}" for k, val in m.items()) + ".",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"Payloads: tests/fixtures/github/push.default.json ({len(PUSH.read_bytes()):,} bytes) rewritten for "
        f"{sessions} repositories, so the actions fall into {sessions} agent sessions (the github preset's "
        "sessionKey is per repository); request i uses repository i mod "
        f"{sessions}.",
        "",
    ]
    targets: list[tuple[str, str, bool | None]] = []

    ing = results.get("ingress")
    if ing:
        rps, runs = ing["rps"], ing["runs"]
        bare = rps["bare"]
        lines += [
            "## 1. Ingress: POST /hooks/github, 7.9 KB signed push, unique X-GitHub-Delivery",
            f"wrk -t1 -c{WRK_CONNS}, {runs['bare'][0]['duration_us'] / 1e6:.0f} s per run, "
            f"{len(runs['bare'])} round(s) "
            "alternating bare/relay (mean shown); one uvicorn process each, same uvicorn.run() settings.",
            "",
            "| server | req/s | vs bare | p50 ms | p99 ms | server CPU µs/req | redis CPU µs/req | non-2xx |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        labels = {
            "bare": "bare Starlette (read body, 202)",
            "verify": "bare + HMAC verify + orjson parse",
            "relay": "**relay serve** (log level INFO, the default)",
            "relay-warn": "relay serve, log level WARNING",
        }
        for t in ("bare", "verify", "relay", "relay-warn"):
            if t not in runs:
                continue
            rs = runs[t]
            lines.append(
                f"| {labels[t]} | {f0(rps[t])} | {ratio(rps[t], bare)} | "
                f"{f1(statistics.mean(r['p50_us'] for r in rs) / 1000)} | "
                f"{f1(statistics.mean(r['p99_us'] for r in rs) / 1000)} | "
                f"{f0(statistics.mean(r['cpu_us'] for r in rs))} | "
                f"{f0(statistics.mean(r['redis_cpu_us'] for r in rs))} | "
                f"{sum(r['non2xx'] + r['connect_errors'] + r['read_errors'] + r['timeouts'] for r in rs)} |"
            )
        per_round = ", ".join(
            ratio(r["rps"], b["rps"]) for r, b in zip(runs["relay"], runs["bare"], strict=True)
        )
        stored = sum(r.get("stored", 0) for r in runs["relay"])
        sent = sum(r["requests"] for r in runs["relay"])
        lines += [
            "",
            f"relay/bare per round: {per_round}. Events stored in Redis during the measured relay runs: "
            f"{stored:,} for {sent:,} completed requests.",
            "",
        ]
        h = ing["half"]
        lines += [
            f"Open loop at half the relay's capacity ({f0(ing['half_rate'])} req/s offered, "
            "bench/loadgen.py, latency from each request's scheduled send time):",
            "",
            "| server | offered req/s | achieved req/s | p50 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for t in ("relay", "bare"):
            lines.append(
                f"| {t} | {f0(h[t]['offered_rate'])} | {f0(h[t]['achieved_rate'])} | {f1(h[t]['p50_ms'])} | "
                f"{f1(h[t]['p99_ms'])} | {f1(h[t]['max_ms'])} |"
            )
        lines.append("")
        targets.append(("ingress ≥ 0.6× bare", ratio(rps["relay"], bare), rps["relay"] / bare >= 0.6))
        wl = ing.get("workloads")
        if wl:
            labels = workloads(sessions)
            lines += [
                "### 1b. Every workload against both baselines (wrk, one run each)",
                f"wrk -t1 -c{WRK_CONNS}, {wl[next(iter(wl))]['relay']['duration_us'] / 1e6:.0f} s per run. "
                "*relay ÷ verify* is what the relay keeps of the rate of a server that only verifies and "
                "parses; CPU is the server process's, per request; Redis CPU is redis-server's, per request.",
                "",
                "| workload | bare req/s | verify req/s | relay req/s | relay ÷ verify | server CPU µs/req, "
                "relay vs verify | redis CPU µs/event | events per Redis call | non-2xx |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for name, res in wl.items():
                b, v, r = res["bare"], res["verify"], res["relay"]
                bad = sum(
                    x["non2xx"] + x["connect_errors"] + x["read_errors"] + x["timeouts"] for x in res.values()
                )
                lines.append(
                    f"| {labels[name].label} | {f0(b['rps'])} | {f0(v['rps'])} | {f0(r['rps'])} | "
                    f"{ratio(r['rps'], v['rps'])} | {f0(r['cpu_us'])} vs {f0(v['cpu_us'])} | "
                    f"{f0(r['redis_cpu_us'])} | {r.get('batch', float('nan')):.1f} | {bad} |"
                )
                targets.append(
                    (f"relay ≥ 0.5× verify: {name}", ratio(r["rps"], v["rps"]), r["rps"] / v["rps"] >= 0.5)
                )
            if "push1" in wl and "push7" in wl:
                one, seven = wl["push1"]["relay"]["cpu_us"], wl["push7"]["relay"]["cpu_us"]
                targets.append(
                    (
                        "CPU/request, 7-commit push ≤ 1.3× 1-commit push (wrk)",
                        ratio(seven, one),
                        seven <= 1.3 * one,
                    )
                )
            worst = max(res["relay"]["redis_cpu_us"] for res in wl.values())
            targets.append(("Redis CPU ≤ 50 µs/event (worst workload, wrk)", f"{worst:.0f} µs", worst <= 50))
            lines.append("")

    cpu = results.get("cpu")
    if cpu:
        labels = workloads(sessions)
        lines += [
            "## 1c. CPU per request, in process (bench/cpu.py)",
            f"Each ASGI app called directly, {cpu['n']:,} requests per server and workload, "
            f"{cpu['concurrency']} in flight on one uvloop loop, CPU = `time.process_time()` / requests "
            "(the lowest of the rounds): no HTTP parsing, which is the same for all three. "
            "The relay writes to its own redis-server (AOF everysec); Redis CPU from /proc. "
            "Far less sensitive to other load than req/s.",
            "",
            "| workload | bare µs | verify µs | relay µs | relay − verify µs | relay ÷ verify | redis CPU "
            "µs/event | redis commands/event |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        res = cpu["results"]
        for name, r in res.items():
            b, v, rl = (r[t]["cpu_us"] for t in ("bare", "verify", "relay"))
            lines.append(
                f"| {labels[name].label} | {b:.0f} | {v:.0f} | {rl:.0f} | {rl - v:.0f} | {ratio(rl, v)} | "
                f"{r['relay']['redis_cpu_us']:.0f} | {r['relay'].get('redis_commands', float('nan')):.1f} |"
            )
        if "push1" in res and "push7" in res:
            one, seven = res["push1"]["relay"]["cpu_us"], res["push7"]["relay"]["cpu_us"]
            targets.append(
                (
                    "CPU/request, 7-commit push ≤ 1.3× 1-commit push (in process)",
                    ratio(seven, one),
                    seven <= 1.3 * one,
                )
            )
        lines.append("")

    dl = results.get("delivery")
    if dl:
        lines += [
            "## 2. Delivery: pre-filled queue → gateway stub (`relay gateway-stub`, --record)",
            f"`relay worker` with delivery.in_flight = {IN_FLIGHT}; baseline: bench/asyncio_consumer.py "
            f"(RPOP + httpx.AsyncClient, {IN_FLIGHT} in flight). "
            "Rate = actions / time from process start until the stub has them all; "
            "steady = between the first and the last arrival.",
            "",
            "| stub | consumer | actions | actions/s | steady/s | vs asyncio | consumer CPU µs/action | stub "
            "CPU µs/action | dup |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for delay in (0.0, 1.0):
            base = dl.get((delay, "asyncio"))
            for who in (1, 2, "asyncio", "single"):
                res = dl.get((delay, who))
                if res is None:
                    continue
                name = {
                    "asyncio": "asyncio consumer",
                    "single": "1 relay worker, **all actions in ONE session**",
                }.get(who, f"**{who} relay worker{'s' if who == 2 else ''}**")
                done = f"{res['arrived']}/{res['n']}" if not res["complete"] else f"{res['n']}"
                lines.append(
                    f"| {'at once' if delay == 0 else 'holds 1 s'} | {name} | {done} | {f1(res['rate'])} | "
                    f"{f1(res['steady_rate'])} | {ratio(res['rate'], base['rate']) if base else 'n/a'} | "
                    f"{f0(res['cpu_us'])} | {f0(res['stub_cpu_us'])} | {res['duplicates']} |"
                )
        lines.append("")
        for delay in (0.0, 1.0):
            one, two, base = dl.get((delay, 1)), dl.get((delay, 2)), dl.get((delay, "asyncio"))
            if one and two:
                lines.append(
                    f"Scaling 1 → 2 workers, stub {'at once' if delay == 0 else 'holds 1 s'}: "
                    f"{ratio(two['rate'], one['rate'])}."
                )
                targets.append(
                    (
                        f"2 workers ≥ 1.7× one (stub {'at once' if delay == 0 else '1 s'})",
                        ratio(two["rate"], one["rate"]),
                        two["rate"] / one["rate"] >= 1.7,
                    )
                )
            if delay == 0 and one and base:
                targets.insert(
                    len(targets) - 1 if two else len(targets),
                    (
                        "one worker ≥ 0.5× asyncio consumer (stub at once)",
                        ratio(one["rate"], base["rate"]),
                        one["rate"] / base["rate"] >= 0.5,
                    ),
                )
            if delay == 1.0 and one:
                targets.append(
                    (
                        f"one worker ≥ 16 actions/s (stub 1 s, in_flight {IN_FLIGHT})",
                        f"{one['rate']:.1f}/s",
                        one["rate"] >= 16,
                    )
                )
                targets.append(
                    (
                        f"one worker ≥ 0.95× in-flight ÷ admission time (stub 1 s: {0.95 * IN_FLIGHT:.1f}/s)",
                        ratio(one["rate"], IN_FLIGHT),
                        one["rate"] >= 0.95 * IN_FLIGHT,
                    )
                )
                if two:
                    targets.append(
                        (
                            "2 workers ≥ 1.8× one (stub 1 s)",
                            ratio(two["rate"], one["rate"]),
                            two["rate"] / one["rate"] >= 1.8,
                        )
                    )
        lines.append("")

    e2e = results.get("e2e")
    if e2e:
        lines += [
            "## 3. End to end at idle (sequential)",
            f"{e2e['n']} events one after another through ingress → Redis → router → worker → stub; latency "
            "= stub's `at` minus the sender's send time.",
            "",
            "| | p50 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|",
            f"| sender → stub receives the action | {f1(e2e['p50_ms'])} | {f1(e2e['p99_ms'])} | "
            f"{f1(e2e['max_ms'])} |",
            f"| sender → ingress answers 202 | {f1(e2e['ack_p50_ms'])} | {f1(e2e['ack_p99_ms'])} | |",
            "",
            "Where the time goes (p50 of each stage, from the times the event and action records keep):",
            "",
            "| stage | p50 ms |",
            "|---|---:|",
            *(f"| {name} | {ms:.2f} |" for name, ms in e2e["stages"].items()),
            "",
        ]
        targets.append(("end-to-end p50 at idle ≤ 5 ms", f"{e2e['p50_ms']:.1f} ms", e2e["p50_ms"] <= 5))

    b = results.get("burst")
    if b:
        lines += [
            "## 4. Burst with the gateway down, then drain",
            f"{b['n']:,} events sent as fast as possible (bench/loadgen.py, {WRK_CONNS} connections) to "
            "`relay serve` with one `relay worker` running and the stub not started; then the stub starts.",
            "",
            "| | value |",
            "|---|---:|",
            f"| events accepted (202) | {b['n']:,} in {b['send_s']:.1f} s = {f0(b['send_rate'])}/s, p99 "
            f"{f1(b['send_p99_ms'])} ms |",
            f"| time to drain after the stub started | {b['drain_s']:.1f} "
            f"s{'' if b['complete'] else ' (**timed out**)'} |",
            f"| drain rate | {f1(b['arrived'] / b['drain_s'])} actions/s |",
            f"| distinct Idempotency-Keys at the stub | {b['distinct_keys']:,} |",
            f"| accepted runs / keys with two runs / missing / unexpected | {b['arrived']:,} / "
            f"{b['double_runs']} / {b['missing']} / {b['unexpected']} |",
            f"| requests at the stub (replays) | {b['requests_at_stub']:,} ({b['replays']}) |",
            f"| dead-lettered | {b['dead']} |",
            f"| **all arrived exactly once** | {'yes' if b['exactly_once'] else '**NO**'} |",
            "",
            "## 5. Memory (VmRSS)",
            "",
            "| process | idle MB | after the burst MB |",
            "|---|---:|---:|",
            f"| relay serve | {f1(b['rss_idle']['ingress'])} | {f1(b['rss_after']['ingress'])} |",
            f"| relay worker | {f1(b['rss_idle']['worker'])} | {f1(b['rss_after']['worker'])} |",
            "",
        ]
        targets.append(
            ("burst delivered exactly once", "yes" if b["exactly_once"] else "no", b["exactly_once"])
        )

    stops, slow = results.get("stops", (0, 0))
    if stops:
        lines += [
            f"Worker shutdown: {slow} of {stops} `relay worker` processes were still running 5 s after "
            "SIGTERM (sent right after the last action arrived) and were killed.",
            "",
        ]
    if targets:
        lines += [
            "## Targets (issues 9 and 21; reported, not asserted)",
            "",
            "| target | measured | |",
            "|---|---:|---|",
        ]
        lines += [f"| {name} | {val} | {verdict(ok)} |" for name, val, ok in targets]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="short runs (< ~60 s in all)")
    size.add_argument("--smoke", action="store_true", help="tiny runs: checks the bench works, not how fast")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--out", default=str(BENCH / "results.md"), help="where to write the markdown (default: %(default)s)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy record the ingress and one worker into DIR (collapsed stacks)",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        default=64,
        help="repositories (= agent sessions) the payloads are spread over (default: %(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, stub records)")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    for tool in ("redis-server", "wrk") if "ingress" in only else ("redis-server",):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (apt-get install -y {tool})")
    mode = "quick" if args.quick else "smoke" if args.smoke else "full"
    sizes = QUICK if args.quick else SMOKE if args.smoke else FULL
    started = time.monotonic()
    sessions = args.sessions
    bench = Bench(
        sizes, Path(args.profile).resolve() if args.profile else None, keep=args.keep, sessions=sessions
    )
    results: dict[str, Any] = {}
    log(f"{mode} run, scratch dir {bench.tmp}")
    try:
        bench.start_redis()
        log(f"{sessions} session(s) (repositories) in the generated payloads")
        for section in SECTIONS:
            if section in only:
                results[section] = getattr(bench, section)()
    except BaseException:
        bench.keep = True
        log(f"failed; logs kept in {bench.tmp}")
        raise
    finally:
        bench.cleanup()
        for name, secs in bench.stop_times:
            if secs > 2:
                log(f"slow stop: {name} took {secs:.1f}s after SIGTERM")
    results["stops"] = (bench.worker_stops, bench.slow_worker_stops)
    text = report(mode, results, started, profiled=args.profile is not None, sessions=sessions)
    print(text)
    Path(args.out).write_text(text + "\n")
    log(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
