"""The local pipeline's drain rate: msg/s through broker -> host loop -> function -> Batch
emulator -> outcome topic, as `python3 dev.py local` and the e2e tests run it (one process:
the stand-ins are threads, so they share one GIL with the host loop).

    python bench/local_pipeline.py                          # 2,000 messages at 16 and 64
    python bench/local_pipeline.py --messages 5000 --concurrency 16 --json out.json

The queue is filled first (not timed); then the host starts and the clock runs until the
host has settled every message. Reported per run: msg/s, and CPU seconds per thread group
(broker reactor thread, host/main thread, Batch emulator and token threads) from
/proc/self/task, as CPU% of the wall time. Outcome events stay on the subscriptions (the
drain is what is measured; bench/soak.py measures a growing backlog).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure.servicebus import ServiceBusMessage  # noqa: E402
from azure.servicebus.aio import ServiceBusClient  # noqa: E402

from localrun.common import CLIENT_ID, CONFIG, QUEUE, SIGNING_KEY, TOPIC  # noqa: E402

JOBS = 50
_TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[int, float]:
    """CPU seconds (user+system) of every thread of this process, by native id."""
    out: dict[int, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / _TICKS
    return out


def body(i: int) -> bytes:
    return json.dumps(
        {"schemaVersion": "1.0", "jobId": f"job-{i % JOBS}", "update": {"priority": i % 1000}}
    ).encode()


async def fill(connection_string: str, count: int, start: int = 0) -> None:
    """Send ``count`` messages in batches; ids are unique per call (the queue detects
    duplicates for five minutes)."""
    run = uuid.uuid4().hex[:8]
    async with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        client.get_queue_sender(QUEUE) as sender,
    ):
        batch = await sender.create_message_batch()
        for i in range(start, start + count):
            message = ServiceBusMessage(body(i), message_id=f"{run}-{i}", content_type="application/json")
            # At most 500 per transfer: a batch past about 1,500 small messages is refused by
            # the local broker with amqp:unknown-error (seen before this change too).
            if len(batch) >= 500:
                await sender.send_messages(batch)
                batch = await sender.create_message_batch()
            batch.add_message(message)
        if len(batch):
            await sender.send_messages(batch)


@dataclass
class Run:
    messages: int
    concurrency: int
    seconds: float
    msg_per_s: float
    cpu_percent: dict[str, float]
    cpu_ms_per_message: dict[str, float]
    failures: int
    settle_failures: int
    receiver_failures: int


class Stack:
    """Token endpoint, Batch emulator and broker as threads of this process, with the app
    settings function_app.py reads."""

    def __init__(self) -> None:
        from standins.batch import BatchEmulator
        from standins.identity import TokenEndpoint
        from standins.servicebus import LocalBroker

        self.tokens = TokenEndpoint(signing_key=SIGNING_KEY, client_id=CLIENT_ID)
        self.emu = BatchEmulator(token_signing_key=SIGNING_KEY)
        self.broker = LocalBroker(config=str(CONFIG), port=0)

    def __enter__(self) -> Stack:
        before = set(thread_cpu())
        self.tokens.__enter__()
        self.emu.__enter__()
        after_http = set(thread_cpu())
        self.broker.__enter__()
        self.http_threads = after_http - before
        self.broker_threads = set(thread_cpu()) - after_http
        for j in range(JOBS):
            self.emu.add_job({"id": f"job-{j}", "priority": 0})
        os.environ.update(
            {
                **self.tokens.env,
                "AZURE_CLIENT_ID": CLIENT_ID,
                "ServiceBusConnection": self.broker.connection_string,
                "JOB_UPDATES_QUEUE": QUEUE,
                "JOB_UPDATES_MAX_DELIVERY_COUNT": "5",
                "OUTCOME_TOPIC": TOPIC,
                "BATCH_ALLOWED_ENDPOINTS": self.emu.endpoint,
                "BATCH_ALLOW_EMULATOR": "true",
                "BATCH_CA_BUNDLE": self.emu.ca_path,
            }
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.broker.__exit__(None, None, None)
        self.emu.__exit__(None, None, None)
        self.tokens.__exit__(None, None, None)

    def group_of(self, tid: int) -> str:
        if tid in self.broker_threads:
            return "broker"
        if tid in self.http_threads:
            return "emulator+token"
        if tid == threading.main_thread().native_id:
            return "host+function"
        return "other"  # e.g. threads the SDKs start later


def by_group(stack: Stack, cpu: dict[int, float]) -> dict[str, float]:
    groups: dict[str, float] = {}
    for tid, seconds in cpu.items():
        name = stack.group_of(tid)
        groups[name] = groups.get(name, 0.0) + seconds
    return groups


async def drain(stack: Stack, messages: int, concurrency: int) -> Run:
    from handlers.runtime import reset_runtime
    from standins.functions_host import HostOptions, LocalFunctionsHost
    from tests.faults.stack import load_function_app

    function_app = load_function_app()  # a FunctionApp can be indexed once: a fresh one per run
    await fill(stack.broker.connection_string, messages)
    options = HostOptions.from_host_json(ROOT / "host.json", max_concurrent_calls=concurrency)
    host = LocalFunctionsHost(function_app.app, stack.broker.connection_string, options=options)
    cpu0 = by_group(stack, thread_cpu())
    t0 = time.monotonic()
    task = asyncio.create_task(host.run())
    while host.completed < messages and not task.done():  # noqa: ASYNC110  (polls a counter)
        await asyncio.sleep(0.05)
    seconds = time.monotonic() - t0
    cpu1 = by_group(stack, thread_cpu())
    host.stop()
    await task
    await reset_runtime()
    used = {k: cpu1.get(k, 0.0) - cpu0.get(k, 0.0) for k in cpu1}
    return Run(
        messages=messages,
        concurrency=concurrency,
        seconds=round(seconds, 3),
        msg_per_s=round(messages / seconds, 1),
        cpu_percent={k: round(100 * v / seconds, 1) for k, v in sorted(used.items())},
        cpu_ms_per_message={k: round(1000 * v / messages, 3) for k, v in sorted(used.items())},
        failures=host.failures,
        settle_failures=host.settle_failures,
        receiver_failures=host.receiver_failures,
    )


async def main_async(args: argparse.Namespace) -> list[Run]:
    runs = []
    with Stack() as stack:
        for concurrency in args.concurrency:
            run = await drain(stack, args.messages, concurrency)
            print(json.dumps(asdict(run)), flush=True)
            runs.append(run)
            # The outcome events stay behind; clear them so runs start alike.
            stack.broker.call(_clear_subscriptions)
    return runs


def _clear_subscriptions(ns: Any) -> None:
    for topic in ns.topics.values():
        for sub in topic.subscriptions.values():
            sub.entity.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--json", type=Path, help="write the runs here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    runs = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
