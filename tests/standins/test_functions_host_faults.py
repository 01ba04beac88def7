"""The local host loop under Service Bus faults, as the real Functions host behaves: it outlives
its receivers (a broker restart, an entity outage, a lost lock) and every message is eventually
processed; a message whose lock was lost while the function ran fails to settle and comes back.

Driven only through the real azure-servicebus SDK against the local broker. Each test uses its
own queue with short locks, so lock expiry (and with it redelivery) takes a couple of seconds.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient

from standins.functions_host import ClientRetryOptions, HostOptions, LocalFunctionsHost
from standins.servicebus import LocalBroker

CONFIG_PATH = Path(__file__).resolve().parents[2] / "standins" / "servicebus" / "Config.json"

# Small SDK retries and reconnect backoff: a fault reaches the loop in well under a second.
FAST = HostOptions(
    max_concurrent_calls=2,
    max_concurrent_sessions=2,
    session_idle_timeout_seconds=0.5,
    receive_wait_seconds=0.3,
    client_retry=ClientRetryOptions(
        max_retries=1, delay_seconds=0.1, max_delay_seconds=0.5, try_timeout_seconds=10
    ),
    reconnect_backoff_seconds=(0.1, 0.5),
)


def _config() -> dict[str, Any]:
    config = copy.deepcopy(json.loads(CONFIG_PATH.read_text()))
    queues = config["UserConfig"]["Namespaces"][0]["Queues"]
    for name, props in {
        "h-restart": {"LockDuration": "PT2S", "MaxDeliveryCount": 10},
        "h-lock": {"LockDuration": "PT2S", "MaxDeliveryCount": 10},
        "h-renew": {"LockDuration": "PT2S", "MaxDeliveryCount": 10},
        "h-sessions": {"LockDuration": "PT5S", "MaxDeliveryCount": 10, "RequiresSession": True},
    }.items():
        queues.append({"Name": name, "Properties": props})
    return config


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalBroker]:
    with LocalBroker(_config(), lock_check_interval=0.05) as running:
        yield running


def _app(
    queue: str, fn: Callable[[func.ServiceBusMessage], Awaitable[None]], *, sessions: bool = False
) -> Any:
    """A FunctionApp with one queue-triggered function, indexed by the host as function_app.py is."""
    app = func.FunctionApp()

    @app.function_name("probe")
    @app.service_bus_queue_trigger(
        arg_name="msg", queue_name=queue, connection="ServiceBusConnection", is_sessions_enabled=sessions
    )
    async def probe(msg: func.ServiceBusMessage) -> None:
        await fn(msg)

    return app


@asynccontextmanager
async def _hosting(
    broker: LocalBroker, app: Any, options: HostOptions = FAST
) -> AsyncIterator[LocalFunctionsHost]:
    host = LocalFunctionsHost(app, broker.connection_string, options=options)
    task = asyncio.create_task(host.run())
    try:
        yield host
    finally:
        host.stop()
        await asyncio.wait_for(task, 30)


async def _send(broker: LocalBroker, queue: str, messages: list[ServiceBusMessage]) -> None:
    async with (
        ServiceBusClient.from_connection_string(broker.connection_string) as client,
        client.get_queue_sender(queue) as sender,
    ):
        await sender.send_messages(messages)


async def _until(predicate: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll until ``predicate()`` holds; the limit only bounds a hung test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


def _drained(broker: LocalBroker, queue: str) -> bool:
    return broker.message_counts(queue) == {"active": 0, "deferred": 0, "dead_letter": 0, "scheduled": 0}


async def test_queue_worker_resumes_after_a_broker_restart_and_every_message_is_processed(
    broker: LocalBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="standins.functions_host")
    ids = [f"restart-{i}" for i in range(16)]
    seen: list[str] = []

    async def slow(msg: func.ServiceBusMessage) -> None:
        await asyncio.sleep(0.2)  # slow enough that calls are in flight when the broker goes
        seen.append(str(msg.message_id))

    await _send(broker, "h-restart", [ServiceBusMessage(i, message_id=i) for i in ids])
    async with _hosting(broker, _app("h-restart", slow)) as host:
        await _until(lambda: len(seen) >= 4, "some messages processed before the restart")
        await asyncio.wrap_future(broker.restart(down_seconds=1.0))
        await _until(
            lambda: set(seen) == set(ids) and _drained(broker, "h-restart"),
            "every message completed after it",
        )
    # The restart was seen: a receive failed and the loop built a new receiver, or the SDK's
    # own retries re-attached the link under a receive (one message per receive, as the
    # host's pump) and the calls in flight could not settle on the link that went away.
    assert host.receiver_failures + host.settle_failures >= 1
    # Calls in flight at the restart could not settle (their link was gone): those messages came
    # back when their locks expired and ran again; nothing was lost or dead-lettered.
    assert len(seen) - len(set(seen)) <= host.settle_failures
    assert any("failed" in r.getMessage() for r in caplog.records)


async def test_a_lock_lost_while_the_function_runs_means_redelivery_and_a_failed_late_settle(
    broker: LocalBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The function outlives maxAutoLockRenewalDuration: the lock lapses, Service Bus redelivers
    the message (the second delivery completes it); the first call's late complete fails, is
    logged, and the loop goes on."""
    caplog.set_level(logging.WARNING, logger="standins.functions_host")
    deliveries: list[tuple[str, int]] = []
    redelivered = asyncio.Event()

    async def first_call_outlives_its_lock(msg: func.ServiceBusMessage) -> None:
        deliveries.append((str(msg.message_id), int(msg.delivery_count or 0)))
        if msg.message_id == "lock-1" and msg.delivery_count == 1:
            await asyncio.wait_for(redelivered.wait(), 20)
        elif msg.message_id == "lock-1":
            redelivered.set()

    options = HostOptions(**{**_fields(FAST), "max_auto_lock_renewal_seconds": 0.5})
    await _send(broker, "h-lock", [ServiceBusMessage("slow", message_id="lock-1")])
    async with _hosting(broker, _app("h-lock", first_call_outlives_its_lock), options) as host:
        await _until(lambda: host.settle_failures == 1, "the first call's late settle to fail")
        await _send(broker, "h-lock", [ServiceBusMessage("after", message_id="lock-2")])
        await _until(lambda: ("lock-2", 1) in deliveries and _drained(broker, "h-lock"), "the loop to go on")
    assert deliveries == [("lock-1", 1), ("lock-1", 2), ("lock-2", 1)]  # DeliveryCount as the host shows it
    assert host.failures == 0 and host.settle_failures == 1
    assert any("lock-1" in r.getMessage() and "settling" in r.getMessage() for r in caplog.records)


