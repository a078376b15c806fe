"""A small HTTP/1.1 load client on raw asyncio streams (no httpx/aiohttp: both cost more CPU per
request than the servers measured here), run in its own process by bench/run.py.

    open   --rate R --duration D   open loop: request i is due at start + i/R whatever happened
                                   before; its latency is measured from that due time, so a slow
                                   server cannot hide queueing (no coordinated omission).
    blast  --count N               closed loop, as fast as possible: N requests over --conns
                                   keep-alive connections.

Request i is body i mod N of the --variants list file ("<signature>\t<body file>" per line,
written by bench/run.py: the GitHub push fixture for N repositories, with their HMAC signatures)
and X-GitHub-Delivery = <prefix>-<i>. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class Client:
    def __init__(
        self, host: str, port: int, path: str, variants: list[tuple[str, bytes]], prefix: str
    ) -> None:
        self.host, self.port = host, port
        self.variants = [
            (
                (
                    f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                    f"X-GitHub-Event: push\r\nX-Hub-Signature-256: {signature}\r\n"
                    f"Content-Length: {len(body)}\r\nX-GitHub-Delivery: {prefix}-"
                ).encode(),
                body,
            )
            for signature, body in variants
        ]
        self.statuses: dict[int, int] = {}
        self.errors = 0

    def request(self, i: int) -> bytes:
        head, body = self.variants[i % len(self.variants)]
        return head + str(i).encode() + b"\r\n\r\n" + body

    async def exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> int:
        writer.write(self.request(i))
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await reader.readexactly(length)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        return status


class Connection:
    """One keep-alive connection of the load generator; a failed exchange counts as an error and
    reconnects."""

    def __init__(self, client: Client, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.client, self.reader, self.writer = client, reader, writer

    @classmethod
    async def open(cls, client: Client) -> Connection:
        return cls(client, *await asyncio.open_connection(client.host, client.port))

    async def exchange(self, i: int) -> bool:
        """Send request `i` and read its answer; False (and a fresh connection) when it failed."""
        try:
            await self.client.exchange(self.reader, self.writer, i)
            return True
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.client.errors += 1
            self.writer.close()
            self.reader, self.writer = await asyncio.open_connection(self.client.host, self.client.port)
            return False

    def close(self) -> None:
        self.writer.close()


async def run_open(client: Client, rate: float, duration: float, conns: int) -> dict:
    loop = asyncio.get_running_loop()
    total = int(rate * duration)
    queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    start = loop.time() + 0.2

    async def producer() -> None:
        i = 0
        while i < total:
            now = loop.time()
            while i < total and start + i / rate <= now:
                queue.put_nowait((start + i / rate, i))
                i += 1
            if i < total:
                await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
        for _ in range(conns):
            queue.put_nowait(None)

    async def connection() -> None:
        conn = await Connection.open(client)
        while (item := await queue.get()) is not None:
            due, i = item
            if await conn.exchange(i):
                latencies.append(loop.time() - due)
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(producer(), *(connection() for _ in range(conns)))
    elapsed = time.perf_counter() - t0
    return {
        "mode": "open",
        "offered_rate": rate,
        "sent": total,
        "completed": len(latencies),
        "achieved_rate": len(latencies) / max(elapsed - 0.2, 1e-9),
        "errors": client.errors,
        "statuses": client.statuses,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=0) * 1000,
    }


async def run_blast(client: Client, count: int, conns: int) -> dict:
    loop = asyncio.get_running_loop()
    counter = iter(range(count))
    latencies: list[float] = []

    async def connection() -> None:
        conn = await Connection.open(client)
        for i in counter:
            t = loop.time()
            if await conn.exchange(i):
                latencies.append(loop.time() - t)
        conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(conns)))
    elapsed = time.perf_counter() - t0
    return {
        "mode": "blast",
        "sent": count,
        "completed": len(latencies),
        "elapsed_s": elapsed,
        "rate": len(latencies) / elapsed,
        "errors": client.errors,
        "statuses": client.statuses,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["open", "blast"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--path", default="/hooks/github")
    parser.add_argument("--variants", required=True, help="list file: <signature>\\t<body file> per line")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--conns", type=int, default=32)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    variants = []
    with open(args.variants) as fh:
        for line in fh:
            signature, path = line.rstrip("\n").split("\t", 1)
            with open(path, "rb") as body:
                variants.append((signature, body.read()))
    client = Client(args.host, args.port, args.path, variants, args.prefix)
    if args.mode == "open":
        result = asyncio.run(run_open(client, args.rate, args.duration, args.conns))
    else:
        result = asyncio.run(run_blast(client, args.count, args.conns))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
