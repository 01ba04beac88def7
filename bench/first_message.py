"""Cold start: `import function_app`, then the first message, measured apart.

The Batch emulator, the token endpoint and the Service Bus broker run in their
own processes. Each round starts a fresh Python process that imports the
function app (import time), then hands one message to the trigger's entry point
(`on_job_update_message`) as the host would, and reports when it completed
(first message, counted from the end of the import): token fetch, TLS to Batch,
the PATCH, the outcome event's topic link and its send. The token endpoint's
own latency is reported too, from a bare fetch in the same process afterwards.

    python bench/first_message.py [--rounds 5] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-token-signing-key-00000001"
CLIENT_ID = "44444444-4444-4444-4444-444444444444"


def start(*argv: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    info: dict[str, Any] = json.loads(line) if line.startswith("{") else {"connection_string": line.strip()}
    return proc, info


def child() -> dict[str, float]:
    """One cold process: what it reports goes to stdout as one JSON line."""
    import asyncio
    from datetime import UTC, datetime

    # The host's own modules are loaded before it imports the app.
    from azure.functions.servicebus import ServiceBusMessage

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    import function_app  # noqa: F401 - the import is what is measured

    imported = time.perf_counter()
    cpu_imported = time.process_time()

    from handlers.runtime import get_runtime, reset_runtime
    from handlers.trigger import on_job_update_message

    body = json.dumps({"schemaVersion": "1.0", "jobId": "bench-0", "update": {"priority": 5}}).encode()
    message = ServiceBusMessage(
        body=body,
        message_id=f"first-{os.getpid()}-{time.time_ns()}",
        delivery_count=1,
        enqueued_time_utc=datetime.now(UTC),
        application_properties={},
        user_properties={},
        trigger_metadata={},
    )

    if os.environ.get("FIRST_MESSAGE_TRACE"):
        trace_phases(imported)
        print(f"message built: {(time.perf_counter() - imported) * 1000:.1f} ms", file=sys.stderr)

    async def run() -> tuple[float, float, float]:
        await on_job_update_message(message)
        done, cpu_done = time.perf_counter(), time.process_time()
        runtime = await get_runtime()
        credential = runtime._credential
        assert credential is not None
        before = time.perf_counter()
        # The token endpoint's own latency (azure-identity skips its cache when claims are given).
        await credential.get_token(runtime.settings.token_scope, claims="{}")
        token_s = time.perf_counter() - before
        await reset_runtime()
        return done, cpu_done, token_s

    done, cpu_done, token_s = asyncio.run(run())
    return {
        "import_s": imported - t0,
        "import_cpu_s": cpu_imported - cpu0,
        "first_message_s": done - imported,
        "first_message_cpu_s": cpu_done - cpu_imported,
        "token_endpoint_s": token_s,
    }


def trace_phases(origin: float) -> None:
    """Print when each phase starts and ends (stderr), to see what waits on what."""
    import functools

    from azure.servicebus.aio import ServiceBusSender

    from handlers.auth import TokenCache
    from handlers.batch_client import BatchClient
    from handlers.publisher import ServiceBusPublisher

    def wrap(owner: Any, name: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        async def timed(*a: Any, **k: Any) -> Any:
            start = time.perf_counter() - origin
            try:
                return await original(*a, **k)
            finally:
                end = time.perf_counter() - origin
                print(f"{owner.__name__}.{name}: {start * 1000:.1f} -> {end * 1000:.1f} ms", file=sys.stderr)

        setattr(owner, name, timed)

    from handlers.runtime import Runtime

    original_build = Runtime.from_settings.__func__  # type: ignore[attr-defined]

    def build(cls: Any, *a: Any, **k: Any) -> Any:
        start = time.perf_counter() - origin
        try:
            return original_build(cls, *a, **k)
        finally:
            end = time.perf_counter() - origin
            print(f"Runtime.from_settings: {start * 1000:.1f} -> {end * 1000:.1f} ms", file=sys.stderr)

    Runtime.from_settings = classmethod(build)  # type: ignore[method-assign,assignment]
    wrap(TokenCache, "_fetch")
    wrap(BatchClient, "send_once")
    wrap(BatchClient, "warm")
    wrap(ServiceBusPublisher, "_send")
    wrap(ServiceBusPublisher, "_warm")
    wrap(ServiceBusSender, "_open")
    wrap(ServiceBusSender, "send_messages")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child()), flush=True)
        return 0
    seed = Path(tempfile.mkdtemp()) / "jobs.json"
    seed.write_text(json.dumps([{"id": "bench-0"}]))
    batch, emu = start("-m", "standins.batch", "--seed", str(seed), "--token-signing-key", KEY)
    ident, identity_env = start("-m", "standins.identity", "--signing-key", KEY)
    broker, sb = start("-m", "standins.servicebus", "--port", "0")
    env = {
        **os.environ,
        **identity_env,
        "PYTHONPATH": str(ROOT),
        "BATCH_ALLOWED_ENDPOINTS": emu["endpoint"],
        "BATCH_ALLOW_EMULATOR": "true",
        "BATCH_CA_BUNDLE": emu["ca_path"],
        "AZURE_CLIENT_ID": CLIENT_ID,
        "ServiceBusConnection": sb["connection_string"],
        "JOB_UPDATES_QUEUE": "job-updates",
    }
    rows: list[dict[str, float]] = []
    try:
        for _ in range(args.rounds):
            out = subprocess.run(
                [sys.executable, __file__, "--child"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps({k: round(v, 4) for k, v in rows[-1].items()}), flush=True)
    finally:
        for proc in (batch, ident, broker):
            proc.terminate()
            proc.wait(timeout=10)
    summary = {k: round(statistics.median(r[k] for r in rows), 4) for k in rows[0]}
    print(json.dumps({"median": summary}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"rounds": rows, "median": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
