"""What an event waits to be published, by the number of topic links (OUTCOME_PUBLISH_LINKS).

The local broker runs in its own process. `--concurrency` workers each loop: wait
`--batch-ms` (as a message waits for Batch), then publish one outcome event through one
ServiceBusPublisher, as the handler does. Publishers with 1, 2, ... links are measured
in interleaved rounds, each its own client and connections, all warmed first. Reported
per link count (median over rounds): the publish latency p50/p99 (publish() call to
return: the broker accepted the event), events per transfer, and this process's CPU per
event. This is the (a) - (b) latency of `bench/run.py`, without the Batch side's noise.

    python bench/publish_latency.py                         # 16 workers, links 1 2 3
    python bench/publish_latency.py --concurrency 16 64 --events 2000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.publish_profile import RESULT, start_broker  # noqa: E402
from bench.summary import percentile  # noqa: E402
from handlers.events import build_event  # noqa: E402
from handlers.publisher import ServiceBusPublisher  # noqa: E402

TOPIC = "job-outcomes"


async def one_round(
    publisher: ServiceBusPublisher, concurrency: int, events: int, batch_ms: float
) -> dict[str, float]:
    prefix = uuid.uuid4().hex[:8]  # unique ids: the topic drops duplicates
    latencies: list[float] = []
    per_worker = events // concurrency

    async def worker(w: int) -> None:
        for i in range(per_worker):
            await asyncio.sleep(batch_ms / 1000)
            event = build_event(RESULT, f"{prefix}-{w}-{i}")
            t0 = time.perf_counter()
            await publisher.publish([event])
            latencies.append(1000 * (time.perf_counter() - t0))

    transfers0, cpu0 = publisher.transfers, time.process_time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    cpu = time.process_time() - cpu0
    n = len(latencies)
    return {
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "events_per_transfer": n / max(1, publisher.transfers - transfers0),
        "cpu_ms_per_event": 1000 * cpu / n,
    }


async def amain(args: argparse.Namespace, connection_string: str) -> dict[str, Any]:
    publishers = {
        links: ServiceBusPublisher.from_connection_string(connection_string, TOPIC, links=links)
        for links in args.links
    }
    try:
        for publisher in publishers.values():
            await publisher.start_warming()
            await one_round(publisher, max(args.concurrency), max(args.concurrency) * 2, 0)  # warm
        results: dict[str, Any] = {}
        for concurrency in args.concurrency:
            samples: dict[int, list[dict[str, float]]] = {links: [] for links in publishers}
            order = list(publishers)
            for r in range(args.rounds):
                for links in order[r % len(order) :] + order[: r % len(order)]:  # rotate the order
                    samples[links].append(
                        await one_round(publishers[links], concurrency, args.events, args.batch_ms)
                    )
            results[str(concurrency)] = {
                str(links): {k: round(statistics.median(s[k] for s in runs), 3) for k in runs[0]}
                for links, runs in samples.items()
            }
        return results
    finally:
        for publisher in publishers.values():
            await publisher.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--links", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16])
    parser.add_argument("--events", type=int, default=1600, help="per round and link count")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-ms", type=float, default=20.0, help="each worker's wait before its publish")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    taken = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_at_start = os.getloadavg()
    broker, connection_string = start_broker()
    try:
        results = asyncio.run(amain(args, connection_string))
    finally:
        broker.terminate()
        broker.wait(10)
    for concurrency, by_links in results.items():
        for links, figures in by_links.items():
            print(
                f"c={concurrency} links={links}: publish p50 {figures['p50_ms']:.2f} ms, "
                f"p99 {figures['p99_ms']:.2f} ms; {figures['events_per_transfer']:.1f} events/transfer; "
                f"{figures['cpu_ms_per_event']:.3f} ms CPU/event"
            )
    if args.json:
        record = {
            "taken": taken,
            "loadavg_at_start": load_at_start,
            "loadavg_at_end": os.getloadavg(),
            "args": vars(args) | {"json": str(args.json)},
            "results": results,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
