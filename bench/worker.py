"""One bench variant in its own process, driven by bench/run.py over stdin/stdout.

    python -m bench.worker VARIANT            # JSON commands on stdin, one per line
    python -m bench.worker VARIANT --callgrind N --concurrency 1 16 64   # under valgrind

Each variant gets a fresh process so that `time.process_time()` and RSS are its own:
the pipeline imports azure-servicebus, pydantic and the handlers, and in one shared
process their garbage collections and allocator state would be charged to whichever
variant happened to run next. The process waits on stdin (in a thread, so its event
loop keeps servicing AMQP and connection pools) while the others are measured.

Variants (the same PATCH of the same 16 jobs, same body and headers, same token source):
- pipeline_publish: JobUpdateHandler.handle() on raw message bodies, the Runtime built
  from app settings exactly as in Azure, outcome events to the local broker;
- pipeline_publish_2links (extra): the same with OUTCOME_PUBLISH_LINKS=2;
- pipeline: the same with a publisher that drops the events;
- aiohttp: a bare aiohttp ClientSession PATCH (the Python floor);
- azure_batch_sdk: azure-batch's async `update_job` over azure-core's aiohttp transport
  with a pre-built, pooled session (see `sdk_client`); azure_batch_sdk_ca_file (extra):
  the same with connection_verify=<CA file>;
- httpx_default: httpx.AsyncClient with its default (httpcore) transport.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

API_VERSION = "2025-06-01"
BATCH_SCOPE = "https://batch.core.windows.net//.default"
CLIENT_ID = "44444444-4444-4444-4444-444444444444"
JOBS = 16
BODY = json.dumps({"priority": 5}).encode()

Call = Callable[[str, int], Awaitable[None]]  # (target, i) -> one PATCH or one message


class DroppingPublisher:
    """Stands in for ServiceBusPublisher in the no-publish variant."""

    async def publish(self, events: Sequence[Any]) -> None:
        return None

    async def aclose(self) -> None:
        return None


def app_settings(info: dict[str, Any], connection_string: str | None) -> dict[str, str]:
    """The app settings the function reads in Azure, pointed at the local stand-ins."""
    env = {
        "BATCH_ALLOWED_ENDPOINTS": ",".join(info["endpoints"].values()),
        "BATCH_DEFAULT_ENDPOINT": info["endpoints"]["plain"],
        "BATCH_ALLOW_EMULATOR": "true",
        "BATCH_CA_BUNDLE": info["ca_bundle"],
        "AZURE_CLIENT_ID": CLIENT_ID,
        **info["env"],
    }
    if connection_string:
        env["ServiceBusConnection"] = connection_string
    else:
        env["ServiceBusConnection__fullyQualifiedNamespace"] = "unused.servicebus.windows.net"
    return env


def rss_kb() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class Variant:
    def __init__(self, name: str, info: dict[str, Any], connection_string: str | None) -> None:
        self.name = name
        self.info = info
        self.connection_string = connection_string
        self.endpoints: dict[str, str] = info["endpoints"]
        self.ctx = ssl.create_default_context(cafile=info["ca_bundle"])
        self.prefix = uuid.uuid4().hex[:8]  # unique message ids: the topic drops duplicates
        self.closers: list[Callable[[], Awaitable[Any]]] = []
        self.call: Call

    async def start(self) -> None:
        os.environ.update(app_settings(self.info, self.connection_string))
        if self.name == "pipeline_publish_2links":
            os.environ["OUTCOME_PUBLISH_LINKS"] = "2"  # the one difference from (a)
        if self.name in ("pipeline_publish", "pipeline_publish_2links", "pipeline"):
            await self._pipeline()
        elif self.name == "aiohttp":
            await self._aiohttp()
        elif self.name in ("azure_batch_sdk", "azure_batch_sdk_ca_file"):
            await self._sdk()
        elif self.name == "httpx_default":
            await self._httpx()
        else:
            raise SystemExit(f"unknown variant {self.name!r}")

    async def _pipeline(self) -> None:
        from handlers.plan import Inbound
        from handlers.runtime import Runtime
        from handlers.settings import Settings

        settings = Settings()  # from the app settings above
        publisher = DroppingPublisher() if self.name == "pipeline" else None
        runtime = Runtime.from_settings(settings, publisher=publisher)
        self.closers.append(runtime.aclose)
        bodies = {
            target: [
                json.dumps(
                    {
                        "schemaVersion": "1.0",
                        "endpoint": endpoint,
                        "jobId": f"bench-{i}",
                        "update": {"priority": 5},
                    }
                ).encode()
                for i in range(JOBS)
            ]
            for target, endpoint in self.endpoints.items()
        }
        handler = runtime.handler
        counter = iter(range(10**12))

        async def call(target: str, i: int) -> None:
            inbound = Inbound(bodies[target][i % JOBS], f"{self.prefix}-{next(counter)}")
            result = await handler.handle(inbound)
            assert result.outcome.value == "applied", result

        self.call = call

    async def _token(self) -> str:
        from azure.identity.aio import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=CLIENT_ID)
        self.closers.append(credential.close)
        token: str = (await credential.get_token(BATCH_SCOPE)).token
        return token

    def _headers(self, token: str) -> dict[str, str]:
        from handlers.wire_formats import format_http_date

        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json; odata=minimalmetadata",
            "client-request-id": "9c4d50ee-2d56-4cd3-8152-34347dc9f2b0",
            # within Batch's 15-minute skew for a run of any size here: refreshed per round
            "ocp-date": format_http_date(datetime.now(UTC)),
        }

    def _urls(self) -> dict[str, list[str]]:
        return {
            target: [f"{endpoint}/jobs/bench-{i}?api-version={API_VERSION}" for i in range(JOBS)]
            for target, endpoint in self.endpoints.items()
        }

    async def _aiohttp(self) -> None:
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ctx, limit=100))
        self.closers.append(session.close)
        token = await self._token()
        urls = self._urls()
        self.headers = self._headers(token)

        async def call(target: str, i: int) -> None:
            async with session.patch(urls[target][i % JOBS], data=BODY, headers=self.headers) as response:
                await response.read()
                assert response.status == 200, response.status

        self.call = call

    async def _httpx(self) -> None:
        import httpx

        # The default transport (httpcore over anyio); only the trust and the timeout are
        # ours: httpx's 5 s default trips at c=64 under valgrind (a timer, no CPU cost).
        client = httpx.AsyncClient(verify=self.ctx, timeout=60.0)
        self.closers.append(client.aclose)
        token = await self._token()
        urls = self._urls()
        self.headers = self._headers(token)

        async def call(target: str, i: int) -> None:
            response = await client.patch(urls[target][i % JOBS], content=BODY, headers=self.headers)
            assert response.status_code == 200, response.status_code

        self.call = call

    async def _sdk(self) -> None:
        if self.name == "azure_batch_sdk_ca_file":
            clients = sdk_clients_with_ca_file(self.endpoints, self.info["ca_bundle"], self.closers)
        else:
            clients = sdk_clients(self.endpoints, self.ctx, self.closers)
        from azure.batch import models

        options = models.BatchJobUpdateOptions(priority=5)

        async def call(target: str, i: int) -> None:
            await clients[target].update_job(f"bench-{i % JOBS}", options)

        self.call = call

    def refresh_headers(self) -> None:
        if hasattr(self, "headers"):
            self.headers["ocp-date"] = self._headers("")["ocp-date"]

    async def close(self) -> None:
        for close in reversed(self.closers):
            await close()


def sdk_clients_with_ca_file(
    endpoints: dict[str, str], ca_file: str, closers: list[Callable[[], Awaitable[Any]]]
) -> dict[str, Any]:
    """The documented way to trust a private CA, which defeats the pool (see sdk_clients)."""
    from azure.batch.aio import BatchClient
    from azure.identity.aio import ManagedIdentityCredential

    credential = ManagedIdentityCredential(client_id=CLIENT_ID)
    clients = {
        target: BatchClient(endpoint, credential, connection_verify=ca_file)
        for target, endpoint in endpoints.items()
    }
    for client in clients.values():
        closers.append(client.close)
    closers.append(credential.close)
    return clients


def sdk_clients(
    endpoints: dict[str, str], ctx: ssl.SSLContext, closers: list[Callable[[], Awaitable[Any]]]
) -> dict[str, Any]:
    """azure-batch clients that keep their connections.

    `connection_verify=<CA file>` makes azure-core build a new SSLContext for every
    request (AioHttpTransport._build_ssl_config), and aiohttp keys its pool on the
    context, so each request opened a new TCP+TLS connection: the old 6.5 ms figure.
    A session whose connector already trusts the CA, handed to the transport with
    `session_owner=False` and no `connection_verify`, passes no per-request `ssl`, so
    the connector's context and pool are used. bench/run.py checks it by counting the
    connections the emulator accepts.
    """
    import aiohttp
    from azure.batch.aio import BatchClient
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.identity.aio import ManagedIdentityCredential

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=100))
    credential = ManagedIdentityCredential(client_id=CLIENT_ID)
    clients = {
        target: BatchClient(
            endpoint, credential, transport=AioHttpTransport(session=session, session_owner=False)
        )
        for target, endpoint in endpoints.items()
    }
    for client in clients.values():
        closers.append(client.close)
    closers.append(credential.close)
    closers.append(session.close)
    return clients


async def run_calls(
    variant: Variant, target: str, n: int, concurrency: int, warm: bool = True
) -> list[float]:
    """n calls by `concurrency` workers; returns each call's latency in ms."""
    if warm:  # connections, token, code paths
        await asyncio.gather(*(variant.call(target, i) for i in range(concurrency)))
    queue = iter(range(n))
    latencies: list[float] = []

    async def worker() -> None:
        for i in queue:
            t0 = time.perf_counter()
            await variant.call(target, i)
            latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def cpu(variant: Variant, n: int, concurrency: int) -> dict[str, float]:
    await asyncio.gather(*(variant.call("plain", i) for i in range(concurrency)))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await run_calls(variant, "plain", n, concurrency, warm=False)
    cpu_s, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"cpu_ms": cpu_s / n * 1000, "rps": n / wall}


