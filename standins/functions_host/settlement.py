"""The host's half of the settlement extension (`ServiceBusMessageActions`), locally.

With `autoCompleteMessages: false` and a function that takes a `ServiceBusMessageActions`
parameter, the real host (a) sends the trigger as *model binding data*: the message's
lock token (16 bytes, .NET `Guid.ToByteArray` order) followed by the AMQP-encoded message,
which the extension's `ServiceBusConverter` decodes with uamqp into an
`azure.servicebus.ServiceBusReceivedMessage`; (b) serves a gRPC `Settlement` service
whose address the worker gets on its command line (`--host --port
--functions-grpc-max-message-length`), and settles on its own receiver by lock token.

This module is that, over a real loopback gRPC socket and the extension's own generated
stubs (`settlement_pb2*`), settling on the local host's real broker receiver. It is
imported only when a function asks for the actions parameter: the default host loop
needs neither grpc nor the extension.
"""

from __future__ import annotations

import inspect
import logging
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc  # type: ignore[import-untyped]
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._pyamqp.message import Header, Message
from azure.servicebus._pyamqp.types import TYPE, VALUE, AMQPTypes
from azure.servicebus.aio import ServiceBusReceiver
from azurefunctions.extensions.base import Datum, GrpcClientType, meta  # type: ignore[import-untyped]
from azurefunctions.extensions.bindings.protos import settlement_pb2_grpc  # type: ignore[import-untyped]
from azurefunctions.extensions.bindings.servicebus import (  # type: ignore[import-untyped]
    ServiceBusMessageActions,
)
from google.protobuf import empty_pb2  # type: ignore[import-untyped]

log = logging.getLogger("standins.functions_host")

LOCK_TOKEN_KEY = b"x-opt-lock-token"
MAX_MESSAGE_LENGTH = 4 * 1024 * 1024  # the worker's default functions-grpc-max-message-length


@dataclass(frozen=True, slots=True)
class ModelBindingData:
    """The fields of the worker protocol's ModelBindingData that the converter reads."""

    content: bytes
    version: str = "1.0"
    source: str = "AzureServiceBusReceivedMessage"
    content_type: str = "application/octet-stream"


def settlement_param(function: Callable[..., Any], trigger_arg: str) -> str | None:
    """The parameter the worker fills with the settlement client: the one unbound
    parameter annotated with a `GrpcClientType` (as azure_functions_runtime's
    `validate_settlement_param` does), or None."""
    unbound = [name for name in inspect.signature(function).parameters if name != trigger_arg]
    if len(unbound) != 1:
        return None
    annotation = inspect.get_annotations(function, eval_str=True).get(unbound[0])
    if isinstance(annotation, type) and issubclass(annotation, GrpcClientType):
        return unbound[0]
    return None


def model_binding_content(message: ServiceBusReceivedMessage) -> bytes:
    """Lock token, then the AMQP message: header, delivery annotations (the lock token
    again), then the rest as the broker sent it. The SDK keeps no raw bytes, so the
    received pyamqp message (private `_message`) is re-encoded section by section, in
    the AMQP order (pyamqp's encoder would put delivery annotations last)."""
    return encode_model_binding(message._message, uuid.UUID(str(message.lock_token)))


def encode_model_binding(amqp: Message, lock: uuid.UUID) -> bytes:
    """`model_binding_content` for a pyamqp message and its lock token."""
    # The host's .NET SDK reports the delivery count from 1, as in trigger metadata.
    header = (amqp.header or Header())._replace(
        delivery_count=((amqp.header and amqp.header.delivery_count) or 0) + 1
    )
    sections = (
        Message(header=header),
        Message(delivery_annotations={LOCK_TOKEN_KEY: lock}),
        amqp._replace(
            header=None,
            delivery_annotations=None,
            message_annotations=_typed(amqp.message_annotations),
            application_properties=_typed(amqp.application_properties),
        ),
    )
    return lock.bytes_le + b"".join(bytes(encode_payload(bytearray(), section)) for section in sections)


_TIMESTAMPS = {b"x-opt-enqueued-time", b"x-opt-locked-until", b"x-opt-scheduled-enqueue-time"}
_INT32 = range(-(2**31), 2**31)


def _typed(values: dict[Any, Any] | None) -> dict[Any, Any] | None:
    """Decoding dropped the AMQP types of integers (a timestamp reads as an int); give
    them back the ones Service Bus sends, so the bytes decode to the same values."""
    if values is None:
        return None
    out: dict[Any, Any] = {}
    for key, value in values.items():
        name = key.encode() if isinstance(key, str) else key
        if isinstance(value, int) and not isinstance(value, bool):
            if name in _TIMESTAMPS:
                value = {TYPE: AMQPTypes.timestamp, VALUE: value}
            elif value not in _INT32 or name == b"x-opt-sequence-number":
                value = {TYPE: AMQPTypes.long, VALUE: value}
        out[key] = value
    return out