async def test_lock_renewal_failures_are_logged_and_the_loop_reconnects_after_an_entity_outage(
    broker: LocalBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """The queue goes down (server-busy) while a call runs: AutoLockRenewer cannot renew and
    calls on_lock_renew_failure (logged, nothing crashes), the receiver is detached and rebuilt
    once the outage ends, the message comes back and is completed."""
    caplog.set_level(logging.WARNING, logger="standins.functions_host")
    deliveries: list[int] = []
    outage_started = asyncio.Event()

    async def call_during_outage(msg: func.ServiceBusMessage) -> None:
        deliveries.append(int(msg.delivery_count or 0))
        if len(deliveries) == 1:
            broker.entity_outage("h-renew", seconds=3.0)
            outage_started.set()
            await _until(lambda: host.lock_renew_failures >= 1, "a renewal to fail", limit=20)

    await _send(broker, "h-renew", [ServiceBusMessage("x", message_id="renew-1")])
    async with _hosting(broker, _app("h-renew", call_during_outage)) as host:
        await _until(lambda: outage_started.is_set(), "the outage")
        await _until(
            lambda: len(deliveries) == 2 and _drained(broker, "h-renew"), "the redelivery to complete"
        )
    assert deliveries == [1, 2]
    assert host.lock_renew_failures >= 1 and host.receiver_failures >= 1
    assert any("lock renewal for renew-1 stopped" in r.getMessage() for r in caplog.records)


async def test_session_workers_survive_a_broker_restart(broker: LocalBroker) -> None:
    sessions = {"a": [f"a-{i}" for i in range(5)], "b": [f"b-{i}" for i in range(5)]}
    seen: list[str] = []

    async def slow(msg: func.ServiceBusMessage) -> None:
        await asyncio.sleep(0.2)
        seen.append(str(msg.message_id))

    await _send(
        broker,
        "h-sessions",
        [ServiceBusMessage(i, message_id=i, session_id=sid) for sid, ids in sessions.items() for i in ids],
    )
    async with _hosting(broker, _app("h-sessions", slow, sessions=True)) as host:
        await _until(lambda: len(seen) >= 3, "some messages processed before the restart")
        await asyncio.wrap_future(broker.restart(down_seconds=1.0))
        everything = {i for ids in sessions.values() for i in ids}
        await _until(
            lambda: set(seen) == everything and _drained(broker, "h-sessions"), "every session drained"
        )
    assert host.receiver_failures >= 1
    for ids in sessions.values():  # within a session, first runs keep the send order
        firsts = [i for n, i in enumerate(seen) if i in ids and i not in seen[:n]]
        assert firsts == ids


def _fields(options: HostOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in HostOptions.__dataclass_fields__}
