"""The stand-ins for one fault row, and the function running against them.

Everything talks over real sockets: the unmodified azure-servicebus SDK to the
local broker, httpx to the HTTPS Batch emulator, azure-identity to the token
endpoint. The function is `function_app.py`, freshly imported, under the local
host loop, either in this process or in a child process (for SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from handlers.runtime import reset_runtime
from standins.batch import BatchEmulator
from standins.functions_host import HostOptions, LocalFunctionsHost
from standins.identity import TokenEndpoint
from standins.servicebus import LocalBroker

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "standins" / "servicebus" / "Config.json"
SIGNING_KEY = b"fault-matrix-token-signing-key-1"
CLIENT_ID = "77777777-7777-7777-7777-777777777777"
QUEUE, TOPIC, SUBSCRIPTION = "job-updates", "job-outcomes", "all-outcomes"
MAX_DELIVERY_COUNT = 5


def load_function_app() -> Any:
    """A fresh copy of function_app.py, as a new worker process would import it
    (a FunctionApp can be indexed once per instance)."""
    spec = importlib.util.spec_from_file_location(
        f"function_app_{uuid.uuid4().hex}", ROOT / "function_app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def broker_config(lock_seconds: int) -> Path:
    """Config.json with the trigger queue's lock shortened (lock-expiry rows) and
    its MaxDeliveryCount pinned to what the function is told."""
    doc = json.loads(CONFIG.read_text())
    for namespace in doc["UserConfig"]["Namespaces"]:
        for queue in namespace["Queues"]:
            queue["Properties"]["LockDuration"] = f"PT{lock_seconds}S"
            queue["Properties"]["MaxDeliveryCount"] = MAX_DELIVERY_COUNT
    handle, name = tempfile.mkstemp(prefix="fault-config-", suffix=".json")
    with os.fdopen(handle, "w") as out:
        json.dump(doc, out)
    return Path(name)


@dataclass
class Stack:
    tokens: TokenEndpoint
    emu: BatchEmulator
    broker: LocalBroker
    config: Path

    @property
    def connection_string(self) -> str:
        return self.broker.connection_string

    def app_settings(self, overrides: Mapping[str, str]) -> dict[str, str]:
        return {
            **self.tokens.env,
            "AZURE_CLIENT_ID": CLIENT_ID,
            "ServiceBusConnection": self.connection_string,
            "JOB_UPDATES_QUEUE": QUEUE,
            "JOB_UPDATES_MAX_DELIVERY_COUNT": str(MAX_DELIVERY_COUNT),
            "OUTCOME_TOPIC": TOPIC,
            "BATCH_ALLOWED_ENDPOINTS": self.emu.endpoint,
            "BATCH_ALLOW_EMULATOR": "true",
            "BATCH_CA_BUNDLE": self.emu.ca_path,
            "BATCH_RETRY_BUDGET_SECONDS": "8",
            "BATCH_HTTP_TIMEOUT_SECONDS": "3",
            "OUTCOME_PUBLISH_HOLD_SECONDS": "30",
            **overrides,
        }


@contextlib.contextmanager
def stack(*, lock_seconds: int = 30) -> Iterator[Stack]:
    config = broker_config(lock_seconds)
    try:
        with (
            TokenEndpoint(signing_key=SIGNING_KEY, client_id=CLIENT_ID) as tokens,
            BatchEmulator(token_signing_key=SIGNING_KEY) as emu,
            LocalBroker(config=str(config), port=0) as broker,
        ):
            yield Stack(tokens, emu, broker, config)
    finally:
        config.unlink(missing_ok=True)


@contextlib.contextmanager
def app_settings(values: Mapping[str, str]) -> Iterator[None]:
    """Set app settings in os.environ (the function reads them there), then restore."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def host_options(**overrides: Any) -> HostOptions:
    return HostOptions.from_host_json(
        ROOT / "host.json", receive_wait_seconds=0.3, session_idle_timeout_seconds=1.0, **overrides
    )


@contextlib.asynccontextmanager
async def function_in_process(
    s: Stack, settings: Mapping[str, str], **options: Any
) -> AsyncIterator[LocalFunctionsHost]:
    with app_settings(s.app_settings(settings)):
        host = LocalFunctionsHost(
            load_function_app().app, s.connection_string, options=host_options(**options)
        )
        task = asyncio.create_task(host.run())
        try:
            yield host
        finally:
            host.stop()
            await task
            await reset_runtime()


@dataclass
class HostProcess:
    """The function under the host loop in a child process (`python -m tests.faults.host`)."""

    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.host"],
            cwd=ROOT,
            env={**os.environ, **self.env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no cleanup, locks stay held until they expire
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def send(s: Stack, bodies: list[tuple[str, Mapping[str, Any]]]) -> None:
    async with (
        ServiceBusClient.from_connection_string(s.connection_string) as client,
        client.get_queue_sender(QUEUE) as sender,
    ):
        await sender.send_messages(
            [
                ServiceBusMessage(json.dumps(body), message_id=message_id, content_type="application/json")
                for message_id, body in bodies
            ]
        )


class EventSink:
    """Receives every outcome event on the `all-outcomes` subscription, as a subscriber would:
    at least once, so it keeps the first of each CloudEvent `id` (producers.md tells
    subscribers the same). When a connection is cut between a receive and its settle (the
    broker restarting), the subscription delivers that event again: the same id, counted in
    `redelivered`, not a second outcome. Two events of one message with different ids are
    two outcomes, and the accounting counts them as duplicates."""

    def __init__(self, s: Stack) -> None:
        self._stack = s
        self.events: list[dict[str, Any]] = []
        self.redelivered = 0
        self._ids: set[str] = set()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventSink:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                async with (
                    ServiceBusClient.from_connection_string(self._stack.connection_string) as client,
                    client.get_subscription_receiver(TOPIC, SUBSCRIPTION) as receiver,
                ):
                    while not self._stop.is_set():
                        for received in await receiver.receive_messages(
                            max_message_count=50, max_wait_time=0.3
                        ):
                            event = json.loads(b"".join(received.body))
                            if event.get("id") in self._ids:
                                self.redelivered += 1
                            else:
                                self._ids.add(event.get("id"))
                                self.events.append(event)
                            await receiver.complete_message(received)
            except Exception:  # the broker restarting: reconnect, as a subscriber would
                await asyncio.sleep(0.3)


async def queue_counts(s: Stack) -> tuple[int, list[tuple[str, str | None]]]:
    """(messages still on the queue, dead letters as (message id, reason))."""
    async with ServiceBusClient.from_connection_string(s.connection_string) as client:
        async with client.get_queue_receiver(QUEUE) as receiver:
            left = len(await receiver.peek_messages(max_message_count=250))
        async with client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
            dead = [
                (_original_id(m), m.dead_letter_reason)
                for m in await receiver.peek_messages(max_message_count=250)
            ]
    return left, dead


def _original_id(message: Any) -> str:
    """A dead-letter copy names the message it stands for (handlers/lineage.py)."""
    props = message.application_properties or {}
    original = props.get(b"jobUpdate.originalMessageId", props.get("jobUpdate.originalMessageId"))
    if isinstance(original, bytes):
        original = original.decode()
    return str(original or message.message_id)
