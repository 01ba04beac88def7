"""The main job, end to end on loopback, with no Azure account.

Starts the stand-ins (token endpoint, Batch emulator seeded with sample jobs,
Service Bus broker from standins/servicebus/Config.json), runs function_app.py
under the local host loop, sends every message in samples/, prints each outcome
event as it arrives on the `all-outcomes` subscription, then a summary. Exits 0
when every message produced exactly one event and nothing is left on the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "standins" / "servicebus" / "Config.json"
SAMPLES = ROOT / "samples"
QUEUE, TOPIC, SUBSCRIPTION = "job-updates", "job-outcomes", "all-outcomes"
SIGNING_KEY = b"local-run-token-signing-key-0001"
CLIENT_ID = "33333333-3333-3333-3333-333333333333"
POOL = {"vmSize": "standard_d2s_v3", "userAccounts": [{"name": "ops", "password": "example-not-a-secret"}]}

# Jobs the samples refer to, in the states that show each outcome.
JOBS: list[dict[str, Any]] = [
    {"id": "nightly-render", "priority": 0},
    {
        "id": "etl-daily",
        "constraints": {"maxWallClockTime": "PT8H", "maxTaskRetryCount": 3},
        "metadata": [{"name": "owner", "value": "etl"}, {"name": "tier", "value": "gold"}],
    },
    {"id": "busy-job", "priority": 0},
    {"id": "finished-job", "state": "completed"},
    {
        "id": "autopool-job",
        "state": "disabled",
        "poolInfo": {
            "autoPoolSpecification": {
                "autoPoolIdPrefix": "render",
                "poolLifetimeOption": "job",
                "keepAlive": False,
                "pool": POOL,
            }
        },
    },
]


def seed(emu: Any) -> None:
    from standins.batch import Fault

    for job in JOBS:
        spec = dict(job)
        state = spec.pop("state", None)
        emu.add_job(spec)
        if state:
            emu.set_job_state(spec["id"], state)
    # busy-job is throttled three times, with Retry-After: 1.
    emu.inject(Fault.throttled(retry_after=1, method="PATCH", job_id="busy-job", times=3))


def line(event: dict[str, Any]) -> str:
    d = event["data"]
    detail = d.get("error", {}).get("code") or ", ".join(p["path"] for p in d.get("problems", [])) or ""
    extra = " (already applied)" if d.get("alreadyApplied") else ""
    changes = ",".join(d.get("changes", {}))
    return (
        f"  {d['outcome']:<20} job={d.get('jobId')!s:<15} http={d.get('httpStatus')!s:<4} "
        f"attempts={d['attempts']} {detail}{extra}{'  changes=' + changes if changes else ''}"
    )


async def run(wait_seconds: float) -> int:
    from standins.batch import BatchEmulator
    from standins.functions_host import HostOptions, LocalFunctionsHost
    from standins.identity import TokenEndpoint
    from standins.servicebus import LocalBroker

    samples = sorted(SAMPLES.glob("*.json"))
    with (
        TokenEndpoint(signing_key=SIGNING_KEY, client_id=CLIENT_ID) as tokens,
        BatchEmulator(token_signing_key=SIGNING_KEY) as emu,
        LocalBroker(config=str(CONFIG), port=0) as broker,
    ):
        seed(emu)
        os.environ.update(
            {
                **tokens.env,
                "AZURE_CLIENT_ID": CLIENT_ID,
                "ServiceBusConnection": broker.connection_string,
                "JOB_UPDATES_QUEUE": QUEUE,
                "JOB_UPDATES_MAX_DELIVERY_COUNT": "5",  # the queue's MaxDeliveryCount in Config.json
                "OUTCOME_TOPIC": TOPIC,
                "BATCH_ALLOWED_ENDPOINTS": emu.endpoint,
                "BATCH_ALLOW_EMULATOR": "true",
                "BATCH_CA_BUNDLE": emu.ca_path,
            }
        )
        print(
            f"Batch emulator   {emu.endpoint}\nService Bus      {broker.connection_string.split(';')[0]}\n"
            f"Token endpoint   {tokens.env['IDENTITY_ENDPOINT']}\n"
        )

        import function_app  # after the app settings are in place, as on the host
        from handlers.runtime import reset_runtime

        host = LocalFunctionsHost(
            function_app.app, broker.connection_string, options=HostOptions.from_host_json(ROOT / "host.json")
        )
        host_task = asyncio.create_task(host.run())
        events: list[dict[str, Any]] = []
        async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
            receiver = client.get_subscription_receiver(TOPIC, SUBSCRIPTION, max_wait_time=1)
            async with receiver, client.get_queue_sender(QUEUE) as sender:
                print(f"sending {len(samples)} messages from samples/ ...")
                await sender.send_messages(
                    [
                        ServiceBusMessage(
                            path.read_bytes(), message_id=path.stem, content_type="application/json"
                        )
                        for path in samples
                    ]
                )
                print("outcome events on job-outcomes/all-outcomes:")
                deadline = time.monotonic() + wait_seconds
                while len(events) < len(samples) and time.monotonic() < deadline:
                    for received in await receiver.receive_messages(max_message_count=20, max_wait_time=1):
                        event = json.loads(b"".join(received.body))
                        events.append(event)
                        print(line(event), flush=True)
                        await receiver.complete_message(received)
            host.stop()
            await host_task
            await reset_runtime()
            left = len(await _peek(client, QUEUE, None))
            dead = [
                {"messageId": m.message_id, "reason": m.dead_letter_reason}
                for m in await _peek(client, QUEUE, ServiceBusSubQueue.DEAD_LETTER)
            ]

    outcomes = Counter(e["data"]["outcome"] for e in events)
    per_message = Counter(e["sourcemessageid"] for e in events)
    ok = len(events) == len(samples) and all(n == 1 for n in per_message.values()) and left == 0
    print("\nsummary")
    print(
        json.dumps(
            {
                "messages": len(samples),
                "events": len(events),
                "outcomes": dict(sorted(outcomes.items())),
                "leftOnQueue": left,
                "deadLettered": dead,
                "batchRequests": Counter(f"{r.method} {r.status}" for r in emu.requests),
                "tokenFetches": dict(tokens.requests),
            },
            indent=2,
        )
    )
    print("OK: every message has exactly one outcome" if ok else "NOT OK: see above")
    return 0 if ok else 1


async def _peek(client: ServiceBusClient, queue: str, sub_queue: ServiceBusSubQueue | None) -> list[Any]:
    async with client.get_queue_receiver(queue, sub_queue=sub_queue) as receiver:
        return list(await receiver.peek_messages(max_message_count=100))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m localrun", description=__doc__)
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds to wait for all events")
    parser.add_argument("-v", "--verbose", action="store_true", help="log the function's lines too")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    return asyncio.run(run(args.timeout))


if __name__ == "__main__":
    sys.exit(main())
