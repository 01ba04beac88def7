"""`python -m localrun.deadletters` end to end on the local broker: a permanent 503 makes a
dead letter (the function's own dead-letter copy), then list, inspect (sees the
given-up event), resubmit with a fixed emulator -> applied."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from handlers.lineage import dead_letter_message_id
from localrun import deadletters
from standins.batch import Fault
from tests.e2e.conftest import Stack, collect, drain, event_of, running_function

QUEUE = "job-updates"
CANARY = "canary-s3cr3t-value"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def cli(stack: Stack, *argv: str, confirm: bool = True) -> tuple[int, str]:
    """The command as a user runs it (its own event loop, in a thread), output captured."""
    out = io.StringIO()
    environ = {"BATCH_ALLOWED_ENDPOINTS": stack.emu.endpoint, "BATCH_ALLOW_EMULATOR": "true"}
    code = await asyncio.to_thread(
        deadletters.main,
        ["--connection-string", stack.connection_string, *argv],
        environ=environ,
        out=out,
        confirm=lambda _question: confirm,
    )
    return code, out.getvalue()


def rows(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def props(received: ServiceBusReceivedMessage) -> dict[str, Any]:
    def text(value: Any) -> Any:
        return value.decode() if isinstance(value, bytes) else value

    return {text(k): text(v) for k, v in (received.application_properties or {}).items()}


async def wait_for(stack: Stack, entity: str, kind: str, count: int, seconds: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while stack.broker.message_counts(entity)[kind] != count:
        assert loop.time() < deadline, f"{entity}: {stack.broker.message_counts(entity)}"
        await asyncio.sleep(0.1)


async def test_a_given_up_message_is_listed_inspected_and_resubmitted_to_applied(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fresh.emu.add_job({"id": "dlq-job", "priority": 0})
    fresh.emu.inject(Fault.server_busy(retry_after=0, method="PATCH", job_id="dlq-job", times=1000))
    await drain(fresh)
    update: dict[str, Any] = {"priority": 5, "metadata": [{"name": "conn", "value": CANARY}]}
    body: dict[str, Any] = {"schemaVersion": "1.0", "jobId": "dlq-job", "update": update}
    # Scheduled copies on: one copy, then the function's dead-letter copy, which the
    # broker moves to the DLQ after maxDeliveryCount abandons. The function keeps
    # running throughout, as it would in Azure.
    async with running_function(
        fresh,
        monkeypatch,
        BATCH_MAX_ATTEMPTS="1",
        JOB_UPDATES_MAX_SCHEDULED_COPIES="1",
        JOB_UPDATES_OFFLOCK_WAIT_SECONDS="0",
    ):
        async with (
            ServiceBusClient.from_connection_string(fresh.connection_string) as client,
            client.get_queue_sender(QUEUE) as sender,
        ):
            await sender.send_messages(
                ServiceBusMessage(json.dumps(body), message_id="m-dlq", content_type="application/json")
            )
        await wait_for(fresh, QUEUE, "dead_letter", 1)
        dead_id = dead_letter_message_id("m-dlq")

        # list: one line, peek only.
        code, out = await cli(fresh, "--json", "list")
        assert code == 0
        (entry,) = rows(out)
        assert entry["messageId"] == dead_id
        assert entry["originalMessageId"] == "m-dlq"
        assert entry["kind"] == "dead-letter copy"
        assert entry["jobId"] == "dlq-job"
        assert entry["deadLetterReason"] == "MaxDeliveryCountExceeded"
        assert entry["jobUpdateDeadLetterReason"] == "ServerBusy"
        assert entry["deliveryCount"] >= 1
        assert entry["originalEnqueuedTime"] is not None
        assert entry["ageSeconds"] >= 0
        code, text = await cli(fresh, "list", "--reason", "serverbusy")
        assert code == 0
        assert dead_id in text and "m-dlq" in text and "ServerBusy" in text
        assert CANARY not in text
        assert fresh.broker.message_counts(QUEUE)["dead_letter"] == 1

        # inspect, by the original id: redacted body, both reasons, the given-up event (peeked).
        code, out = await cli(fresh, "--json", "inspect", "m-dlq")
        assert code == 0
        (doc,) = rows(out)
        assert CANARY not in out
        assert doc["bodyRedacted"] is True
        assert doc["body"]["update"]["metadata"] == [{"name": "conn", "value": "<string>"}]
        assert doc["body"]["update"]["priority"] == 5
        assert doc["deadLetter"]["reason"] == "MaxDeliveryCountExceeded"
        assert doc["deadLetter"]["jobUpdateReason"] == "ServerBusy"
        assert "ServerBusy" in doc["deadLetter"]["jobUpdateDescription"]
        assert doc["originalEnqueuedTime"] is not None
        assert doc["scheduledCopies"] == 1
        assert [e["outcome"] for e in doc["events"]] == ["given-up"]
        assert doc["events"][0]["sourcemessageid"] == "m-dlq"
        assert doc["events"][0]["errorCode"] == "ServerBusy"

        # resubmit: a dry run with an invalid body, then a declined prompt: nothing moves.
        invalid = tmp_path / "invalid.json"
        invalid.write_text(json.dumps({**body, "update": {"priority": "high"}}))
        code, out = await cli(fresh, "--json", "resubmit", "m-dlq", "--body", str(invalid), "--dry-run")
        assert code == 1
        (plan,) = rows(out)
        assert (plan["plan"], plan["valid"], plan["messageId"]) == ("refused", False, dead_id)
        assert plan["problems"][0]["path"] == "$.update.priority"
        code, out = await cli(fresh, "resubmit", "--job-id", "dlq-job", confirm=False)
        assert (code, out.splitlines()[-1]) == (1, "nothing sent")
        assert fresh.broker.message_counts(QUEUE) == {
            "active": 0,
            "deferred": 0,
            "dead_letter": 1,
            "scheduled": 0,
        }

        # Batch is fixed; resubmit with an edited body: the function applies it.
        fresh.emu.clear_faults()
        edited = tmp_path / "edited.json"
        edited.write_text(json.dumps({**body, "update": {**update, "priority": 7}}))
        code, out = await cli(
            fresh, "--json", "resubmit", "--job-id", "dlq-job", "--body", str(edited), "--yes"
        )
        assert code == 0, out
        done = rows(out)[-1]
        assert done["resubmitted"] is True and done["messageId"] == dead_id
        new_id = done["newMessageId"]
        assert new_id not in ("m-dlq", dead_id)
        events = await collect(fresh, 2, wait_seconds=30, settle=0.5)
    assert fresh.broker.message_counts(QUEUE) == {
        "active": 0,
        "deferred": 0,
        "dead_letter": 0,
        "scheduled": 0,
    }
    outcomes = {e.correlation_id: event_of(e)["data"]["outcome"] for e in events}
    assert outcomes == {"m-dlq": "given-up", new_id: "applied"}  # inspect consumed nothing
    job = fresh.emu.job("dlq-job")
    assert job is not None and job["priority"] == 7


async def test_resubmit_takes_only_the_selection_keeps_the_envelope_and_a_repeat_is_dropped(
    fresh: Stack,
) -> None:
    """Dead letters made by hand (no function; one shaped as the function's dead-letter
    copy): one is resubmitted, the others stay. Then a crash between the send and the
    completion is replayed: the same message id goes out again and the queue's
    duplicate detection drops it."""
    first_enqueued = datetime.now(UTC).isoformat()
    copy_id = dead_letter_message_id("orig-b")
    lineage = {
        "jobUpdate.originalMessageId": "orig-b",
        "jobUpdate.originalEnqueuedTime": first_enqueued,
        "jobUpdate.copy": 2,
        "jobUpdate.attempts": 3,
        "jobUpdate.deadLetterReason": "ServerBusy",
        "jobUpdate.deadLetterDescription": "last HTTP 503 ServerBusy",
    }

    def made(job: str, message_id: str, **envelope: Any) -> ServiceBusMessage:
        return ServiceBusMessage(
            json.dumps({"schemaVersion": "1.0", "jobId": job, "update": {"priority": 1}}),
            message_id=message_id,
            content_type="application/json",
            **envelope,
        )

    async with (
        ServiceBusClient.from_connection_string(fresh.connection_string) as client,
        client.get_queue_sender(QUEUE) as sender,
        client.get_queue_receiver(QUEUE, max_wait_time=2) as receiver,
        client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq,
    ):
        await sender.send_messages(
            [
                made("job-a", f"hand-a-{uuid.uuid4()}"),
                made(
                    "job-b",
                    copy_id,
                    correlation_id="corr-1",
                    subject="nightly",
                    application_properties={**lineage, "traceparent": TRACEPARENT},
                ),
                made("job-c", f"hand-c-{uuid.uuid4()}"),
            ]
        )
        got: list[ServiceBusReceivedMessage] = []
        while len(got) < 3:
            got.extend(await receiver.receive_messages(max_message_count=10, max_wait_time=2))
        for message in got:
            await receiver.dead_letter_message(message, reason="ManualTest", error_description="by hand")
        await wait_for(fresh, QUEUE, "dead_letter", 3)

        code, out = await cli(fresh, "--json", "resubmit", "--job-id", "job-b", "--yes")
        assert code == 0, out
        done = rows(out)[-1]
        assert (done["jobId"], done["messageId"]) == ("job-b", copy_id)
        assert fresh.broker.message_counts(QUEUE) == {
            "active": 1,
            "deferred": 0,
            "dead_letter": 2,
            "scheduled": 0,
        }
        left = await deadletters.peek_entries(dlq, 100)
        assert sorted(e.job_id or "" for e in left) == ["job-a", "job-c"]  # held, abandoned: still there

        (queued,) = await receiver.peek_messages(max_message_count=10, sequence_number=1)
        assert queued.message_id == done["newMessageId"] not in (copy_id, "orig-b")
        assert (queued.content_type, queued.correlation_id, queued.subject) == (
            "application/json",
            "corr-1",
            "nightly",
        )
        p = props(queued)
        assert p["traceparent"] == TRACEPARENT  # the producer's own property, kept
        assert p[deadletters.RESUBMITTED_FROM] == copy_id
        assert p[deadletters.RESUBMITTED_SEQUENCE_NUMBER] == done["sequenceNumber"]
        assert p[deadletters.RESUBMITTED_ORIGINAL_MESSAGE_ID] == "orig-b"
        assert deadletters.RESUBMITTED_BODY_EDITED not in p
        assert {k for k in p if k.startswith("jobUpdate.")} == {
            deadletters.RESUBMITTED_FROM,
            deadletters.RESUBMITTED_SEQUENCE_NUMBER,
            deadletters.RESUBMITTED_ORIGINAL_MESSAGE_ID,
        }
        assert "DeadLetterReason" not in p and "DeadLetterErrorDescription" not in p

        # A crash after the send, before the completion: the entry is still in the DLQ and
        # its resubmission already on the queue. Running resubmit again sends the same id.
        (entry_a,) = [e for e in left if e.job_id == "job-a"]
        first = deadletters.resubmission(entry_a)
        await sender.send_messages(first.message())  # "sent", then the crash
        code, out = await cli(fresh, "--json", "resubmit", entry_a.message_id, "--yes")
        assert code == 0, out
        assert rows(out)[-1]["newMessageId"] == first.message_id
        # b's resubmission and one of a's, not two; c is still dead-lettered.
        assert fresh.broker.message_counts(QUEUE) == {
            "active": 2,
            "deferred": 0,
            "dead_letter": 1,
            "scheduled": 0,
        }

        # Leave the broker empty for whatever runs next on this module's stack.
        for source in (receiver, dlq):
            while batch := await source.receive_messages(max_message_count=50, max_wait_time=0.5):
                for message in batch:
                    await source.complete_message(message)
