"""The main job, end to end on loopback, with no Azure account.

Starts the stand-ins (token endpoint, Batch emulator seeded with jobs, Service Bus
broker from standins/servicebus/Config.json), runs function_app.py under the local
host loop, sends the messages, prints each outcome event as it arrives on the
`all-outcomes` subscription, then a summary. Exits 0 when every message has exactly
one outcome event and nothing is left on the queue, 1 otherwise, 2 for a bad option
or an unreadable input. By default: the messages in samples/ against the sample jobs.

  --messages PATH   your own messages instead: a folder of *.json files (message id =
                    file stem), one *.json file, or JSON Lines (one body per line,
                    blank lines skipped; id = <file stem>-<line number>). Bodies are
                    sent as the bytes written, so the function judges them.
  --jobs FILE       seed these jobs instead of the sample jobs: JSON Lines of Batch job
                    objects as GET /jobs/{id} returns them (eTag, lastModified and
                    state are kept as given). Without it, the sample jobs.
  --events-out FILE every outcome event, one JSON line each, as received.

See docs/local-run.md.
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
from typing import Any, BinaryIO

from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessageSizeExceededError

from handlers import telemetry
from handlers.errors import UsageError
from localrun.common import (
    CLIENT_ID,
    CONFIG,
    QUEUE,
    ROOT,
    SAMPLES,
    SIGNING_KEY,
    SUBSCRIPTION,
    TOPIC,
    line,
    seed,
)
from localrun.inputs import Outgoing, judge, read_jobs, read_messages


def event_line(body: bytes) -> bytes:
    """One JSON line for --events-out: the body as received when it already is one."""
    if b"\n" in body or b"\r" in body:
        return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    return body + b"\n"


async def send_all(sender: Any, messages: list[Outgoing]) -> list[str]:
    """Send in as few batches as fit; return the ids too large for any (never sent)."""
    too_large: list[str] = []
    batch = await sender.create_message_batch()
    for item in messages:
        message = ServiceBusMessage(item.body, message_id=item.message_id, content_type="application/json")
        try:
            batch.add_message(message)
            continue
        except MessageSizeExceededError:
            pass
        if len(batch):
            await sender.send_messages(batch)
            batch = await sender.create_message_batch()
            try:
                batch.add_message(message)
                continue
            except MessageSizeExceededError:
                pass
        print(
            f"  not sent: {item.origin} ({len(item.body)} bytes) is over the queue's "
            f"{batch.max_size_in_bytes}-byte message limit",
            flush=True,
        )
        too_large.append(item.message_id)
    if len(batch):
        await sender.send_messages(batch)
    return too_large


async def run(
    wait_seconds: float,
    messages: list[Outgoing],
    source: str,
    jobs: list[dict[str, Any]] | None,
    events_out: BinaryIO | None,
) -> int:
    from standins.batch import BatchEmulator
    from standins.functions_host import HostOptions, LocalFunctionsHost
    from standins.identity import TokenEndpoint
    from standins.servicebus import LocalBroker

    own = source != "samples/"
    with (
        TokenEndpoint(signing_key=SIGNING_KEY, client_id=CLIENT_ID) as tokens,
        BatchEmulator(token_signing_key=SIGNING_KEY) as emu,
        LocalBroker(config=str(CONFIG), port=0) as broker,
    ):
        seed(emu, jobs)
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

        def record(body: bytes) -> None:
            event = json.loads(body)
            events.append(event)
            if events_out is not None:
                events_out.write(event_line(body))
                events_out.flush()

        async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
            receiver = client.get_subscription_receiver(TOPIC, SUBSCRIPTION, max_wait_time=1)
            async with receiver, client.get_queue_sender(QUEUE) as sender:
                print(f"sending {len(messages)} messages from {source} ...")
                not_sent = await send_all(sender, messages)
                waiting = {m.message_id for m in messages} - set(not_sent)
                print("outcome events on job-outcomes/all-outcomes:")
                deadline = time.monotonic() + wait_seconds
                while waiting and time.monotonic() < deadline:
                    for received in await receiver.receive_messages(max_message_count=20, max_wait_time=1):
                        record(b"".join(received.body))
                        waiting.discard(events[-1].get("sourcemessageid"))
                        print(line(events[-1], with_id=own), flush=True)
                        await receiver.complete_message(received)
            host.stop()
            await host_task  # returns once in-flight calls have settled
            await reset_runtime()
            # Whatever the function published after the last awaited event is still on
            # the subscription: a second outcome for a message would be there.
            # (Concurrently: opening and closing each link takes about a second here.)
            extras, queued, dead_lettered = await asyncio.gather(
                _peek(client, QUEUE, None, subscription=SUBSCRIPTION, topic=TOPIC),
                _peek(client, QUEUE, None),
                _peek(client, QUEUE, ServiceBusSubQueue.DEAD_LETTER),
            )
            for extra in extras:
                record(b"".join(extra.body))
                print(line(events[-1], with_id=own) + "  (after the run)", flush=True)
            left = len(queued)
            dead = [{"messageId": m.message_id, "reason": m.dead_letter_reason} for m in dead_lettered]

    sent = [m.message_id for m in messages if m.message_id not in not_sent]
    verdict = judge(sent, not_sent, events, left)
    outcomes = Counter(e["data"]["outcome"] for e in events)
    print("\nsummary")
    summary: dict[str, Any] = {
        "messages": len(messages),
        "events": len(events),
        "outcomes": dict(sorted(outcomes.items())),
        "leftOnQueue": left,
        "deadLettered": dead,
        "batchRequests": Counter(f"{r.method} {r.status}" for r in emu.requests),
        "tokenFetches": dict(tokens.requests),
    }
    if verdict.missing:
        summary["withoutOutcome"] = verdict.missing
    if verdict.repeated:
        summary["moreThanOneOutcome"] = verdict.repeated
    if verdict.unexpected:
        summary["unexpectedEvents"] = verdict.unexpected
    print(json.dumps(summary, indent=2))
    print("OK: every message has exactly one outcome" if verdict.ok else "NOT OK: see above")
    return 0 if verdict.ok else 1


async def _peek(
    client: ServiceBusClient,
    queue: str,
    sub_queue: ServiceBusSubQueue | None,
    *,
    topic: str | None = None,
    subscription: str | None = None,
) -> list[Any]:
    receiver = (
        client.get_subscription_receiver(topic, subscription)
        if topic and subscription
        else client.get_queue_receiver(queue, sub_queue=sub_queue)
    )
    async with receiver:
        return list(await receiver.peek_messages(max_message_count=100))


# Subcommands. Without one, the main job, with its options exactly as before (it takes
# no positional arguments, so a first word of `serve` could never have meant anything).
SUBCOMMANDS = ("serve", "watch", "fault")


def main(argv: list[str] | None = None) -> int:
    args_given = sys.argv[1:] if argv is None else argv
    if args_given and args_given[0] in SUBCOMMANDS:
        import importlib

        command = importlib.import_module(f"localrun.{args_given[0]}")
        code: int = command.main(args_given[1:])
        return code
    parser = argparse.ArgumentParser(
        prog="python -m localrun",
        description=__doc__,
        epilog="Also: python -m localrun serve | watch | fault (each with --help); docs/local-run.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds to wait for all events")
    parser.add_argument(
        "--messages", type=Path, metavar="PATH", help="a folder of *.json, a *.json file, or JSON Lines"
    )
    parser.add_argument("--jobs", type=Path, metavar="FILE", help="JSON Lines of Batch jobs to seed")
    parser.add_argument(
        "--events-out", type=Path, metavar="FILE", help="write each outcome event as a JSON line"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log the function's lines too")
    args = parser.parse_args(args_given)
    try:
        # Every input is read before anything starts: a bad one costs no run.
        messages = read_messages(args.messages or SAMPLES)
        jobs = read_jobs(args.jobs) if args.jobs else None
        inputs = [p for p in (args.messages, args.jobs) if p is not None]
        if args.events_out and any(_same_file(args.events_out, p) for p in inputs):
            raise UsageError(f"{args.events_out}: --events-out would overwrite an input")
        events_out = _open_out(args.events_out) if args.events_out else None
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    # One JSON object per line, with the trace, span, message and job ids (docs/telemetry.md).
    telemetry.configure_local_logging(logging.INFO if args.verbose else logging.WARNING)
    telemetry.setup_local()
    source = str(args.messages) if args.messages else "samples/"
    try:
        return asyncio.run(run(args.timeout, messages, source, jobs, events_out))
    finally:
        if events_out is not None:
            events_out.close()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def _open_out(path: Path) -> BinaryIO:
    try:
        return path.open("wb")
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    sys.exit(main())
