"""Cold start in a fresh process: import time, then the first message, measured apart.

    python -m bench.coldstart --info servers.json           # import function_app, first message
    python -m bench.coldstart --info servers.json --deps    # the dependencies alone

Prints one JSON line. The first message goes the way it goes in Azure: the Runtime is
built from the app settings on first use (handlers.runtime.get_runtime), the token
fetched, the TLS connection and the topic sender opened, the event published.
"""

from __future__ import annotations

import time

T0, C0 = time.perf_counter(), time.process_time()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# What function_app pulls in, without the project's own modules.
DEPENDENCIES = (
    "azure.functions",
    "azure.identity.aio",
    "azure.servicebus.aio",
    "httpx",
    "aiohttp",
    "pydantic",
    "pydantic_settings",
)


async def first_message(info: dict[str, object]) -> dict[str, float]:
    from handlers.plan import Inbound
    from handlers.runtime import get_runtime, reset_runtime

    body = json.dumps({"schemaVersion": "1.0", "jobId": "bench-0", "update": {"priority": 5}}).encode()
    t0, c0 = time.perf_counter(), time.process_time()
    runtime = await get_runtime()
    result = await runtime.handler.handle(Inbound(body, f"cold-{time.time_ns()}"))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert result.outcome.value == "applied", result
    t1 = time.perf_counter()
    await runtime.handler.handle(Inbound(body, f"cold-second-{time.time_ns()}"))
    second = time.perf_counter() - t1
    await reset_runtime()
    return {"first_message_s": wall, "first_message_cpu_s": cpu, "second_message_s": second}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--info", required=True)
    parser.add_argument("--deps", action="store_true", help="import only the dependencies")
    args = parser.parse_args(argv)
    info = json.loads(Path(args.info).read_text())
    import os

    from bench.worker import app_settings, rss_kb

    os.environ.update(app_settings(info, info["connection_string"]))
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for name in DEPENDENCIES if args.deps else ("function_app",):
        importlib.import_module(name)
    out: dict[str, float] = {
        "import_s": time.perf_counter() - start_wall,
        "import_cpu_s": time.process_time() - start_cpu,
        "rss_after_import_kb": rss_kb(),
        "interpreter_s": start_wall - T0,
    }
    if not args.deps:
        out.update(asyncio.run(first_message(info)))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
