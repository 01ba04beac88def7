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

    python bench/local_pipeline.py --split                  # broker, emulator in own processes

`--split` runs the broker (`python -m standins.servicebus`) in one child process and the
Batch emulator with the token endpoint (`python -m bench.pipeline_http`) in another; the
host loop and the function stay in this process. The groups are the same: the broker's
and the emulator's CPU is their process's (/proc/<pid>/stat), the host's this process's
main thread. Between runs the outcome subscriptions are emptied by a receive-and-delete
receiver (the broker is another process, so `_clear_subscriptions` cannot be called on
it); the events it took are reported as `outcome_events`.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode  # noqa: E402
from azure.servicebus.aio import ServiceBusClient  # noqa: E402

from localrun.common import CLIENT_ID, CONFIG, QUEUE, SIGNING_KEY, TOPIC  # noqa: E402
from standins.servicebus.config import load_config  # noqa: E402

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

    @property
    def connection_string(self) -> str:
        return self.broker.connection_string

    def cpu(self) -> dict[str, float]:
        return by_group(self, thread_cpu())

    def group_of(self, tid: int) -> str:
        if tid in self.broker_threads:
            return "broker"
        if tid in self.http_threads:
            return "emulator+token"
        if tid == threading.main_thread().native_id:
            return "host+function"
        return "other"  # e.g. threads the SDKs start later


def by_group(stack: Stack | SplitStack, cpu: dict[int, float]) -> dict[str, float]:
    groups: dict[str, float] = {}
    for tid, seconds in cpu.items():
        name = stack.group_of(tid)
        groups[name] = groups.get(name, 0.0) + seconds
    return groups


def process_cpu(pid: int) -> float:
    """CPU seconds (user+system) of process ``pid``, all its threads (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM it if the bench dies, even by SIGKILL.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _first_line(child: subprocess.Popen[str], what: str, timeout: float = 60.0) -> str:
    """The child's first stdout line, or an error naming it if it exits or stays silent."""
    out = child.stdout
    assert out is not None
    ready, _, _ = select.select([out], [], [], timeout)
    line = out.readline() if ready else ""
    if not line.strip():
        code = child.poll()
        raise RuntimeError(f"{what} printed nothing in {timeout:.0f} s (exit code {code})")
    return line.strip()


class SplitStack:
    """The broker in one child process (``python -m standins.servicebus``), the token
    endpoint and the Batch emulator in another (``python -m bench.pipeline_http``, seeded
    as Stack seeds them), with the same app settings as Stack. The host loop and the
    function run in this process. Children are stopped on exit, whatever the exit; if
    this process is killed outright they get SIGTERM from the kernel (PR_SET_PDEATHSIG)."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[str]] = []

    def _spawn(self, *args: str, stdin: int | IO[Any] | None) -> subprocess.Popen[str]:
        pythonpath = os.environ.get("PYTHONPATH")
        child = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), pythonpath]))},
            stdin=stdin,
            stdout=subprocess.PIPE,
            text=True,
            # Its own process group: a Ctrl-C reaches only the bench, which stops the children.
            process_group=0,
            preexec_fn=_die_with_parent,  # only a prctl call between fork and exec
        )
        self.children.append(child)
        return child

    def __enter__(self) -> SplitStack:
        try:
            self.broker = self._spawn(
                "-m", "standins.servicebus", "--port", "0", "--config", str(CONFIG), stdin=subprocess.DEVNULL
            )
            self.http = self._spawn("-m", "bench.pipeline_http", "--jobs", str(JOBS), stdin=subprocess.PIPE)
            self._connection_string = _first_line(self.broker, "python -m standins.servicebus")
            info = json.loads(_first_line(self.http, "python -m bench.pipeline_http"))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        os.environ.update(
            {
                **info["env"],
                "AZURE_CLIENT_ID": CLIENT_ID,
                "ServiceBusConnection": self._connection_string,
                "JOB_UPDATES_QUEUE": QUEUE,
                "JOB_UPDATES_MAX_DELIVERY_COUNT": "5",
                "OUTCOME_TOPIC": TOPIC,
                "BATCH_ALLOWED_ENDPOINTS": info["endpoint"],
                "BATCH_ALLOW_EMULATOR": "true",
                "BATCH_CA_BUNDLE": info["ca_path"],
            }
        )
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for child in self.children:
            if child.stdin is not None:
                child.stdin.close()  # bench.pipeline_http stops at EOF
            if child.poll() is None:
                child.terminate()  # both stop cleanly on SIGTERM
        for child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
        self.children.clear()

    @property
    def connection_string(self) -> str:
        return self._connection_string

    def cpu(self) -> dict[str, float]:
        groups = by_group(self, thread_cpu())
        groups["broker"] = process_cpu(self.broker.pid)
        groups["emulator+token"] = process_cpu(self.http.pid)
        return groups

    def group_of(self, tid: int) -> str:
        # This process's threads only; the children are counted whole in cpu().
        return "host+function" if tid == threading.main_thread().native_id else "other"

    async def clear(self) -> dict[str, int]:
        """Empty every outcome subscription with a receive-and-delete receiver, the
        broker being out of reach of ``_clear_subscriptions``; returns how many events
        each held. Session subscriptions are skipped: this bench never publishes there."""
        taken: dict[str, int] = {}
        config = load_config(CONFIG)
        async with ServiceBusClient.from_connection_string(self._connection_string) as client:
            for topic in config.topics:
                for sub in topic.subscriptions:
                    if sub.properties.requires_session:
                        continue
                    count = 0
                    async with client.get_subscription_receiver(
                        topic.name, sub.name, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
                    ) as receiver:
                        while batch := await receiver.receive_messages(500, max_wait_time=0.5):
                            count += len(batch)
                    taken[f"{topic.name}/{sub.name}"] = count
        return taken


async def drain(stack: Stack | SplitStack, messages: int, concurrency: int) -> Run:
    from handlers.runtime import reset_runtime
    from standins.functions_host import HostOptions, LocalFunctionsHost
    from tests.faults.stack import load_function_app

    function_app = load_function_app()  # a FunctionApp can be indexed once: a fresh one per run
    await fill(stack.connection_string, messages)
    options = HostOptions.from_host_json(ROOT / "host.json", max_concurrent_calls=concurrency)
    host = LocalFunctionsHost(function_app.app, stack.connection_string, options=options)
    cpu0 = stack.cpu()
    t0 = time.monotonic()
    task = asyncio.create_task(host.run())
    while host.completed < messages and not task.done():  # noqa: ASYNC110  (polls a counter)
        await asyncio.sleep(0.05)
    seconds = time.monotonic() - t0
    cpu1 = stack.cpu()
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


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.split:
        return await main_split(args)
    runs = []
    with Stack() as stack:
        for concurrency in args.concurrency:
            run = await drain(stack, args.messages, concurrency)
            print(json.dumps(asdict(run)), flush=True)
            runs.append(asdict(run))
            # The outcome events stay behind; clear them so runs start alike.
            stack.broker.call(_clear_subscriptions)
    return runs


async def main_split(args: argparse.Namespace) -> list[dict[str, Any]]:
    runs = []
    with SplitStack() as stack:
        for concurrency in args.concurrency:
            run = asdict(await drain(stack, args.messages, concurrency))
            # The outcome events stay behind; drain them so runs start alike (not timed).
            run["outcome_events"] = await stack.clear()
            print(json.dumps(run), flush=True)
            runs.append(run)
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
    parser.add_argument(
        "--split",
        action="store_true",
        help="broker, and Batch emulator + token endpoint, each in a child process",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    runs = asyncio.run(main_async(args))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
