"""Receive, invoke, settle: the Functions host's Service Bus trigger loop, locally."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.meta import Datum
from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceivedMessage
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError

log = logging.getLogger("standins.functions_host")

UserFunction = Callable[..., Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HostOptions:
    """The `extensions.serviceBus` settings of host.json that this loop honours."""

    max_concurrent_calls: int = 16
    max_concurrent_sessions: int = 8
    max_auto_lock_renewal_seconds: float = 300.0
    session_idle_timeout_seconds: float = 1.0
    receive_wait_seconds: float = 0.5

    @classmethod
    def from_host_json(cls, path: Path, **overrides: Any) -> HostOptions:
        sb = json.loads(path.read_text()).get("extensions", {}).get("serviceBus", {})
        values: dict[str, Any] = {
            "max_concurrent_calls": sb.get("maxConcurrentCalls", 16),
            "max_concurrent_sessions": sb.get("maxConcurrentSessions", 8),
            "max_auto_lock_renewal_seconds": _timespan_seconds(
                sb.get("maxAutoLockRenewalDuration", "00:05:00")
            ),
            # How long a session stays with this worker with no message before it is
            # released for the next one (the host's default is one minute).
            "session_idle_timeout_seconds": _timespan_seconds(sb.get("sessionIdleTimeout", "00:01:00")),
        }
        values.update(overrides)
        return cls(**values)


def resolve_app_setting(value: str) -> str:
    """`%NAME%` binding expressions resolve from app settings, as the host does."""
    if value.startswith("%") and value.endswith("%") and len(value) > 2:
        name = value[1:-1]
        if name not in os.environ:
            raise KeyError(f"binding refers to app setting {name}, which is not set")
        return os.environ[name]
    return value


def _timespan_seconds(text: str) -> float:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def to_functions_message(message: ServiceBusReceivedMessage) -> func.ServiceBusMessage:
    """Build the binding value exactly as the worker does: trigger metadata datums
    through azure-functions' own ServiceBusMessageInConverter."""
    enqueued = message.enqueued_time_utc
    locked_until = message.locked_until_utc
    metadata: dict[str, Datum] = {
        "MessageId": Datum(str(message.message_id), "string"),
        # The AMQP header counts earlier attempts (0 on the first delivery) and the
        # Python SDK passes it through; the host's .NET SDK adds one, so functions
        # see 1 on the first delivery and maxDeliveryCount on the last.
        "DeliveryCount": Datum(int(message.delivery_count or 0) + 1, "int"),
        "SequenceNumber": Datum(int(message.sequence_number or 0), "int"),
        "UserProperties": Datum(json.dumps(_jsonable(message.application_properties)), "json"),
        "ApplicationProperties": Datum(json.dumps(_jsonable(message.application_properties)), "json"),
    }
    optional = {
        "SessionId": message.session_id,
        "CorrelationId": message.correlation_id,
        "ContentType": message.content_type,
        "Subject": message.subject,
        "Label": message.subject,
        "LockToken": str(message.lock_token) if message.lock_token else None,
        "EnqueuedTimeUtc": enqueued.isoformat() if enqueued else None,
        "LockedUntil": locked_until.isoformat() if locked_until else None,
    }
    metadata.update({name: Datum(value, "string") for name, value in optional.items() if value is not None})
    body = b"".join(message.body) if not isinstance(message.body, bytes) else message.body
    decoded = ServiceBusMessageInConverter.decode(Datum(body, "bytes"), trigger_metadata=metadata)
    assert isinstance(decoded, func.ServiceBusMessage)
    return decoded


