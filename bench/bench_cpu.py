"""CPU per message: the function's pipeline against a bare aiohttp PATCH.

The Batch emulator and the token endpoint run in their own processes, so only
the client's CPU is counted (time.process_time of this process). For each
concurrency level it measures:

- `aiohttp`: a bare aiohttp ClientSession PATCH with the same headers and body
  (the floor; ../shared/reference/performance-calibration.md);
- `httpx_client`: the same PATCH through the pipeline's own httpx client
  (transport, auth, cookie-less), no handler around it;
- `pipeline`: JobUpdateHandler.handle() on a raw message body: parse and
  validate, resolve the endpoint, build the request, send it through httpx over
  aiohttp with the cached token and retry policy, classify, build the CloudEvent.
  Events go to a publisher that drops them (Service Bus cost is measured apart);
- `publish` (with --with-broker): ServiceBusPublisher to the local broker (its own
  process), per event; concurrent publishes are coalesced into batches.

    python bench/bench_cpu.py [--requests 2000] [--concurrency 1 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from handlers.events import OutcomeEvent  # noqa: E402
from handlers.handler import Inbound  # noqa: E402
from handlers.runtime import Runtime  # noqa: E402
from handlers.settings import Settings  # noqa: E402
from handlers.wire_formats import format_http_date  # noqa: E402

KEY = "bench-token-signing-key-00000001"
CLIENT_ID = "44444444-4444-4444-4444-444444444444"


class DroppingPublisher:
    async def publish(self, events: Sequence[OutcomeEvent]) -> None:
        return None

    async def aclose(self) -> None:
        return None


def start(*argv: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    info: dict[str, Any] = json.loads(line) if line.startswith("{") else {"connection_string": line.strip()}
    return proc, info


async def bench_publish(args: argparse.Namespace) -> list[dict[str, Any]]:
    """CPU per outcome event through ServiceBusPublisher to the local broker (own process)."""
    from handlers.events import build_event
    from handlers.outcomes import Outcome, Result
    from handlers.publisher import ServiceBusPublisher

    broker, info = start("-m", "standins.servicebus", "--port", "0")
    rows = []
    try:
        publisher = ServiceBusPublisher.from_connection_string(info["connection_string"], "job-outcomes")
        result = Result(Outcome.applied, job_id="bench-1", endpoint="https://localhost:1", http_status=200)
        counter = iter(range(10**9))

        async def one(_: int) -> None:
            # Unique ids: the topic's duplicate detection would drop repeats.
            await publisher.publish([build_event(result, f"bench-{next(counter)}")])

        for concurrency in args.concurrency:
            runs = [await measure(args.requests, concurrency, one) for _ in range(args.rounds)]
            row = {
                "concurrency": concurrency,
                "publish_cpu_ms": round(statistics.median(r[0] for r in runs), 3),
                "publish_rps": round(statistics.median(r[1] for r in runs)),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        await publisher.aclose()
    finally:
        broker.terminate()
        broker.wait(timeout=10)
    return rows


async def measure(n: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
    """(CPU ms per call, calls per second) over n calls at the given concurrency."""
    await asyncio.gather(*(one(i) for i in range(concurrency)))  # warm: connections, token, code paths
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            await one(i)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return cpu / n * 1000, n / wall


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    seed = Path(tempfile.mkdtemp()) / "jobs.json"
    seed.write_text(json.dumps([{"id": f"bench-{i}"} for i in range(16)]))
    batch, emu = start("-m", "standins.batch", "--seed", str(seed), "--token-signing-key", KEY)
    ident, env = start("-m", "standins.identity", "--signing-key", KEY)
    os.environ.update(env)
    results: dict[str, Any] = {"python": sys.version.split()[0], "requests": args.requests, "rows": []}
    try:
        settings = Settings(
            BATCH_ALLOWED_ENDPOINTS=emu["endpoint"],
            BATCH_ALLOW_EMULATOR=True,
            BATCH_CA_BUNDLE=emu["ca_path"],
            AZURE_CLIENT_ID=CLIENT_ID,
            ServiceBusConnection__fullyQualifiedNamespace="unused.servicebus.windows.net",
        )
        runtime = Runtime.from_settings(settings, publisher=DroppingPublisher())
        token = await runtime.handler.batch._http.auth._tokens.token()  # type: ignore[union-attr]
        ctx = ssl.create_default_context(cafile=emu["ca_path"])
        body = json.dumps({"priority": 5}).encode()
        now = format_http_date(datetime.now(UTC))  # within Batch's 15-minute skew for the run
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=100)) as session:

            async def bare(i: int) -> None:
                async with session.patch(
                    f"{emu['endpoint']}/jobs/bench-{i % 16}?api-version=2025-06-01",
                    data=body,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json; odata=minimalmetadata",
                        "client-request-id": "9c4d50ee-2d56-4cd3-8152-34347dc9f2b0",
                        "ocp-date": now,
                    },
                ) as response:
                    await response.read()
                    assert response.status == 200, response.status

            http = runtime.handler.batch._http  # the pipeline's own httpx client, auth and transport

            async def httpx_only(i: int) -> None:
                response = await http.patch(
                    f"{emu['endpoint']}/jobs/bench-{i % 16}?api-version=2025-06-01",
                    content=body,
                    headers={
                        "Content-Type": "application/json; odata=minimalmetadata",
                        "client-request-id": "9c4d50ee-2d56-4cd3-8152-34347dc9f2b0",
                        "ocp-date": now,
                    },
                )
                assert response.status_code == 200, response.status_code

            messages = [
                json.dumps(
                    {"schemaVersion": "1.0", "jobId": f"bench-{i % 16}", "update": {"priority": 5}}
                ).encode()
                for i in range(16)
            ]

            async def pipeline(i: int) -> None:
                result = await runtime.handler.handle(Inbound(messages[i % 16], f"m-{i}"))
                assert result.outcome.value == "applied", result

            for concurrency in args.concurrency:
                # Interleaved rounds, median of each: the server shares this machine's
                # two cores, so single runs swing by 20-30 %.
                floors, clients, ours = [], [], []
                for _ in range(args.rounds):
                    floors.append(await measure(args.requests, concurrency, bare))
                    clients.append(await measure(args.requests, concurrency, httpx_only))
                    ours.append(await measure(args.requests, concurrency, pipeline))
                floor_cpu, floor_rps = (
                    statistics.median(f[0] for f in floors),
                    statistics.median(f[1] for f in floors),
                )
                ours_cpu, ours_rps = (
                    statistics.median(o[0] for o in ours),
                    statistics.median(o[1] for o in ours),
                )
                row = {
                    "concurrency": concurrency,
                    "aiohttp_cpu_ms": round(floor_cpu, 3),
                    "aiohttp_rps": round(floor_rps),
                    "httpx_client_cpu_ms": round(statistics.median(c[0] for c in clients), 3),
                    "pipeline_cpu_ms": round(ours_cpu, 3),
                    "pipeline_rps": round(ours_rps),
                    "ratio": round(ours_cpu / floor_cpu, 2),
                }
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
        await runtime.aclose()
    finally:
        for proc in (batch, ident):
            proc.terminate()
            proc.wait(timeout=10)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument(
        "--with-broker", action="store_true", help="also measure publishing to the local broker"
    )
    args = parser.parse_args()
    results = asyncio.run(bench(args))
    if args.with_broker:
        results["publish"] = asyncio.run(bench_publish(args))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
