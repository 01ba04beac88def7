"""CPU of flow control's fast path (no throttling): BatchClient.send with and without it.

`send_once` is replaced by a stub that returns a 200 reply at once, so what is
measured is the retry loop itself, with and without the account gate (origin
lookup, one `start` and one `finish` transition, two monotonic reads). Rounds of
each variant are interleaved and the best is kept (the machine is shared).

    python bench/bench_flow.py [--requests 200000] [--rounds 7] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from handlers.batch_client import BatchClient, RetryPolicy  # noqa: E402
from handlers.flow_control import FlowControl  # noqa: E402
from handlers.wire import BatchReply, BatchRequest  # noqa: E402

REPLY = BatchReply(200, "0x8DD", "Thu, 01 Jan 2026 12:00:01 GMT", "rid")
REQUEST = BatchRequest("PATCH", "https://acct.westeurope.batch.azure.com/jobs/j?api-version=2025-06-01", {})


class StubClient(BatchClient):
    async def send_once(self, request: BatchRequest, *, attempt_timeout: float) -> BatchReply | str:
        await asyncio.sleep(0)  # a real send yields to the loop at least once
        return REPLY


async def per_request_us(client: BatchClient, n: int, concurrency: int) -> float:
    per_worker = n // concurrency

    async def worker() -> None:
        deadline = time.monotonic() + 3600
        for _ in range(per_worker):
            await client.send(REQUEST, deadline=deadline)

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - cpu) / (per_worker * concurrency) * 1e6


async def main(args: argparse.Namespace) -> dict[str, Any]:
    off = StubClient(None, RetryPolicy())  # type: ignore[arg-type]
    on = StubClient(None, RetryPolicy(), flow=FlowControl())  # type: ignore[arg-type]
    results: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(args.rounds):
        results["off"].append(await per_request_us(off, args.requests, args.concurrency))
        results["on"].append(await per_request_us(on, args.requests, args.concurrency))
    best = {k: min(v) for k, v in results.items()}
    return {
        "concurrency": args.concurrency,
        "requests": args.requests,
        "send_us_flow_off": round(best["off"], 2),
        "send_us_flow_on": round(best["on"], 2),
        "flow_overhead_us": round(best["on"] - best["off"], 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=16)
    print(asyncio.run(main(parser.parse_args())))
