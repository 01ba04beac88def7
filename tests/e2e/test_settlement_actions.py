"""`JOB_UPDATES_SETTLEMENT=actions` end to end: function_app.py's extension-shaped trigger
under the local host loop, which (like the host with autoCompleteMessages false) settles
nothing itself: the function completes, abandons and dead-letters over the local gRPC
Settlement server, through the unmodified extension, on the real local broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from azure.servicebus import ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from standins.batch import Fault
from tests.e2e.conftest import Stack, collect, drain, event_of, message, prop, running_function, send

QUEUE = "job-updates"
ACTIONS = {"JOB_UPDATES_SETTLEMENT": "actions"}


async def settled(stack: Stack, host: Any, total: int, seconds: float = 30.0) -> None:
    """Until `total` settlements went through and the queue holds nothing active or scheduled."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        counts = stack.broker.message_counts(QUEUE)
        if sum(host.settlement.settled.values()) >= total and counts["active"] == counts["scheduled"] == 0:
            return
        assert loop.time() < deadline, f"{counts} {host.settlement.settled}"
        await asyncio.sleep(0.1)


async def dead_letters(stack: Stack) -> list[ServiceBusReceivedMessage]:
    async with (
        ServiceBusClient.from_connection_string(stack.connection_string) as client,
        client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=0.5) as dlq,
    ):
        got = list(await dlq.receive_messages(max_message_count=10, max_wait_time=0.5))
        for received in got:
            await dlq.complete_message(received)
    return got


async def test_applied_is_completed_and_a_give_up_is_dead_lettered_with_our_reason(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh.emu.add_job({"id": "ok-job", "priority": 0})
    fresh.emu.add_job({"id": "dead-job", "priority": 0})
    fresh.emu.inject(Fault.server_busy(retry_after=0, method="PATCH", job_id="dead-job", times=1000))
    await drain(fresh)
    async with running_function(
        fresh,
        monkeypatch,
        **ACTIONS,
        BATCH_MAX_ATTEMPTS="1",
        JOB_UPDATES_MAX_SCHEDULED_COPIES="1",
        JOB_UPDATES_OFFLOCK_WAIT_SECONDS="0",
    ) as host:
        assert host.settlement_arg == "message_actions" and host.auto_complete is False
        await send(
            fresh,
            QUEUE,
            [
                message({"jobId": "ok-job", "update": {"priority": 3}}, message_id="m-ok"),
                message({"jobId": "dead-job", "update": {"priority": 4}}, message_id="m-dead"),
            ],
        )
        # m-ok completed; m-dead completed after scheduling its copy; the copy dead-lettered.
        await settled(fresh, host, 3)
        events = await collect(fresh, 2)
        server = host.settlement
        assert dict(server.settled) == {"complete": 2, "deadletter": 1}
        assert sum(server.refused.values()) == 0  # nothing settled twice, no unknown lock
        assert host.unsettled == 0 and host.failures == 0

    assert fresh.emu.job("ok-job")["priority"] == 3
    outcomes = {event_of(e)["data"]["jobId"]: event_of(e)["data"]["outcome"] for e in events}
    assert outcomes == {"ok-job": "applied", "dead-job": "given-up"}
    (entry,) = await dead_letters(fresh)
    # The DLQ entry itself says why: our reason and description, not MaxDeliveryCountExceeded.
    assert entry.dead_letter_reason == "ServerBusy"
    description = entry.dead_letter_error_description or ""
    assert description.startswith("given up: last HTTP 503 ServerBusy; ")
    assert "2 deliveries of scheduled copies" in description
    assert prop(entry, "jobUpdate.originalMessageId") == "m-dead"
    assert prop(entry, "jobUpdate.deadLetterReason") is None  # no dead-letter copy was sent
    assert fresh.broker.message_counts(QUEUE)["dead_letter"] == 0


async def test_a_transient_is_abandoned_then_redelivered_and_completed(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh.emu.add_job({"id": "flaky-job", "priority": 0})
    fresh.emu.inject(Fault.server_busy(retry_after=0, method="PATCH", job_id="flaky-job", times=1))
    await drain(fresh)
    # Copies off: a transient waits in place, so it is abandoned and redelivered.
    async with running_function(
        fresh, monkeypatch, **ACTIONS, BATCH_MAX_ATTEMPTS="1", JOB_UPDATES_SCHEDULED_RETRIES="false"
    ) as host:
        await send(
            fresh, QUEUE, [message({"jobId": "flaky-job", "update": {"priority": 7}}, message_id="m-flaky")]
        )
        await settled(fresh, host, 2)
        events = await collect(fresh, 1)
        server = host.settlement
        assert dict(server.settled) == {"abandon": 1, "complete": 1}
        assert sum(server.refused.values()) == 0
        assert host.invocations == 2 and host.unsettled == 0

    assert [event_of(e)["data"]["outcome"] for e in events] == ["applied"]
    assert fresh.emu.job("flaky-job")["priority"] == 7
    assert fresh.broker.message_counts(QUEUE) == {
        "active": 0,
        "deferred": 0,
        "dead_letter": 0,
        "scheduled": 0,
    }
