"""The whole road, as in Azure: producer -> queue -> function -> Batch -> topic -> subscriber."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from handlers.handler import Inbound
from handlers.publisher import ServiceBusPublisher
from handlers.runtime import Runtime
from handlers.settings import Settings
from standins.batch import Fault
from tests.e2e.conftest import (
    CLIENT_ID,
    Stack,
    collect,
    drain,
    event_of,
    message,
    prop,
    running_function,
    send,
)

ROOT = Path(__file__).resolve().parents[2]


async def test_every_outcome_arrives_exactly_once_with_ids_and_properties(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = fresh.emu
    emu.add_job({"id": "ok-job", "priority": 1})
    stale = emu.add_job({"id": "stale-job"})
    emu.change_job("stale-job", {"priority": 3})
    emu.add_job({"id": "done-job"})
    emu.set_job_state("done-job", "completed")
    emu.add_job({"id": "busy-job"})
    emu.inject(Fault.throttled(retry_after=1, method="PATCH", job_id="busy-job", times=2))
    inputs = {
        "m-applied": {"jobId": "ok-job", "update": {"priority": 9}},
        "m-dry": {"jobId": "ok-job", "update": {"priority": 1}, "options": {"dryRun": True}},
        "m-stale": {
            "jobId": "stale-job",
            "update": {"priority": 2},
            "conditions": {"ifMatch": stale["eTag"]},
        },
        "m-invalid": {"jobId": "ok-job", "update": {"priority": "high"}},
        "m-done": {"jobId": "done-job", "update": {"priority": 2}},
        "m-busy": {"jobId": "busy-job", "update": {"priority": 2}},
    }
    await drain(fresh)
    await drain(fresh, "failures")
    async with running_function(fresh, monkeypatch):
        await send(fresh, "job-updates", [message(body, message_id=mid) for mid, body in inputs.items()])
        events = await collect(fresh, len(inputs))
        failures = await collect(fresh, 1, subscription="failures", wait_seconds=5)

    by_source = {e.correlation_id: e for e in events}
    assert len(events) == len(inputs)
    assert set(by_source) == set(inputs)
    expected = {
        "m-applied": "applied",
        "m-dry": "dry-run",
        "m-stale": "precondition-failed",
        "m-invalid": "rejected",
        "m-done": "failed",
        "m-busy": "applied",
    }
    for source, outcome in expected.items():
        received = by_source[source]
        doc = event_of(received)
        assert doc["data"]["outcome"] == outcome, source
        assert received.message_id == doc["id"]
        assert received.subject == outcome
        assert received.content_type == "application/cloudevents+json"
        assert prop(received, "outcome") == outcome
    done = by_source["m-done"]
    assert (prop(done, "jobId"), prop(done, "httpStatus"), prop(done, "errorCode")) == (
        "done-job",
        409,
        "JobCompleted",
    )
    assert prop(done, "account") == "localhost:" + str(fresh.emu.port)
    assert event_of(by_source["m-busy"])["data"]["attempts"] == 3
    # The SQL-filtered subscription sees only failures.
    assert [prop(f, "outcome") for f in failures] == ["failed"]
    assert failures[0].correlation_id == "m-done"


async def test_poison_message_publishes_given_up_and_lands_in_the_dead_letter_queue(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh.emu.add_job({"id": "sick-job"})
    fresh.emu.inject(Fault.server_busy(retry_after=0, method="PATCH", job_id="sick-job", times=1000))
    await drain(fresh)
    await drain(fresh, "failures")
    # Redelivery-only mode (scheduled copies off): the last delivery gives up.
    async with running_function(
        fresh, monkeypatch, BATCH_MAX_ATTEMPTS="1", JOB_UPDATES_SCHEDULED_RETRIES="false"
    ) as host:
        await send(
            fresh, "job-updates", [message({"jobId": "sick-job", "update": {"priority": 1}}, "m-poison")]
        )
        events = await collect(fresh, 1, wait_seconds=40, settle=2)
        async with (
            ServiceBusClient.from_connection_string(fresh.connection_string) as client,
            client.get_queue_receiver(
                "job-updates", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=5
            ) as dlq,
        ):
            dead = await dlq.receive_messages(max_message_count=10, max_wait_time=5)
            for item in dead:
                await dlq.complete_message(item)
    assert [event_of(e)["data"]["outcome"] for e in events] == ["given-up"]
    alerts = await collect(fresh, 1, subscription="failures", wait_seconds=5)
    assert [prop(a, "outcome") for a in alerts] == ["given-up"]  # the failures subscription sees it too
    assert event_of(events[0])["data"]["error"]["code"] == "ServerBusy"
    assert [d.message_id for d in dead] == ["m-poison"]
    assert dead[0].dead_letter_reason == "MaxDeliveryCountExceeded"
    assert host.invocations == 5  # maxDeliveryCount in Config.json
    assert len([r for r in fresh.emu.requests if r.method == "PATCH"]) == 5


async def test_retries_off_the_lock_schedule_copies_then_dead_letter_with_a_reason(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers.lineage import dead_letter_message_id

    fresh.emu.add_job({"id": "sick-job-2"})
    fresh.emu.inject(Fault.server_busy(retry_after=0.2, method="PATCH", job_id="sick-job-2", times=1000))
    await drain(fresh)
    async with running_function(
        fresh,
        monkeypatch,
        BATCH_MAX_ATTEMPTS="1",
        JOB_UPDATES_MAX_SCHEDULED_COPIES="3",
        JOB_UPDATES_OFFLOCK_WAIT_SECONDS="0",
    ) as host:
        await send(
            fresh, "job-updates", [message({"jobId": "sick-job-2", "update": {"priority": 1}}, "m-sick")]
        )
        events = await collect(fresh, 1, wait_seconds=40, settle=2)
        async with (
            ServiceBusClient.from_connection_string(fresh.connection_string) as client,
            client.get_queue_receiver(
                "job-updates", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=10
            ) as dlq,
        ):
            dead = await dlq.receive_messages(max_message_count=10, max_wait_time=10)
            for item in dead:
                await dlq.complete_message(item)
    (event,) = [event_of(e) for e in events]
    assert event["data"]["outcome"] == "given-up"
    assert event["data"]["scheduledCopies"] == 3
    assert event["sourcemessageid"] == "m-sick"  # every copy's event derives from the original
    (entry,) = dead
    assert entry.message_id == dead_letter_message_id("m-sick")
    props = {
        k.decode() if isinstance(k, bytes) else k: v for k, v in (entry.application_properties or {}).items()
    }
    assert props["jobUpdate.originalMessageId"] in ("m-sick", b"m-sick")
    reason = props["jobUpdate.deadLetterReason"]
    assert (reason.decode() if isinstance(reason, bytes) else reason) == "ServerBusy"
    description = props["jobUpdate.deadLetterDescription"]
    description = description.decode() if isinstance(description, bytes) else description
    assert "last HTTP 503 ServerBusy; 4 Batch attempts" in description
    assert entry.dead_letter_reason == "MaxDeliveryCountExceeded"  # the GA trigger's only way in
    assert len([r for r in fresh.emu.requests if r.method == "PATCH"]) == 4  # original + 3 copies
    assert host.invocations == 4 + 5  # then the dead-letter copy, abandoned maxDeliveryCount times


async def test_unreachable_topic_keeps_the_message_until_the_event_is_published(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh.emu.add_job({"id": "j"})
    await drain(fresh)
    fresh.broker.set_entity_available("job-outcomes", False)
    try:
        async with running_function(fresh, monkeypatch) as host:
            await send(
                fresh, "job-updates", [message({"jobId": "j", "update": {"priority": 4}}, "m-topic-down")]
            )
            for _ in range(200):
                if host.failures:
                    break
                await asyncio.sleep(0.1)
            assert host.failures >= 1  # the publish failed, so the function raised: abandoned, not completed
            fresh.broker.set_entity_available("job-outcomes", True)
            events = await collect(fresh, 1, wait_seconds=40)
    finally:
        fresh.broker.set_entity_available("job-outcomes", True)
    assert [e.correlation_id for e in events] == ["m-topic-down"]
    assert event_of(events[0])["data"]["outcome"] == "applied"


async def test_redelivered_message_yields_no_second_event(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redelivery (lost completion) republishes the same event id: the topic drops it."""
    fresh.emu.add_job({"id": "j"})
    await drain(fresh)
    for name, value in fresh.tokens.env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(
        BATCH_ALLOWED_ENDPOINTS=fresh.emu.endpoint,
        BATCH_ALLOW_EMULATOR=True,
        BATCH_CA_BUNDLE=fresh.emu.ca_path,
        AZURE_CLIENT_ID=CLIENT_ID,
        ServiceBusConnection=fresh.connection_string,
        OUTCOME_TOPIC="job-outcomes",
    )
    runtime = Runtime.from_settings(settings)
    assert isinstance(runtime.handler.publisher, ServiceBusPublisher)
    body = json.dumps({"schemaVersion": "1.0", "jobId": "j", "update": {"priority": 6}}).encode()
    try:
        await runtime.handler.handle(Inbound(body, "m-dup", 1))
        await runtime.handler.handle(Inbound(body, "m-dup", 2))
    finally:
        await runtime.aclose()
    events = await collect(fresh, 1, settle=2)
    assert [e.correlation_id for e in events] == ["m-dup"]
    # And the queue's own duplicate detection drops a re-sent input with the same id.
    async with running_function(fresh, monkeypatch):
        await send(fresh, "job-updates", [message({"jobId": "j", "update": {"priority": 7}}, "m-twice")])
        await send(fresh, "job-updates", [message({"jobId": "j", "update": {"priority": 7}}, "m-twice")])
        again = await collect(fresh, 1, settle=2)
    assert [e.correlation_id for e in again] == ["m-twice"]


