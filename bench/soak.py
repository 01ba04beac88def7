"""Soak: N messages through the whole local pipeline with the outcome events left on the
subscriptions, so the broker's stored backlog grows to about N (all-outcomes) plus the
failures subscription's share. Reports, per window of completed messages, the broker
thread's CPU per message and the broker's memory per stored message, so a cost that grows
with the backlog shows as a rising column.

    python bench/soak.py --messages 100000 --json bench/results/soak-100k.json
    python bench/soak.py --messages 2000            # what the CI test runs (no timing checked)

The producer keeps the queue a few thousand messages ahead of the host. Memory per stored
message is the growth of this process's RSS since the start of the run over the messages the
broker stores (the broker is a thread here, as in `dev.py local`, so RSS also holds the host;
its share is flat, the host keeps nothing per message).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.local_pipeline import Stack, by_group, fill, thread_cpu  # noqa: E402


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def stored_counts(ns: Any) -> dict[str, int]:
    """Messages each entity stores (queue, subscriptions, dead-letter queues)."""
    out: dict[str, int] = {}
    for entity in ns.all_entities():
        out[entity.path] = len(entity.messages)
        if entity.dead_letter is not None and entity.dead_letter.messages:
            out[entity.dead_letter.path] = len(entity.dead_letter.messages)
    return out


async def soak(messages: int, concurrency: int, windows: int, ahead: int) -> dict[str, Any]:
    from handlers.runtime import reset_runtime
    from standins.functions_host import HostOptions, LocalFunctionsHost
    from tests.faults.stack import load_function_app

    rows: list[dict[str, Any]] = []
    with Stack() as stack:
        app = load_function_app()
        options = HostOptions.from_host_json(ROOT / "host.json", max_concurrent_calls=concurrency)
        host = LocalFunctionsHost(app.app, stack.broker.connection_string, options=options)
        sent = min(ahead, messages)
        await fill(stack.broker.connection_string, sent, 0)
        rss0 = rss_bytes()
        t0 = time.monotonic()
        task = asyncio.create_task(host.run())
        step = max(1, messages // windows)
        mark_at, last_cpu, last_t, last_done = step, by_group(stack, thread_cpu()), t0, 0
        last_rss, last_stored = rss_bytes(), 0

        def record() -> None:
            nonlocal last_cpu, last_t, last_done, last_rss, last_stored
            done, now = host.completed, time.monotonic()
            cpu = by_group(stack, thread_cpu())
            counts = stack.broker.call(stored_counts)
            stored = sum(counts.values())
            rss = rss_bytes()
            per = max(1, done - last_done)
            grown = stored - last_stored
            rows.append(
                {
                    "completed": done,
                    "stored": stored,
                    "storedBy": counts,
                    "msgPerS": round(per / (now - last_t), 1),
                    "brokerCpuMsPerMessage": round(1000 * (cpu["broker"] - last_cpu["broker"]) / per, 3),
                    "hostCpuMsPerMessage": round(
                        1000 * (cpu["host+function"] - last_cpu["host+function"]) / per, 3
                    ),
                    "rssMB": round(rss / 2**20, 1),
                    # Since the run started (includes the host's start-up) ...
                    "bytesPerStoredMessage": round((rss - rss0) / stored) if stored else None,
                    # ... and over this window only: what one more stored message costs.
                    "marginalBytesPerStoredMessage": round((rss - last_rss) / grown) if grown > 0 else None,
                }
            )
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "storedBy"}), flush=True)
            last_cpu, last_t, last_done, last_rss, last_stored = cpu, now, done, rss, stored

        while host.completed < messages and not task.done():
            if sent < messages and sent - host.completed < ahead // 2:
                batch = min(ahead // 2, messages - sent)
                await fill(stack.broker.connection_string, batch, sent)
                sent += batch
            if host.completed >= mark_at:
                record()
                mark_at = host.completed + step
            await asyncio.sleep(0.05)
        seconds = time.monotonic() - t0
        record()
        host.stop()
        await task
        await reset_runtime()
        counts = stack.broker.call(stored_counts)
    queue_left = counts.get("job-updates", 0)
    all_outcomes = counts.get("job-outcomes/Subscriptions/all-outcomes", 0)
    return {
        "messages": messages,
        "concurrency": concurrency,
        "seconds": round(seconds, 1),
        "completed": host.completed,
        "failures": host.failures,
        "settleFailures": host.settle_failures,
        "receiverFailures": host.receiver_failures,
        "leftOnQueue": queue_left,
        "eventsOnAllOutcomes": all_outcomes,
        "storedAtEnd": counts,
        "windows": rows,
        "note": "CPU from /proc/self/task per thread group; memory = RSS growth / stored messages; "
        "a shared 2-core machine with other work running, so rates are noisy, the trend is the figure",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--windows", type=int, default=10, help="report this many windows")
    parser.add_argument("--ahead", type=int, default=4000, help="keep the queue this far ahead")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(soak(args.messages, args.concurrency, args.windows, args.ahead))
    print(json.dumps({k: v for k, v in result.items() if k != "windows"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    ok = result["completed"] == args.messages and result["leftOnQueue"] == 0
    ok = ok and result["eventsOnAllOutcomes"] == args.messages
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
