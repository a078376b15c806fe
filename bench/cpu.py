"""CPU per request, in process: the relay's Starlette app against the bare and verify baselines.

    python bench/cpu.py [--n 2000] [--only push1,push7,single,alerts20] [--profile DIR] [--json]

Wall-clock rates need a quiet machine; CPU time is far less sensitive to what else runs. This
calls each ASGI app (bench/bare_app.py's `bare` and `verify`, and `relay.ingress.app.create_app` on a
generated config with a `github` and an `alertmanager` source) directly, with 32 requests in
flight on one event loop (as wrk -c32 keeps them), and divides the process's CPU time
(`time.process_time`) by the requests. HTTP parsing (uvicorn, httptools) is left out: it is the
same for all three servers, so the differences are the relay's own work. The relay writes to a
private `redis-server` (free loopback port, AOF everysec as `relay up` runs it); its CPU per
event is read from /proc (utime+stime) and from INFO commandstats (the time inside commands).

`--profile DIR` writes a cProfile of the relay's run per workload (DIR/<workload>.pstats) and
prints the top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import redis  # noqa: E402
from bare_app import create_app as bare_app  # noqa: E402
from workloads import ALERTMANAGER_TOKEN, GITHUB_SECRET, Workload, workloads  # noqa: E402

CONCURRENCY = 32
TARGETS = ("bare", "verify", "relay")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def command_calls(r: redis.Redis) -> int:
    """Commands Redis ran, a script's inner calls included: deterministic, unlike CPU time."""
    return sum(int(v["calls"]) for v in r.info("commandstats").values())


def command_usec(r: redis.Redis) -> int:
    """Microseconds Redis spent inside commands called by clients (a script's inner calls are part
    of its EVALSHA's time; Redis 7 also lists them on their own, so those are not added twice)."""
    stats = r.info("commandstats")
    return sum(int(v["usec"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval")) or sum(
        int(v["usec"]) for v in stats.values()
    )


class Driver:
    """Sends requests straight into an ASGI app: no sockets, no HTTP parsing."""

    def __init__(self, app: Any, workload: Workload, prefix: str) -> None:
        self.app, self.w, self.prefix = app, workload, prefix
        self.statuses: dict[int, int] = {}

    async def one(self, i: int) -> None:
        credential, _ = self.w.variants[i % len(self.w.variants)]
        body = self.w.body(i, hash((self.prefix, i)) & 0xFFFFFFFFFFFF)
        headers = [(k.encode(), v.encode()) for k, v in self.w.headers(credential, f"{self.prefix}-{i}")]
        headers.append((b"content-length", str(len(body)).encode()))
        path = f"/hooks/{self.w.source}"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 40000 + i % 1000),
            "server": ("127.0.0.1", 8080),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] = self.statuses.get(message["status"], 0) + 1

        await self.app(scope, receive, send)

    async def run(self, n: int, start: int = 0) -> None:
        async def lane(k: int) -> None:
            for i in range(start + k, start + n, CONCURRENCY):
                await self.one(i)

        await asyncio.gather(*(lane(k) for k in range(CONCURRENCY)))


def relay_config(tmp: Path, redis_port: int) -> Path:
    cfg = tmp / "relay.yaml"
    cfg.write_text(
        json.dumps(
            {  # JSON is YAML
                "redis_url": f"redis://127.0.0.1:{redis_port}/0",
                "gateway": {"url": "http://127.0.0.1:9", "token": "bench-hooks-token"},
                "delivery": {"in_flight": 32},
                "sources": {
                    "github": {"preset": "github", "secret": GITHUB_SECRET},
                    "alertmanager": {"preset": "alertmanager", "token": ALERTMANAGER_TOKEN},
                },
            }
        )
    )
    return cfg


