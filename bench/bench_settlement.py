"""What explicit settlement (JOB_UPDATES_SETTLEMENT=actions) costs the function, per
message and per cold start. Process CPU time (time.process_time) and instruction-free
wall time on a shared machine: read the CPU figures, treat the wall figures as noisy.

- `settle`: one `ActionsSettlement.settle(complete)` as the function makes it: the
  extension's synchronous gRPC call (`ServiceBusMessageActions.complete`) in a worker
  thread (asyncio.to_thread), to the local host's Settlement server on the same loop,
  whose broker call is a no-op here, so only the gRPC hop and the thread hand-off count
  (the broker round trip itself is the same in both modes: the host completes either way);
- `settle_inline`: the same call made on the event loop thread against a server in
  another thread: what blocking the loop would cost per call (the loop does nothing else
  meanwhile); the function never does this;
- `import`: `import function_app` in a fresh interpreter, host vs actions mode
  (CPU seconds, median of --imports runs): the extension, uamqp, grpc and protobuf.

    PYTHONPATH=. python bench/bench_settlement.py [--calls 500] [--imports 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from handlers.plan import Settle
from handlers.settlement import ActionsSettlement
from standins.functions_host.settlement import SettlementServer, settlement_client

ROOT = Path(__file__).resolve().parents[1]


class _NoBroker:
    """A receiver whose settle calls return at once: only the gRPC path is measured."""

    async def complete_message(self, message: Any) -> None:
        return None

    abandon_message = dead_letter_message = complete_message


class _Message:
    def __init__(self) -> None:
        self.lock_token = str(uuid.uuid4())
        self.message_id = self.lock_token


async def _settle_calls(calls: int) -> dict[str, float]:
    server = SettlementServer()
    await server.start()
    actions = settlement_client()
    try:
        for _ in range(20):  # channel connect and first-call costs out of the way
            message = _Message()
            server.hold(_NoBroker(), message, lambda: True)  # type: ignore[arg-type]
            await ActionsSettlement(actions, message).settle(Settle.complete)
        wall: list[float] = []
        cpu0 = time.process_time()
        for _ in range(calls):
            message = _Message()
            server.hold(_NoBroker(), message, lambda: True)  # type: ignore[arg-type]
            started = time.perf_counter()
            await ActionsSettlement(actions, message).settle(Settle.complete)
            wall.append(time.perf_counter() - started)
        cpu = (time.process_time() - cpu0) / calls
    finally:
        await server.stop()
    return {"cpu_ms": cpu * 1000, "wall_ms_median": statistics.median(wall) * 1000}


def _inline_calls(calls: int) -> dict[str, float]:
    """The server on its own loop in a thread; the calls made on this (the caller's) thread."""
    loop = asyncio.new_event_loop()
    server = SettlementServer()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait()
    actions = settlement_client()
    wall: list[float] = []
    for i in range(calls + 20):
        message = _Message()
        loop.call_soon_threadsafe(server.hold, _NoBroker(), message, lambda: True)
        time.sleep(0)  # let the hold land before the call
        while str(message.lock_token) not in server._held:
            time.sleep(0.0001)
        started = time.perf_counter()
        actions.complete(message)
        if i >= 20:
            wall.append(time.perf_counter() - started)
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    return {"loop_blocked_ms_median": statistics.median(wall) * 1000}


def _import_cpu(mode: str, runs: int) -> float:
    code = "import time; t = time.process_time(); import function_app; print(time.process_time() - t)"
    env = {**os.environ, "JOB_UPDATES_SETTLEMENT": mode, "PYTHONPATH": str(ROOT)}
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
        )
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--imports", type=int, default=7)
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"calls": args.calls}
    result["settle"] = asyncio.run(_settle_calls(args.calls))
    result["settle_inline"] = _inline_calls(args.calls)
    host, actions = _import_cpu("host", args.imports), _import_cpu("actions", args.imports)
    result["import_cpu_s"] = {"host": host, "actions": actions, "added": actions - host}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
