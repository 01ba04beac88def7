"""ServiceBusRequeue against the local broker through the real azure-servicebus SDK:
a copy scheduled twice (a crash between scheduling and completing) arrives once,
and a dead-letter copy reads back as one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.servicebus.aio import ServiceBusClient

from handlers.lineage import Lineage, copy_message_id, dead_letter_message_id, lineage_of
from handlers.requeue import Envelope, ServiceBusRequeue
from standins.servicebus import LocalBroker

CONFIG = Path(__file__).resolve().parents[2] / "standins" / "servicebus" / "Config.json"
FIRST = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _props(received: object) -> dict[str, object]:
    raw = getattr(received, "application_properties", None) or {}
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }


async def test_a_copy_scheduled_twice_arrives_once_and_reads_back_as_a_copy() -> None:
    body = json.dumps({"schemaVersion": "1.0", "jobId": "j", "update": {"priority": 1}}).encode()
    envelope = Envelope(
        body,
        Lineage("m-orig", FIRST),
        content_type="application/json",
        application_properties={"traceparent": "t"},
    )
    with LocalBroker(config=str(CONFIG), port=0) as broker:
        async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
            requeue = ServiceBusRequeue(client, "job-updates")
            due = datetime.now(UTC) + timedelta(seconds=1)
            await requeue.schedule_copy(envelope, 1, due, attempts=3)
            await requeue.schedule_copy(envelope, 1, due, attempts=3)  # the crash-and-redeliver repeat
            await requeue.dead_letter(envelope, "ServerBusy", "given up: ...", attempts=9)
            await requeue.aclose()
            async with client.get_queue_receiver("job-updates", max_wait_time=4) as receiver:
                got = []
                while batch := await receiver.receive_messages(max_message_count=10, max_wait_time=3):
                    for received in batch:
                        got.append(received)
                        await receiver.complete_message(received)
    by_id = {str(m.message_id): m for m in got}
    assert sorted(by_id) == sorted([copy_message_id("m-orig", 1), dead_letter_message_id("m-orig")])
    assert len(got) == 2  # the repeated copy was dropped by duplicate detection
    copy = by_id[copy_message_id("m-orig", 1)]
    assert b"".join(copy.body) == body
    assert copy.content_type == "application/json"
    lineage = lineage_of(str(copy.message_id), copy.enqueued_time_utc, _props(copy))
    assert lineage == Lineage("m-orig", FIRST, 1, 3)
    assert _props(copy)["traceparent"] == "t"
    dead = by_id[dead_letter_message_id("m-orig")]
    assert lineage_of(str(dead.message_id), None, _props(dead)).dead_letter == ("ServerBusy", "given up: ...")
