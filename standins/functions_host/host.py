"""Receive, invoke, settle: the Functions host's Service Bus trigger loop, locally."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.meta import Datum
from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceivedMessage
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver
from azure.servicebus.exceptions import OperationTimeoutError

log = logging.getLogger("standins.functions_host")

UserFunction = Callable[..., Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ClientRetryOptions:
    """host.json ``extensions.serviceBus.clientRetryOptions``, with the host's defaults (those
    of ServiceBusRetryOptions: exponential, 0.8 s delay, 1 min max delay, 3 retries, 1 min try
    timeout), mapped onto the Python SDK's client keywords."""

    mode: str = "exponential"
    delay_seconds: float = 0.8
    max_delay_seconds: float = 60.0
    max_retries: int = 3
    try_timeout_seconds: float = 60.0

    @classmethod
    def from_host_json(cls, raw: dict[str, Any]) -> ClientRetryOptions:
        base = cls()
        return cls(
            mode=str(raw.get("mode", base.mode)).lower(),
            delay_seconds=_timespan_seconds(raw["delay"]) if "delay" in raw else base.delay_seconds,
            max_delay_seconds=(
                _timespan_seconds(raw["maxDelay"]) if "maxDelay" in raw else base.max_delay_seconds
            ),
            max_retries=int(raw.get("maxRetries", base.max_retries)),
            try_timeout_seconds=(
                _timespan_seconds(raw["tryTimeout"]) if "tryTimeout" in raw else base.try_timeout_seconds
            ),
        )

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "retry_mode": self.mode,
            "retry_total": self.max_retries,
            "retry_backoff_factor": self.delay_seconds,
            "retry_backoff_max": self.max_delay_seconds,
            "try_timeout": self.try_timeout_seconds,
        }