async def test_sessions_keep_per_job_order_while_jobs_run_in_parallel(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for job in ("job-a", "job-b"):
        fresh.emu.add_job({"id": job, "priority": 0})
    # Slow PATCHes make reordering observable if the host ever ran a session's messages concurrently.
    fresh.emu.inject(Fault.delay(0.05, method="PATCH", times=20))
    await drain(fresh)
    batch = [
        message({"jobId": job, "update": {"priority": n}}, f"{job}-{n}", session_id=job)
        for n in range(1, 11)
        for job in ("job-a", "job-b")
    ]
    async with running_function(
        fresh, monkeypatch, JOB_UPDATES_QUEUE="job-updates-sessions", JOB_UPDATES_SESSIONS_ENABLED="true"
    ) as host:
        assert host.sessions
        await send(fresh, "job-updates-sessions", batch)
        events = await collect(fresh, 20, wait_seconds=40)
    assert Counter(event_of(e)["data"]["outcome"] for e in events) == {"applied": 20}
    for job in ("job-a", "job-b"):
        applied = [p.body["priority"] for p in fresh.emu.patch_log(job)]
        assert applied == list(range(1, 11)), job
    a, b = fresh.emu.patch_log("job-a"), fresh.emu.patch_log("job-b")
    # In parallel: each job's updates started before the other job's finished.
    assert a[0].applied_at < b[-1].applied_at and b[0].applied_at < a[-1].applied_at


async def test_with_sessions_a_throttled_update_waits_in_place_and_keeps_its_order(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scheduled copy would let the job's next update overtake it: with sessions on,
    the long Retry-After is waited in place and the later update lands after it."""
    fresh.emu.add_job({"id": "job-s", "priority": 0})
    fresh.emu.inject(Fault.throttled(retry_after=2, method="PATCH", job_id="job-s", times=1))
    await drain(fresh)
    batch = [
        message({"jobId": "job-s", "update": {"priority": n}}, f"job-s-{n}", session_id="job-s")
        for n in (1, 2)
    ]
    async with running_function(
        fresh,
        monkeypatch,
        JOB_UPDATES_QUEUE="job-updates-sessions",
        JOB_UPDATES_SESSIONS_ENABLED="true",
        JOB_UPDATES_OFFLOCK_WAIT_SECONDS="0.5",  # a 2 s Retry-After would go off the lock without sessions
    ):
        await send(fresh, "job-updates-sessions", batch)
        events = await collect(fresh, 2, wait_seconds=30)
    assert [event_of(e)["data"]["outcome"] for e in events] == ["applied", "applied"]
    assert all("scheduledCopies" not in event_of(e)["data"] for e in events)
    assert [p.body["priority"] for p in fresh.emu.patch_log("job-s")] == [1, 2]
    assert fresh.emu.job("job-s")["priority"] == 2  # type: ignore[index]


async def test_publisher_coalesces_concurrent_events_and_fails_every_waiting_caller(fresh: Stack) -> None:
    from azure.servicebus.aio import ServiceBusClient as Client

    from handlers.events import build_event
    from handlers.outcomes import Outcome, Result

    await drain(fresh)
    publisher = ServiceBusPublisher(
        Client.from_connection_string(fresh.connection_string, retry_total=0), "job-outcomes"
    )
    events = [build_event(Result(Outcome.applied, job_id=f"j{i}"), f"coalesce-{i}") for i in range(20)]
    try:
        await asyncio.gather(*(publisher.publish([event]) for event in events))
        assert publisher.transfers < len(events)  # calls that waited went out together
        received = await collect(fresh, len(events))
        assert sorted(r.message_id for r in received) == sorted(e.id for e in events)
        fresh.broker.set_entity_available("job-outcomes", False)
        more = [build_event(Result(Outcome.applied, job_id=f"k{i}"), f"down-{i}") for i in range(5)]
        outcomes = await asyncio.gather(*(publisher.publish([e]) for e in more), return_exceptions=True)
        assert all(isinstance(o, Exception) for o in outcomes)  # nobody is told "published" falsely
    finally:
        fresh.broker.set_entity_available("job-outcomes", True)
        await publisher.aclose()
