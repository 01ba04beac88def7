"""`python -m localrun watch`: outcome events and dead letters as they arrive.

Peeks (never receives, so nothing is consumed, locked or redelivered) three places:
the topic's `all-outcomes` and `failures` subscriptions and the queue's dead-letter
queue, and prints one line per message: events as `python -m localrun` prints them,
dead letters as message id, job id, reason and delivery count (never the body: a
message can carry pool credentials). What is already there is printed first (unless
--new), then new arrivals, until Ctrl-C.

Where: the `serve` state file (default .localrun/serve.json), --connection-string, or
--namespace NAME.servicebus.windows.net with Entra (DefaultAzureCredential; peeking
needs Azure Service Bus Data Receiver on the subscriptions and the queue).

Exit 0 on Ctrl-C or once --count lines were printed, 1 when --timeout passed first,
2 for a bad option or no state file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from handlers.errors import UsageError
from localrun.common import QUEUE, SUBSCRIPTION, TOPIC, line
from localrun.serve import FAILURES, STATE, read_state

PAGE = 100
DEAD_LETTER = "dead-letter"


@dataclass(frozen=True)
class Source:
    label: str
    open: Callable[[ServiceBusClient], ServiceBusReceiver]
    # Dead letters keep their original sequence numbers on the local broker, so a
    # later one can sort before an earlier one: read the whole (small) queue each time.
    from_start_each_poll: bool


def sources(queue: str, topic: str) -> list[Source]:
    return [
        Source(SUBSCRIPTION, lambda c: c.get_subscription_receiver(topic, SUBSCRIPTION), False),
        Source(FAILURES, lambda c: c.get_subscription_receiver(topic, FAILURES), False),
        Source(
            DEAD_LETTER,
            lambda c: c.get_queue_receiver(queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER),
            True,
        ),
    ]


def describe(label: str, message: ServiceBusReceivedMessage) -> dict[str, Any]:
    """One printed item: an event as received, or a dead letter without its body."""
    body = b"".join(message.body)
    if label != DEAD_LETTER:
        try:
            return {"source": label, "event": json.loads(body)}
        except ValueError:
            return {"source": label, "unreadable": True, "messageId": str(message.message_id)}
    job_id = None
    with contextlib.suppress(ValueError, AttributeError):
        candidate = json.loads(body).get("jobId")
        job_id = candidate[:64] if isinstance(candidate, str) else None
    return {
        "source": label,
        "messageId": str(message.message_id),
        "jobId": job_id,
        "reason": message.dead_letter_reason,
        "description": message.dead_letter_error_description,
        "deliveryCount": message.delivery_count,
    }


def render(item: dict[str, Any]) -> str:
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    if "event" in item:
        return f"{stamp} {item['source']:<12}{line(item['event'], with_id=True)}"
    if item.get("unreadable"):
        return f"{stamp} {item['source']:<12}  message {item['messageId']}: not a JSON event"
    return (
        f"{stamp} {item['source']:<12}  {item['messageId']!s:<24} job={item['jobId']!s:<15} "
        f"reason={item['reason']} ({item['description']}) deliveries={item['deliveryCount']}"
    )


async def watch(
    client: ServiceBusClient,
    watched: list[Source],
    *,
    new_only: bool,
    count: int | None,
    poll_seconds: float,
    as_json: bool,
    out: TextIO,
) -> int:
    """Print until `count` items (0 when reached) or cancellation."""
    printed = 0
    done = asyncio.Event()

    def emit(item: dict[str, Any]) -> None:
        nonlocal printed
        if done.is_set():
            return
        out.write((json.dumps(item) if as_json else render(item)) + "\n")
        out.flush()
        printed += 1
        if count is not None and printed >= count:
            done.set()

    async def follow(source: Source) -> None:
        seen: set[int] = set()
        # Sequence numbers start at 1; the SDK reads 0 as "after the last one peeked".
        next_sequence = 1
        async with source.open(client) as receiver:
            first = True
            while True:
                start = 1 if source.from_start_each_poll else next_sequence
                batch = await _peek_all(receiver, start)
                for message in batch:
                    sequence = int(message.sequence_number or 0)
                    next_sequence = max(next_sequence, sequence + 1)
                    if sequence in seen:
                        continue
                    seen.add(sequence)
                    if not (first and new_only):
                        emit(describe(source.label, message))
                first = False
                await asyncio.sleep(poll_seconds)

    tasks = [asyncio.create_task(follow(s)) for s in watched]
    waiter = asyncio.create_task(done.wait())
    try:
        finished, _ = await asyncio.wait({waiter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            if task is not waiter:
                task.result()  # a follower only ends by raising: surface it
        return 0
    finally:
        for task in [waiter, *tasks]:
            task.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)


async def _peek_all(receiver: ServiceBusReceiver, start: int) -> list[ServiceBusReceivedMessage]:
    out: list[ServiceBusReceivedMessage] = []
    while True:
        page = list(await receiver.peek_messages(max_message_count=PAGE, sequence_number=start))
        out.extend(page)
        if len(page) < PAGE:
            return out
        start = int(page[-1].sequence_number or 0) + 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m localrun watch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--state", type=Path, help=f"a serve state file (default {STATE.name} in .localrun/)")
    where.add_argument("--connection-string", help="Service Bus connection string (the local broker)")
    where.add_argument("--namespace", help="NAME.servicebus.windows.net, with Entra (DefaultAzureCredential)")
    parser.add_argument("--queue", default=None, help=f"default {QUEUE} (or the state file's)")
    parser.add_argument("--topic", default=None, help=f"default {TOPIC} (or the state file's)")
    parser.add_argument("--new", action="store_true", help="skip what is already there; only new arrivals")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    parser.add_argument("--count", type=int, metavar="N", help="exit 0 after N lines")
    parser.add_argument("--timeout", type=float, metavar="S", help="exit 1 after S seconds")
    parser.add_argument("--poll", type=float, default=0.5, metavar="S", help="seconds between peeks (0.5)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prog = "python -m localrun watch"
    queue, topic = args.queue, args.topic
    target = args.connection_string or args.namespace
    try:
        if target is None:
            state = read_state(args.state or STATE)
            target = state["connectionString"]
            queue, topic = queue or state.get("queue"), topic or state.get("topic")
        if args.count is not None and args.count < 1:
            raise UsageError("--count must be at least 1")
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(
        _main(target, queue or QUEUE, topic or TOPIC, args, credential_needed=args.namespace is not None)
    )


async def _main(
    target: str, queue: str, topic: str, args: argparse.Namespace, *, credential_needed: bool
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    credential: Any = None
    if credential_needed:
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
        client = ServiceBusClient(target, credential)
    else:
        client = ServiceBusClient.from_connection_string(target)
    if not args.json:
        print(
            f"watching {topic}/{SUBSCRIPTION}, {topic}/{FAILURES} and {queue}/$DeadLetterQueue (Ctrl-C stops)"
        )
    try:
        async with client:
            watching = asyncio.create_task(
                watch(
                    client,
                    sources(queue, topic),
                    new_only=args.new,
                    count=args.count,
                    poll_seconds=args.poll,
                    as_json=args.json,
                    out=sys.stdout,
                )
            )
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait(
                {watching, stopped}, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if watching in done:
                stopped.cancel()
                return watching.result()
            watching.cancel()
            stopped.cancel()
            await asyncio.gather(watching, stopped, return_exceptions=True)
            if not done:  # the timeout passed first
                print(f"python -m localrun watch: --timeout {args.timeout:g} s passed", file=sys.stderr)
                return 1
            return 0
    finally:
        if credential is not None:
            await credential.close()