@dataclass(frozen=True, slots=True)
class HostOptions:
    """The `extensions.serviceBus` settings of host.json that this loop honours."""

    max_concurrent_calls: int = 16
    max_concurrent_sessions: int = 8
    prefetch_count: int = 0
    max_auto_lock_renewal_seconds: float = 300.0
    session_idle_timeout_seconds: float = 1.0
    receive_wait_seconds: float = 0.5
    client_retry: ClientRetryOptions = ClientRetryOptions()
    # After a receiver fails, wait this long before building a new one: doubling from the
    # first value up to the second, back to the first after a receive succeeds. Short and
    # bounded, like the host's listener restarts, so a broker restart costs seconds, not minutes.
    reconnect_backoff_seconds: tuple[float, float] = (0.1, 2.0)

    @classmethod
    def from_host_json(cls, path: Path, **overrides: Any) -> HostOptions:
        sb = json.loads(path.read_text()).get("extensions", {}).get("serviceBus", {})
        values: dict[str, Any] = {
            "max_concurrent_calls": sb.get("maxConcurrentCalls", 16),
            "max_concurrent_sessions": sb.get("maxConcurrentSessions", 8),
            # Per receive loop's link (each loop has its own); 0, the host's default, issues
            # credit per receive call.
            "prefetch_count": int(sb.get("prefetchCount", 0)),
            "max_auto_lock_renewal_seconds": _timespan_seconds(
                sb.get("maxAutoLockRenewalDuration", "00:05:00")
            ),
            # How long a session stays with this worker with no message before it is
            # released for the next one (the host's default is one minute).
            "session_idle_timeout_seconds": _timespan_seconds(sb.get("sessionIdleTimeout", "00:01:00")),
            "client_retry": ClientRetryOptions.from_host_json(sb.get("clientRetryOptions", {})),
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


class _Backoff:
    """Doubling delays between ``first`` and ``cap``; ``reset()`` after a success."""

    def __init__(self, first: float, cap: float) -> None:
        self.first, self.cap = first, cap
        self._next = first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


class LocalFunctionsHost:
    """Runs one Service Bus queue-triggered function from a FunctionApp.

    Like the real host's listener it outlives its receivers: any error from a receiver
    (connection lost, link detached, session lock lost, ...) is logged, the receiver is dropped
    and a new one built after a short bounded backoff. A message whose lock was lost while the
    function ran (lock expired, or its receiver went away) fails to settle; that is logged and
    Service Bus redelivers it, as it does for the real host.
    """

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
        # autoCompleteMessages false on the binding plus a ServiceBusMessageActions
        # parameter: the function settles over gRPC (settlement.py) and this loop does not.
        self.settlement_arg = _settlement_arg(self.user_function, self.arg_name)
        self.auto_complete = binding.get("autoCompleteMessages", True) is not False
        self.settlement: Any = None  # settlement.SettlementServer while run() runs, in that mode
        self._trigger_type = inspect.get_annotations(self.user_function, eval_str=True).get(self.arg_name)
        self.unsettled = 0  # explicit settlement only: invocations that left their message locked
        self.options = options or HostOptions()
        # One client for the host: it holds no connection of its own (each receiver opens its
        # own), so a broken connection never needs a new client, only a new receiver.
        self._client = ServiceBusClient.from_connection_string(
            connection_string, **self.options.client_retry.client_kwargs()
        )
        self._stop = asyncio.Event()
        self.invocations = 0
        self.failures = 0
        self.receiver_failures = 0  # receivers dropped and rebuilt after an error
        self.settle_failures = 0  # completes/abandons that did not reach the broker
        self.completed = 0  # messages completed (the function returned and the complete landed)
        self.lock_renew_failures = 0  # on_lock_renew_failure callbacks from AutoLockRenewer

    async def run(self) -> None:
        """Receive and invoke until `stop()`; returns after in-flight calls settle."""
        renewer = AutoLockRenewer(
            max_lock_renewal_duration=self.options.max_auto_lock_renewal_seconds,
            on_lock_renew_failure=self._on_lock_renew_failure,
        )
        if self.settlement_arg is not None:
            from standins.functions_host.settlement import SettlementServer

            self.settlement = SettlementServer()
            await self.settlement.start()
        try:
            if self.sessions:
                workers = [self._session_worker(renewer) for _ in range(self.options.max_concurrent_sessions)]
                await asyncio.gather(*workers)
            else:
                await self._queue_worker(renewer)
        finally:
            await renewer.close()
            if self.settlement is not None:
                await self.settlement.stop()
            await self._client.close()

    def stop(self) -> None:
        self._stop.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _receiver_failed(self, what: str, exc: BaseException, delay: float) -> None:
        self.receiver_failures += 1
        log.warning(
            "%s for %s failed (%s: %s); new receiver in %.1f s",
            what,
            self.queue_name,
            type(exc).__name__,
            exc,
            delay,
        )

    async def _on_lock_renew_failure(self, renewable: object, error: Exception | None) -> None:
        # Called by AutoLockRenewer when it stops renewing a lock before it is settled. Only
        # log: the function keeps running, its settle then fails and Service Bus redelivers.
        try:
            self.lock_renew_failures += 1
            what = getattr(renewable, "message_id", None) or getattr(renewable, "session_id", None)
            log.warning("lock renewal for %s stopped: %r", what, error)
        except Exception:  # never let a logging problem reach the SDK's renew task
            log.debug("on_lock_renew_failure failed", exc_info=True)

    # ------------------------------------------------------------------ queue
    async def _queue_worker(self, renewer: AutoLockRenewer) -> None:
        # The Service Bus extension's message pump (ServiceBusProcessor): maxConcurrentCalls
        # loops, each receiving one message, invoking, settling, then receiving again. Each loop
        # has its own receiver: an SDK receiver is not safe for concurrent use, and pyamqp holds
        # one lock for a connection's reads and writes, so a receive sharing a connection with
        # settles waits out their 0.2 s socket reads (the old single-receiver pump drained 26
        # msg/s at 16 this way). One call per loop keeps concurrency at maxConcurrentCalls
        # across reconnects without any shared counter.
        loops = [self._receive_loop(renewer) for _ in range(self.options.max_concurrent_calls)]
        await asyncio.gather(*loops)

    async def _receive_loop(self, renewer: AutoLockRenewer) -> None:
        backoff = _Backoff(*self.options.reconnect_backoff_seconds)
        while not self._stop.is_set():
            receiver = self._client.get_queue_receiver(
                self.queue_name, prefetch_count=self.options.prefetch_count
            )
            try:
                # Open the link up front, with the client's retries: an open left to
                # receive_messages is bounded by its max_wait_time, shorter than a link takes
                # to attach.
                await receiver.__aenter__()
                while not self._stop.is_set():
                    batch = await receiver.receive_messages(
                        max_message_count=1, max_wait_time=self.options.receive_wait_seconds
                    )
                    backoff.reset()
                    link = _link_of(receiver)
                    for message in batch:
                        await self._invoke(receiver, link, renewer, message, _nothing)
            except Exception as exc:  # any receive failure: ServiceBusError, or the SDK's others
                delay = backoff.next()
                self._receiver_failed("receiver", exc, delay)
                await self._pause(delay)
            finally:
                # The loop's call has tried to settle by now: closing cannot strand it.
                await _close_quietly(receiver)

    # ------------------------------------------------------------------ sessions
    async def _session_worker(self, renewer: AutoLockRenewer) -> None:
        backoff = _Backoff(*self.options.reconnect_backoff_seconds)
        while not self._stop.is_set():
            accepted = False
            try:
                receiver = self._client.get_queue_receiver(
                    self.queue_name,
                    session_id=NEXT_AVAILABLE_SESSION,
                    max_wait_time=self.options.receive_wait_seconds,  # waiting for a session
                    prefetch_count=self.options.prefetch_count,
                )
                async with receiver:
                    if receiver.session.locked_until_utc is None:
                        # No session was granted (the attach timed out): try again.
                        continue
                    accepted = True
                    backoff.reset()
                    renewer.register(receiver, receiver.session)
                    await self._drain_session(receiver, renewer)
            except Exception as exc:  # session lock lost, connection lost, link detached, ...
                if isinstance(exc, OperationTimeoutError) and not accepted:
                    continue  # no session available right now
                delay = backoff.next()
                self._receiver_failed("session receiver", exc, delay)
                await self._pause(delay)

    async def _drain_session(self, receiver: ServiceBusReceiver, renewer: AutoLockRenewer) -> None:
        # One call at a time per session (maxConcurrentCallsPerSession = 1): per-job order.
        while not self._stop.is_set():
            batch = await receiver.receive_messages(
                max_message_count=1, max_wait_time=self.options.session_idle_timeout_seconds
            )
            if not batch:
                return
            await self._invoke(receiver, _link_of(receiver), renewer, batch[0], lambda: None)

    # ------------------------------------------------------------------ one invocation
    async def _invoke(
        self,
        receiver: ServiceBusReceiver,
        link: object,
        renewer: AutoLockRenewer,
        message: ServiceBusReceivedMessage,
        done: Callable[[], None],
    ) -> None:
        try:
            if not self.sessions:
                try:
                    renewer.register(receiver, message)
                except Exception as exc:  # e.g. the lock already expired while waiting
                    log.warning("cannot renew the lock of %s: %s", message.message_id, exc)
            self.invocations += 1
            if self.settlement is not None:
                await self._invoke_settled(receiver, link, message)
                return
            try:
                await self.user_function(**{self.arg_name: to_functions_message(message)})
            except Exception as exc:
                self.failures += 1
                log.info("Executed 'Functions.%s' (Failed: %s); abandoning", self.function_name, exc)
                await self._settle(receiver, link, receiver.abandon_message, message)
            else:
                log.debug("Executed 'Functions.%s' (Succeeded)", self.function_name)
                await self._settle(receiver, link, receiver.complete_message, message)
        finally:
            done()

    async def _invoke_settled(
        self, receiver: ServiceBusReceiver, link: object, message: ServiceBusReceivedMessage
    ) -> None:
        """autoCompleteMessages off: the function settles through the Settlement server;
        this loop settles nothing, whatever the function did (as the host)."""
        from standins.functions_host import settlement

        token = self.settlement.hold(receiver, message, lambda: _link_of(receiver) is link)
        try:
            args = {
                self.arg_name: settlement.decode_trigger(message, self._trigger_type),
                str(self.settlement_arg): settlement.settlement_client(),
            }
            await self.user_function(**args)
        except Exception as exc:
            self.failures += 1
            log.info("Executed 'Functions.%s' (Failed: %s)", self.function_name, exc)
            failed = True
        else:
            failed = False
        if self.settlement.release(token):
            return
        if self.auto_complete:  # the binding left auto-complete on: the host settles what is left
            action = receiver.abandon_message if failed else receiver.complete_message
            await self._settle(receiver, link, action, message)
            return
        self.unsettled += 1  # its lock lapses and Service Bus redelivers it
        log.warning("message %s was left unsettled by the function", message.message_id)

    async def _settle(
        self,
        receiver: ServiceBusReceiver,
        link: object,
        action: Callable[[ServiceBusReceivedMessage], Awaitable[None]],
        message: ServiceBusReceivedMessage,
    ) -> None:
        if _link_of(receiver) is not link:
            # The receiver reconnected since this message arrived. Its lock belongs to the old
            # link, and the SDK would send the disposition by delivery id on the NEW link, where
            # that id may name another message: leave it; its lock lapses and it is redelivered.
            self.settle_failures += 1
            log.warning(
                "not settling message %s: its receiver reconnected since; it will be redelivered",
                message.message_id,
            )
            return
        try:
            await action(message)
            if action == receiver.complete_message:
                self.completed += 1
        except Exception as exc:  # MessageLockLostError, a closed handler (ValueError), ...
            self.settle_failures += 1
            log.warning(
                "settling message %s failed (%s: %s); it will be redelivered",
                message.message_id,
                type(exc).__name__,
                exc,
            )


def _settlement_arg(function: UserFunction, trigger_arg: str) -> str | None:
    # Only a function that imported the extension can ask for its client (as in the worker).
    if "azurefunctions.extensions.bindings.servicebus" not in sys.modules:
        return None
    from standins.functions_host.settlement import settlement_param

    return settlement_param(function, trigger_arg)


def _nothing() -> None:
    return None


async def _close_quietly(receiver: ServiceBusReceiver) -> None:
    try:
        await receiver.close()
    except Exception:  # closing a receiver whose connection is gone may fail; nothing to do
        log.debug("closing a failed receiver failed", exc_info=True)


def _link_of(receiver: ServiceBusReceiver) -> object:
    """The SDK's AMQP handler behind ``receiver`` (private: the SDK exposes no link identity).
    A receiver that reconnects gets a new one."""
    return getattr(receiver, "_handler", None)