def _jsonable(props: dict[Any, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (props or {}).items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        out[name] = value.decode() if isinstance(value, bytes) else value
    return out


class LocalFunctionsHost:
    """Runs one Service Bus queue-triggered function from a FunctionApp."""

    def __init__(
        self,
        app: func.FunctionApp,
        connection_string: str,
        *,
        function_name: str | None = None,
        queue_name: str | None = None,
        options: HostOptions | None = None,
    ) -> None:
        (fn,) = [f for f in app.get_functions() if function_name in (None, f.get_function_name())]
        trigger = fn.get_trigger()
        if trigger is None:
            raise ValueError(f"function {fn.get_function_name()} has no trigger")
        binding = trigger.get_dict_repr()
        self.function_name = fn.get_function_name()
        self.arg_name = binding["name"]
        self.sessions = bool(binding.get("isSessionsEnabled"))
        self.queue_name = queue_name or resolve_app_setting(binding["queueName"])
        self.user_function: UserFunction = fn.get_user_function()
        self.options = options or HostOptions()
        self._client = ServiceBusClient.from_connection_string(connection_string)
        self._stop = asyncio.Event()
        self.invocations = 0
        self.failures = 0

    async def run(self) -> None:
        """Receive and invoke until `stop()`; returns after in-flight calls settle."""
        renewer = AutoLockRenewer(max_lock_renewal_duration=self.options.max_auto_lock_renewal_seconds)
        try:
            if self.sessions:
                workers = [self._session_worker(renewer) for _ in range(self.options.max_concurrent_sessions)]
                await asyncio.gather(*workers)
            else:
                await self._queue_worker(renewer)
        finally:
            await renewer.close()
            await self._client.close()

    def stop(self) -> None:
        self._stop.set()

    async def _queue_worker(self, renewer: AutoLockRenewer) -> None:
        free = self.options.max_concurrent_calls
        slot_freed = asyncio.Event()
        in_flight: set[asyncio.Task[None]] = set()

        def release() -> None:
            nonlocal free
            free += 1
            slot_freed.set()

        async with self._client.get_queue_receiver(self.queue_name, prefetch_count=0) as receiver:
            while not self._stop.is_set():
                if free == 0:
                    slot_freed.clear()
                    await slot_freed.wait()
                    continue
                try:
                    batch = await receiver.receive_messages(
                        max_message_count=free, max_wait_time=self.options.receive_wait_seconds
                    )
                except (ServiceBusError, OperationTimeoutError):
                    log.warning("receive failed; retrying", exc_info=True)
                    await asyncio.sleep(0.2)
                    continue
                for message in batch:
                    free -= 1
                    task = asyncio.create_task(self._invoke(receiver, renewer, message, release))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _session_worker(self, renewer: AutoLockRenewer) -> None:
        while not self._stop.is_set():
            try:
                receiver = self._client.get_queue_receiver(
                    self.queue_name,
                    session_id=NEXT_AVAILABLE_SESSION,
                    max_wait_time=self.options.receive_wait_seconds,  # waiting for a session
                    prefetch_count=0,
                )
                async with receiver:
                    if receiver.session.locked_until_utc is None:
                        # No session was granted (the attach timed out): try again.
                        continue
                    renewer.register(receiver, receiver.session)
                    await self._drain_session(receiver, renewer)
            except OperationTimeoutError:
                continue  # no session available right now
            except ServiceBusError:
                log.warning("session receive failed; retrying", exc_info=True)
                await asyncio.sleep(0.2)

    async def _drain_session(self, receiver: ServiceBusReceiver, renewer: AutoLockRenewer) -> None:
        # One call at a time per session (maxConcurrentCallsPerSession = 1): per-job order.
        while not self._stop.is_set():
            batch = await receiver.receive_messages(
                max_message_count=1, max_wait_time=self.options.session_idle_timeout_seconds
            )
            if not batch:
                return
            await self._invoke(receiver, renewer, batch[0], lambda: None)

    async def _invoke(
        self,
        receiver: ServiceBusReceiver,
        renewer: AutoLockRenewer,
        message: ServiceBusReceivedMessage,
        done: Callable[[], None],
    ) -> None:
        try:
            if not self.sessions:
                renewer.register(receiver, message)
            self.invocations += 1
            try:
                await self.user_function(**{self.arg_name: to_functions_message(message)})
            except Exception as exc:
                self.failures += 1
                log.info("Executed 'Functions.%s' (Failed: %s); abandoning", self.function_name, exc)
                await _settle(receiver.abandon_message, message)
            else:
                log.debug("Executed 'Functions.%s' (Succeeded)", self.function_name)
                await _settle(receiver.complete_message, message)
        finally:
            done()


async def _settle(action: Callable[[ServiceBusReceivedMessage], Awaitable[None]], message: Any) -> None:
    try:
        await action(message)
    except ServiceBusError:
        # Lock lost: the broker will redeliver, as Service Bus does for the real host.
        log.warning("settling message %s failed; it will be redelivered", message.message_id, exc_info=True)
