"""The delivery baseline: the least a consumer can do per action, as the limit for `relay worker`.

    python bench/asyncio_consumer.py --redis-url URL --list KEY --gateway URL --token T --in-flight 32

`--in-flight` tasks share one `httpx.AsyncClient` (the client the relay uses, in its async form)
and one `redis.asyncio` client; each task loops: RPOP one action {"id", "kind", "body"} from the
list, POST its body to <gateway>/hooks/<kind> with Authorization and Idempotency-Key, until the
list is empty. No retries, no per-action state, no acknowledgement: an upper bound, not a design.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx
import orjson
import redis.asyncio as aioredis


async def run(args: argparse.Namespace) -> dict:
    r = aioredis.Redis.from_url(args.redis_url)
    limits = httpx.Limits(max_connections=args.in_flight, max_keepalive_connections=args.in_flight)
    statuses: dict[int, int] = {}
    errors = 0
    done = 0
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0), limits=limits) as http:
        auth = f"Bearer {args.token}"

        async def task() -> None:
            nonlocal errors, done
            while (raw := await r.rpop(args.list)) is not None:
                item = orjson.loads(raw)
                try:
                    resp = await http.post(
                        f"{args.gateway}/hooks/{item['kind']}",
                        content=orjson.dumps(item["body"]),
                        headers={
                            "Content-Type": "application/json",
                            "Authorization": auth,
                            "Idempotency-Key": item["id"],
                        },
                    )
                    statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
                    done += 1
                except httpx.HTTPError:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(task() for _ in range(args.in_flight)))
        elapsed = time.perf_counter() - t0
    await r.aclose()
    return {"delivered": done, "errors": errors, "statuses": statuses, "elapsed_s": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--list", required=True)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
