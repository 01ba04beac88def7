"""The broker's per-operation cost and memory as its stored backlog grows, without sockets:
the entity state machine (standins/servicebus/entities.py) driven directly, CPU time from
time.process_time and memory from tracemalloc (so the figures are the broker's alone).

    python bench/broker_backlog.py --sizes 10000 100000 --json out.json

Per size N: CPU per topic send while the subscriptions fill to N (duplicate detection on,
as in Config.json), CPU per send once N are stored, one timer tick with N stored, CPU per
receive+complete on a queue holding N, and traced bytes per stored message.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from standins.servicebus.codec import AmqpMessage  # noqa: E402
from standins.servicebus.config import load_config  # noqa: E402
from standins.servicebus.entities import Namespace, Settle  # noqa: E402


def _message(i: int) -> AmqpMessage:
    return AmqpMessage(
        properties={"message_id": f"id-{i}"},
        application_properties={"outcome": "applied"},
        body=[b"\x00Su\xa0\x10" + b"x" * 16],
    )


def measure(n: int) -> dict[str, Any]:
    ns = Namespace(load_config(ROOT / "standins" / "servicebus" / "Config.json"))
    topic = ns.topics["job-outcomes"]
    queue, ingress = ns.queues["job-updates"]
    now = time.time()
    gc.collect()
    tracemalloc.start()
    t = time.process_time()
    for i in range(n):
        topic.ingress.send([_message(i)], now + i * 1e-4)
    fill_us = (time.process_time() - t) / n * 1e6
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    stored = sum(len(s.entity.messages) for s in topic.subscriptions.values())
    t = time.process_time()
    for i in range(n, n + 1000):
        topic.ingress.send([_message(i)], now + i * 1e-4)
    send_us = (time.process_time() - t) / 1000 * 1e6
    t = time.process_time()
    for _ in range(20):
        ns.tick(now + 1)
    tick_ms = (time.process_time() - t) / 20 * 1e3
    for i in range(n):
        ingress.send([_message(10**9 + i)], now + 1)
    t = time.process_time()
    for _ in range(1000):
        got = queue.acquire("receiver", now + 2)
        assert got is not None and got.lock_token is not None
        queue.settle(got.lock_token, Settle.COMPLETE, now + 2)
    settle_us = (time.process_time() - t) / 1000 * 1e6
    return {
        "stored": n,
        "sendWhileFillingUs": round(fill_us, 1),
        "sendAtBacklogUs": round(send_us, 1),
        "tickMs": round(tick_ms, 3),
        "receiveCompleteAtBacklogUs": round(settle_us, 1),
        "bytesPerStoredMessage": round(traced / stored),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = [measure(n) for n in args.sizes]
    for row in rows:
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
