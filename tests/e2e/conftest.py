"""End to end over real sockets: producer -> local broker (AMQP) -> local host loop ->
function_app.py -> Batch emulator (HTTPS) -> outcome events on a topic -> subscriber.
Both ends use the real azure-servicebus SDK."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient

from handlers.runtime import reset_runtime
from standins.batch import BatchEmulator
from standins.functions_host import HostOptions, LocalFunctionsHost
from standins.identity import TokenEndpoint
from standins.servicebus import LocalBroker
from tests.faults.stack import load_function_app

ROOT = Path(__file__).resolve().parents[2]
SIGNING_KEY = b"e2e-tests-token-signing-key-0001"
CLIENT_ID = "55555555-5555-5555-5555-555555555555"


@dataclass
class Stack:
    tokens: TokenEndpoint
    emu: BatchEmulator
    broker: LocalBroker

    @property
    def connection_string(self) -> str:
        return self.broker.connection_string


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with (
        TokenEndpoint(signing_key=SIGNING_KEY, client_id=CLIENT_ID) as tokens,
        BatchEmulator(token_signing_key=SIGNING_KEY) as emu,
        LocalBroker(config=str(ROOT / "standins" / "servicebus" / "Config.json"), port=0) as broker,
    ):
        yield Stack(tokens, emu, broker)


@pytest.fixture
def fresh(stack: Stack) -> Stack:
    stack.emu.reset()
    return stack


@asynccontextmanager
async def running_function(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, **settings: str
) -> AsyncIterator[LocalFunctionsHost]:
    env = {
        **stack.tokens.env,
        "AZURE_CLIENT_ID": CLIENT_ID,
        "ServiceBusConnection": stack.connection_string,
        "JOB_UPDATES_QUEUE": "job-updates",
        "JOB_UPDATES_MAX_DELIVERY_COUNT": "5",
        "OUTCOME_TOPIC": "job-outcomes",
        "BATCH_ALLOWED_ENDPOINTS": stack.emu.endpoint,
        "BATCH_ALLOW_EMULATOR": "true",
        "BATCH_CA_BUNDLE": stack.emu.ca_path,
        "BATCH_RETRY_BUDGET_SECONDS": "10",
        **settings,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = load_function_app().app
    host = LocalFunctionsHost(
        app,
        stack.connection_string,
        # A short session idle timeout: tests end sooner than host.json's 30 s allows.
        options=HostOptions.from_host_json(
            ROOT / "host.json", receive_wait_seconds=0.3, session_idle_timeout_seconds=1.0
        ),
    )
    task = asyncio.create_task(host.run())
    try:
        yield host
    finally:
        host.stop()
        await task
        await reset_runtime()


def message(
    body: dict[str, Any], message_id: str | None = None, session_id: str | None = None
) -> ServiceBusMessage:
    return ServiceBusMessage(
        json.dumps({"schemaVersion": "1.0", **body}),
        message_id=message_id or str(uuid.uuid4()),
        content_type="application/json",
        session_id=session_id,
    )


async def send(stack: Stack, queue: str, messages: list[ServiceBusMessage]) -> None:
    async with (
        ServiceBusClient.from_connection_string(stack.connection_string) as client,
        client.get_queue_sender(queue) as sender,
    ):
        await sender.send_messages(messages)


async def drain(stack: Stack, subscription: str = "all-outcomes", topic: str = "job-outcomes") -> None:
    """Empty a subscription so a test sees only its own events."""
    async with (
        ServiceBusClient.from_connection_string(stack.connection_string) as client,
        client.get_subscription_receiver(topic, subscription, max_wait_time=0.3) as receiver,
    ):
        while batch := await receiver.receive_messages(max_message_count=100, max_wait_time=0.3):
            for received in batch:
                await receiver.complete_message(received)


async def collect(
    stack: Stack,
    want: int,
    *,
    subscription: str = "all-outcomes",
    topic: str = "job-outcomes",
    wait_seconds: float = 30.0,
    settle: float = 1.0,
) -> list[ServiceBusReceivedMessage]:
    """Receive until `want` events arrived, then keep listening `settle` seconds for extras."""
    got: list[ServiceBusReceivedMessage] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    async with (
        ServiceBusClient.from_connection_string(stack.connection_string) as client,
        client.get_subscription_receiver(topic, subscription) as receiver,
    ):
        while loop.time() < deadline:
            if len(got) >= want:
                deadline = min(deadline, loop.time() + settle)
            batch = await receiver.receive_messages(max_message_count=50, max_wait_time=0.5)
            for received in batch:
                got.append(received)
                await receiver.complete_message(received)
    return got


def event_of(received: ServiceBusReceivedMessage) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(b"".join(received.body))
    return doc


def prop(received: ServiceBusReceivedMessage, name: str) -> Any:
    props = received.application_properties or {}
    value = props.get(name.encode(), props.get(name))  # type: ignore[call-overload]
    return value.decode() if isinstance(value, bytes) else value