async def measure(
    app: Any,
    workload: Workload,
    n: int,
    tag: str,
    profile: cProfile.Profile | None,
    r: redis.Redis | None,
    redis_pid: int | None,
) -> dict[str, Any]:
    warm = Driver(app, workload, f"warm-{tag}")
    await warm.run(min(n, 300))
    drv = Driver(app, workload, f"run-{tag}")
    u0 = command_usec(r) if r is not None else 0
    n0 = command_calls(r) if r is not None else 0
    rc0 = proc_cpu(redis_pid) if redis_pid else 0.0
    t0, w0 = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    await drv.run(n)
    if profile is not None:
        profile.disable()
    t1, w1 = time.process_time(), time.perf_counter()
    res = {"n": n, "cpu_us": (t1 - t0) / n * 1e6, "wall_s": w1 - w0, "statuses": drv.statuses}
    if r is not None and redis_pid:
        # The AOF is written by the main thread on the next event-loop turn; let it catch up.
        time.sleep(0.3)
        res["redis_cmd_us"] = (command_usec(r) - u0) / n
        res["redis_commands"] = (command_calls(r) - n0 - 2) / n  # less the two INFO calls
        res["redis_cpu_us"] = (proc_cpu(redis_pid) - rc0) / n * 1e6
    return res


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="measured requests per workload and server")
    parser.add_argument("--only", default="push1,push7,single,alerts20")
    parser.add_argument("--rounds", type=int, default=1, help="repeat and keep each server's lowest CPU")
    parser.add_argument("--profile", metavar="DIR")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        parser.error("redis-server is not installed")
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = asyncio.new_event_loop
    tmp = Path(tempfile.mkdtemp(prefix="relay-cpu-"))
    port = free_port()
    (tmp / "redis").mkdir()
    rproc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp / "redis"),
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
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    r = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                r.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        os.environ["RELAY_CONFIG"] = str(relay_config(tmp, port))
        os.environ.setdefault("RELAY_LOG_LEVEL", "INFO")
        import logging

        from relay.config import load_settings
        from relay.ingress.app import create_app
        from relay.logs import setup_logging

        settings = load_settings()
        setup_logging(
            os.environ["RELAY_LOG_LEVEL"].upper(), json=True
        )  # as `relay serve` logs when its stderr is not a terminal
        # The relay logs each event at INFO or DEBUG; `relay serve` writes to stderr, here to a file.
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (
                sys.stderr,
                sys.stdout,
            ):
                h.setStream(open(tmp / "relay.log", "a"))  # noqa: SIM115
        results: dict[str, dict[str, Any]] = {}
        profile_dir = Path(args.profile) if args.profile else None
        wls = workloads()
        for name in [s.strip() for s in args.only.split(",") if s.strip()]:
            w = wls[name]
            results[name] = {}
            for rnd in range(args.rounds):
                for target in TARGETS:
                    r.flushall()
                    r.config_resetstat()
                    if target == "relay":
                        app = create_app(settings)
                    else:
                        app = bare_app(target, GITHUB_SECRET.encode(), ALERTMANAGER_TOKEN.encode())
                    profiling = profile_dir and target == "relay" and rnd == 0
                    prof = cProfile.Profile(time.process_time) if profiling else None  # CPU, not wall time
                    loop = loop_factory()
                    try:
                        res = loop.run_until_complete(
                            measure(
                                app,
                                w,
                                args.n,
                                f"{name}-{target}-{rnd}",
                                prof,
                                r if target == "relay" else None,
                                rproc.pid if target == "relay" else None,
                            )
                        )
                        if target == "relay":
                            res["stored"] = r.zcard("relay:events")
                    finally:
                        loop.close()
                    ok = sum(v for k, v in res["statuses"].items() if 200 <= k < 300)
                    if ok != args.n:
                        raise RuntimeError(f"{name} {target}: statuses {res['statuses']} (logs in {tmp})")
                    best = results[name].get(target)
                    if best is None or res["cpu_us"] < best["cpu_us"]:
                        results[name][target] = res
                    if prof is not None:
                        profile_dir.mkdir(parents=True, exist_ok=True)
                        prof.dump_stats(profile_dir / f"{name}.pstats")
                    print(
                        f"[cpu] {name} {target}: {res['cpu_us']:.0f} µs CPU/request"
                        + (
                            f", redis {res['redis_cpu_us']:.0f} µs CPU/event,"
                            f" {res['redis_commands']:.1f} commands/event"
                            if "redis_cpu_us" in res
                            else ""
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
        if args.json:
            print(json.dumps({"n": args.n, "concurrency": CONCURRENCY, "results": results}))
        else:
            print(table(results, args.n))
        if profile_dir:
            for name in results:
                path = profile_dir / f"{name}.pstats"
                if path.exists():
                    print(f"\n### cProfile, relay, {name}: top 25 by own time ({path})\n")
                    pstats.Stats(str(path), stream=sys.stdout).sort_stats("tottime").print_stats(25)
    finally:
        rproc.terminate()
        rproc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def table(results: dict[str, dict[str, Any]], n: int) -> str:
    wls = workloads()
    lines = [
        f"In-process CPU per request ({n} requests per server, {CONCURRENCY} in flight, ASGI app called "
        "directly: no HTTP parsing)",
        "",
        "| workload | bare µs | verify µs | relay µs | relay − verify µs "
        "| (relay − verify) ÷ (verify − bare) | "
        "redis CPU µs/event | redis commands/event |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, res in results.items():
        b, v, rl = (res[t]["cpu_us"] for t in TARGETS)
        lines.append(
            f"| {wls[name].label} | {b:.0f} | {v:.0f} | {rl:.0f} | {rl - v:.0f} | "
            f"{(rl - v) / max(1e-9, v - b):.1f}× | {res['relay']['redis_cpu_us']:.0f} | "
            f"{res['relay']['redis_commands']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
