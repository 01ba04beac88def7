"""Instructions and CPU per outcome event on the publish path, by batch size.

The local broker runs in its own process; only this process is measured. Each
round builds `--batch` events (build_event) and publishes them with one
ServiceBusPublisher.publish call, which is exactly one coalesced transfer of that
size (what concurrent callers produce under load). Modes:

- default: process CPU per event (time.process_time; noisy on shared machines);
- `--sampler`: a CPU-time sampler (ITIMER_PROF, so waiting on the socket is not
  counted) printing the top inclusive Python functions;
- `--callgrind`: re-runs itself under `valgrind --tool=callgrind`, counting only
  the measured region (run through `functools.reduce`, toggled on it), and prints
  instructions per event: repeatable within a fraction of a percent.

    python bench/publish_profile.py --callgrind --batch 1 16 64 [--events 640]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from handlers.events import build_event  # noqa: E402
from handlers.outcomes import Outcome, Result  # noqa: E402
from handlers.publisher import ServiceBusPublisher  # noqa: E402

RESULT = Result(
    Outcome.applied,
    job_id="bench-1",
    endpoint="https://acct.westeurope.batch.azure.com",
    mode="replace",
    http_status=200,
    request_id="0f0e0d0c-0b0a-0908-0706-050403020100",
    client_request_id="9c4d50ee-2d56-4cd3-8152-34347dc9f2b0",
    etag="0x8DCB0A1B2C3D4E5",
    last_modified="Tue, 01 Dec 2026 12:00:00 GMT",
    attempts=1,
)


def start_broker() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "standins.servicebus", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


class Sampler:
    """Inclusive CPU-time samples per Python function (file:line name)."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.samples = 0
        self.inclusive: collections.Counter[str] = collections.Counter()

    def _on_signal(self, _signum: int, frame: FrameType | None) -> None:
        self.samples += 1
        seen: set[str] = set()
        while frame is not None:
            code = frame.f_code
            key = f"{Path(code.co_filename).name}:{code.co_firstlineno} {code.co_qualname}"
            if key not in seen:  # recursion counts once
                seen.add(key)
                self.inclusive[key] += 1
            frame = frame.f_back

    def __enter__(self) -> Sampler:
        signal.signal(signal.SIGPROF, self._on_signal)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)
        return self

    def __exit__(self, *_: object) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)

    def report(self, top: int) -> list[tuple[str, float]]:
        return [(k, 100 * v / max(1, self.samples)) for k, v in self.inclusive.most_common(top)]


async def rounds(publisher: ServiceBusPublisher, batch: int, events: int, prefix: str) -> None:
    for r in range(events // batch):
        # Unique ids: the topic's duplicate detection would drop repeats.
        await publisher.publish([build_event(RESULT, f"{prefix}-{r}-{i}") for i in range(batch)])


def child(args: argparse.Namespace) -> dict[str, Any]:
    broker, connection_string = start_broker()
    try:
        loop = asyncio.new_event_loop()
        publisher = ServiceBusPublisher.from_connection_string(connection_string, "job-outcomes")
        out: dict[str, Any] = {}
        for batch in args.batch:
            loop.run_until_complete(rounds(publisher, batch, 4 * batch, f"warm-{batch}"))

            def region(_: object, __: object, batch: int = batch) -> None:
                loop.run_until_complete(rounds(publisher, batch, args.events, f"run-{batch}"))

            cpu0 = time.process_time()
            if args.sampler:
                with Sampler() as sampler:
                    region(None, None)
                out[str(batch)] = sampler.report(args.top)
            else:
                # Through functools.reduce: the one C call callgrind counts inside
                # (--toggle-collect=functools_reduce); nothing in the path calls it.
                functools.reduce(region, [None], None)
                out[str(batch)] = (time.process_time() - cpu0) / args.events * 1000
        loop.run_until_complete(publisher.aclose())
        loop.close()
        return out
    finally:
        broker.terminate()
        broker.wait(timeout=10)


def callgrind(args: argparse.Namespace) -> dict[str, float]:
    """One valgrind run per batch size: instructions in the region / events."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed")
    out: dict[str, float] = {}
    for batch in args.batch:
        with tempfile.TemporaryDirectory() as tmp:
            dump = os.path.join(tmp, "callgrind.out")
            subprocess.run(
                [
                    valgrind,
                    "--tool=callgrind",
                    "--collect-atstart=no",
                    "--toggle-collect=functools_reduce",
                    f"--callgrind-out-file={dump}",
                    sys.executable,
                    __file__,
                    "--child",
                    "--events",
                    str(args.events),
                    "--batch",
                    str(batch),
                ],
                check=True,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if args.keep:
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                Path(args.keep, f"callgrind.batch{batch}.out").write_bytes(Path(dump).read_bytes())
            totals = re.search(r"^(?:totals|summary): (\d+)", Path(dump).read_text(), re.M)
            assert totals is not None
            out[str(batch)] = int(totals.group(1)) / args.events
        print(json.dumps({"batch": batch, "instructions_per_event": round(out[str(batch)])}), flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--events", type=int, default=640, help="per batch size (a multiple of each)")
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--keep", help="keep the callgrind dumps in this directory")
    parser.add_argument("--sampler", action="store_true")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callgrind:
        callgrind(args)
        return 0
    result = child(args)
    if args.sampler:
        for batch, rows in result.items():
            print(f"batch {batch}: inclusive CPU-time share")
            for name, share in rows:
                print(f"  {share:5.1f} %  {name}")
    elif not args.child:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