async def rss(variant: Variant, n: int, concurrency: int, samples: int = 20) -> dict[str, Any]:
    await asyncio.gather(*(variant.call("plain", i) for i in range(concurrency)))
    trace = [rss_kb()]
    step = max(1, n // samples)
    done = 0
    while done < n:
        await run_calls(variant, "plain", min(step, n - done), concurrency, warm=False)
        done += step
        trace.append(rss_kb())
    return {
        "samples_kb": trace,
        "messages": n,
        "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


async def serve(variant: Variant) -> None:
    loop = asyncio.get_running_loop()
    print(json.dumps({"ready": variant.name, "rss_kb": rss_kb()}), flush=True)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        command = json.loads(line)
        variant.refresh_headers()
        op = command["op"]
        if op == "cpu":
            reply: dict[str, Any] = await cpu(variant, command["n"], command["c"])
        elif op == "latency":
            reply = {"latencies_ms": await run_calls(variant, "delayed", command["n"], command["c"])}
        elif op == "rss":
            reply = await rss(variant, command["n"], command["c"])
        elif op == "quit":
            return
        else:
            reply = {"error": f"unknown op {op!r}"}
        print(json.dumps(reply), flush=True)


async def callgrind(variant: Variant, n: int, concurrencies: Sequence[int]) -> None:
    """Under `valgrind --tool=callgrind --zero-before=os_getppid --dump-before=os_getpgrp`.

    Python has no callgrind client request, so two libc calls nothing else here makes
    mark the window: os.getppid() zeroes the counters, os.getpgrp() dumps them. Each
    dump then holds exactly n calls at one concurrency (all threads, warm-up excluded).
    """
    for concurrency in concurrencies:
        await asyncio.gather(*(variant.call("plain", i) for i in range(concurrency)))
        os.getppid()
        await run_calls(variant, "plain", n, concurrency, warm=False)
        os.getpgrp()


async def amain(args: argparse.Namespace, info: dict[str, Any]) -> int:
    variant = Variant(
        args.variant,
        info,
        info.get("connection_string") if args.variant.startswith("pipeline_publish") else None,
    )
    await variant.start()
    try:
        if args.callgrind:
            await callgrind(variant, args.callgrind, args.concurrency)
        else:
            await serve(variant)
    finally:
        await variant.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant")
    parser.add_argument("--info", required=True, help="JSON file: the servers' endpoints, CA, env")
    parser.add_argument("--callgrind", type=int, metavar="N", help="run N calls per concurrency and exit")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args(argv)
    return asyncio.run(amain(args, json.loads(Path(args.info).read_text())))


if __name__ == "__main__":
    sys.exit(main())