def decode_trigger(message: ServiceBusReceivedMessage, pytype: Any) -> Any:
    """The trigger argument as the worker builds it: the registry's converter for
    `serviceBusTrigger` decoding model binding data (azure_functions_runtime's
    `deferred_bindings_decode`)."""
    converter = meta.get_binding_registry().get("serviceBusTrigger")
    datum = Datum(ModelBindingData(model_binding_content(message)), "model_binding_data")
    return converter.decode(datum, trigger_metadata={}, pytype=pytype)


@dataclass(slots=True)
class _Held:
    receiver: ServiceBusReceiver
    message: ServiceBusReceivedMessage
    still_valid: Callable[[], bool]  # False once the receiver reconnected (see host._settle)


class SettlementServer:
    """A loopback gRPC `Settlement` service settling held messages by lock token.

    `start()` also points the extension's client at it the way the worker is pointed:
    the worker's command-line arguments, read by `ServiceBusMessageActions()`. One
    server per process (the client is a process-wide singleton, as in the worker)."""

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}
        self._server: Any = None
        self.port = 0
        self.settled: Counter[str] = Counter()  # complete / abandon / deadletter that reached the broker
        self.refused: Counter[str] = Counter()  # unknown or already-settled lock tokens, failed settles

    async def start(self) -> None:
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_LENGTH),
                ("grpc.max_receive_message_length", MAX_MESSAGE_LENGTH),
            ]
        )
        settlement_pb2_grpc.add_SettlementServicer_to_server(_Servicer(self), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        _point_worker_at("127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=1.0)

    def hold(
        self,
        receiver: ServiceBusReceiver,
        message: ServiceBusReceivedMessage,
        still_valid: Callable[[], bool],
    ) -> str:
        token = str(message.lock_token)
        self._held[token] = _Held(receiver, message, still_valid)
        return token

    def release(self, token: str) -> bool:
        """After the invocation: True if the function settled the message."""
        return self._held.pop(token, None) is None

    async def settle(self, name: str, token: str, context: Any, **kwargs: Any) -> empty_pb2.Empty:
        held = self._held.pop(token, None)
        if held is None:
            self.refused[name] += 1
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no unsettled message holds lock {token}")
        assert held is not None
        if not held.still_valid():
            self.refused[name] += 1
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the message's receiver reconnected")
        action = {
            "complete": held.receiver.complete_message,
            "abandon": held.receiver.abandon_message,
            "deadletter": held.receiver.dead_letter_message,
        }[name]
        try:
            await action(held.message, **kwargs)
        except Exception as exc:  # lock lost, receiver closed: the worker gets the error
            self.refused[name] += 1
            await context.abort(grpc.StatusCode.ABORTED, f"{name} failed: {type(exc).__name__}")
        self.settled[name] += 1
        return empty_pb2.Empty()


class _Servicer(settlement_pb2_grpc.SettlementServicer):  # type: ignore[misc]
    def __init__(self, server: SettlementServer) -> None:
        self._server = server

    async def Complete(self, request: Any, context: Any) -> empty_pb2.Empty:
        return await self._server.settle("complete", request.locktoken, context)

    async def Abandon(self, request: Any, context: Any) -> empty_pb2.Empty:
        return await self._server.settle("abandon", request.locktoken, context)

    async def Deadletter(self, request: Any, context: Any) -> empty_pb2.Empty:
        reason = request.deadletterReason.value if request.HasField("deadletterReason") else None
        description = (
            request.deadletterErrorDescription.value
            if request.HasField("deadletterErrorDescription")
            else None
        )
        return await self._server.settle(
            "deadletter", request.locktoken, context, reason=reason, error_description=description
        )


def settlement_client() -> Any:
    """What the worker passes for the actions parameter (`get_settlement_client()`)."""
    return meta.get_binding_registry().get("serviceBusClient").get_client()


def _point_worker_at(host: str, port: int) -> None:
    # The extension reads its host's address from the worker process's command line.
    argv = list(sys.argv)
    for flag, value in (
        ("--host", host),
        ("--port", str(port)),
        ("--functions-grpc-max-message-length", str(MAX_MESSAGE_LENGTH)),
    ):
        if flag in argv:
            i = argv.index(flag)
            argv[i + 1] = value
        else:
            argv += [flag, value]
    sys.argv[:] = argv
    ServiceBusMessageActions._instance = None  # a new server (a new test) gets a new channel


__all__ = [
    "ModelBindingData",
    "SettlementServer",
    "decode_trigger",
    "encode_model_binding",
    "model_binding_content",
    "settlement_client",
    "settlement_param",
]
