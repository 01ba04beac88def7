"""CPU cost of telemetry per message: the real handler, telemetry off vs on.

The pipeline is JobUpdateHandler.handle() over the real httpx client, auth flow (cached
token), retry loop and event building, with Batch answered in process by
httpx.MockTransport (no sockets: the numbers are the function's own work, repeatable
under callgrind) and events dropped. Modes:

- `off`: telemetry off (the default in Azure unless PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY);
- `noop`: on, SDK providers with no processor and no reader (span and attribute work only);
- `memory`: on, BatchSpanProcessor -> InMemorySpanExporter and InMemoryMetricReader (what
  the distro adds on top is its exporter thread, not this process's message path).

Two ways to measure:

    # process CPU time, modes interleaved over rounds (median): noisy on a shared machine
    python bench/bench_telemetry.py --messages 5000 --rounds 5

    # instructions (deterministic): one mode per process, N messages minus 0 messages
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python bench/bench_telemetry.py --modes off --messages 300 --rounds 1 --no-warm
    python bench/bench_telemetry.py --callgrind --messages 300   # does the above for every mode

`--root DIR` imports `handlers` from another checkout (e.g. main before telemetry, for the
"off costs nothing" comparison; only `off` runs there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
MODES = ("off", "noop", "memory")
ENDPOINT = "https://acct.westeurope.batch.azure.com"


def _root(argv: list[str]) -> Path:
    if "--root" in argv:
        return Path(argv[argv.index("--root") + 1]).resolve()
    return HERE


sys.path.insert(0, str(_root(sys.argv)))

import httpx  # noqa: E402

from handlers.auth import BatchAuth, TokenCache  # noqa: E402
from handlers.batch_client import BatchClient, RetryPolicy  # noqa: E402
from handlers.handler import Inbound, JobUpdateHandler  # noqa: E402
from handlers.requeue import Envelope  # noqa: E402
from handlers.settings import Settings  # noqa: E402
from handlers.transport import NoCookies  # noqa: E402

try:
    from handlers import telemetry
except ImportError:  # a checkout from before telemetry (--root)
    telemetry = None  # type: ignore[assignment]


class Dropping:
    async def publish(self, events: Any) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Credential:
    async def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo("bench-token", int(time.time()) + 3600)

    async def close(self) -> None:
        return None


REPLY_HEADERS = {
    "ETag": "0x8DD0000000000B2",
    "Last-Modified": "Thu, 01 Jan 2026 12:00:01 GMT",
    "request-id": "r",
}


async def batch(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers=REPLY_HEADERS, content=b"")


def make_handler() -> JobUpdateHandler:
    settings = Settings(
        BATCH_ALLOWED_ENDPOINTS=ENDPOINT,
        ServiceBusConnection__fullyQualifiedNamespace="unused.servicebus.windows.net",
    )
    auth = BatchAuth(settings.allowed_endpoints, tokens=TokenCache(Credential(), settings.token_scope))  # type: ignore[arg-type]
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(batch), auth=auth, follow_redirects=False, trust_env=False
    )
    http._cookies = NoCookies()  # as handlers.batch_client.make_http_client
    client = BatchClient(http, RetryPolicy())
    return JobUpdateHandler(settings, client, Dropping())  # type: ignore[arg-type]


def set_mode(mode: str) -> Any:
    """Switch telemetry; returns what must be flushed/shut down after."""
    if telemetry is None:
        assert mode == "off", "this checkout has no telemetry: only --modes off"
        return None
    telemetry.disable()
    if mode == "off":
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer_provider = TracerProvider()
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()] if mode == "memory" else [])
    if mode == "memory":
        exporter = InMemorySpanExporter()
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    telemetry.enable(tracer_provider, meter_provider)
    return tracer_provider


BODIES = [
    json.dumps({"schemaVersion": "1.0", "jobId": f"bench-{i}", "update": {"priority": 5}}).encode()
    for i in range(16)
]
PARENT = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


async def run(handler: JobUpdateHandler, n: int, offset: int) -> None:
    for i in range(offset, offset + n):
        inbound = Inbound(BODIES[i % 16], f"m-{i}", 1, datetime.now(UTC))
        envelope = Envelope(inbound.body, None, application_properties=PARENT)  # type: ignore[arg-type]
        result = await handler.handle(inbound, envelope)
        assert result.outcome.value == "applied", result


async def process_cpu(args: argparse.Namespace) -> dict[str, Any]:
    handler = make_handler()
    per_mode: dict[str, list[float]] = {m: [] for m in args.modes}
    offset = 0
    for _ in range(args.rounds):
        for mode in args.modes:  # interleaved: drift on a shared machine hits every mode alike
            provider = set_mode(mode)
            if not args.no_warm:
                await run(handler, 200, offset)
                offset += 200
            cpu0 = time.process_time()
            await run(handler, args.messages, offset)
            per_mode[mode].append((time.process_time() - cpu0) / args.messages * 1e6)
            offset += args.messages
            if provider is not None:
                provider.shutdown()
    set_mode("off") if telemetry is not None else None
    await handler.batch.aclose()
    medians = {m: round(statistics.median(v), 1) for m, v in per_mode.items()}
    out: dict[str, Any] = {
        "cpu_us_per_message": medians,
        "rounds": {m: [round(x, 1) for x in v] for m, v in per_mode.items()},
    }
    if "off" in medians:
        out["added_us"] = {m: round(medians[m] - medians["off"], 1) for m in medians if m != "off"}
    return out


def callgrind(args: argparse.Namespace) -> dict[str, Any]:
    """Instructions per message: Ir(N messages) - Ir(0 messages), one process each."""
    result: dict[str, Any] = {}
    for mode in args.modes:
        counts = []
        for n in (0, args.messages):
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "cg.out")
                cmd = [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out}",
                    sys.executable,
                    __file__,
                ]
                cmd += ["--modes", mode, "--messages", str(n), "--rounds", "1", "--no-warm", "--quiet"]
                if args.root != HERE:
                    cmd += ["--root", str(args.root)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
                match = re.search(r"Collected : (\d+)", proc.stderr)
                assert match, proc.stderr[-2000:]
                counts.append(int(match.group(1)))
        result[mode] = round((counts[1] - counts[0]) / args.messages)
    out: dict[str, Any] = {"instructions_per_message": result}
    if "off" in result:
        out["added_percent"] = {
            m: round(100 * (result[m] / result["off"] - 1), 1) for m in result if m != "off"
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-warm", action="store_true", help="no 200-message warm-up per round")
    parser.add_argument("--callgrind", action="store_true", help="instruction counts under valgrind")
    parser.add_argument("--root", type=Path, default=HERE, help="checkout whose handlers/ to measure")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    args.root = args.root.resolve()
    if args.callgrind:
        report = callgrind(args)
    elif args.messages == 0:
        report = {}
        make_handler()  # the same start-up work as a measured run, for the callgrind baseline
        set_mode(args.modes[0])
    else:
        report = asyncio.run(process_cpu(args))
    report.update({"python": sys.version.split()[0], "messages": args.messages, "root": str(args.root)})
    if not args.quiet:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
