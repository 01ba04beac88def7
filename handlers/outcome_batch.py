"""Outcome events into a Service Bus message batch, each encoded once.

`ServiceBusMessageBatch.add_message` (azure-servicebus 7.15) builds a
`ServiceBusMessage`, an `AmqpAnnotatedMessage` and the outgoing pyamqp `Message`
per event, then encodes the message twice: once to measure it, once to append it.
That was half the CPU of a coalesced publish (docs/publish-profile.md). Here the
pyamqp `Message` is built directly from the event and encoded once by the SDK's
own encoder; its length drives the same size check with the same overheads, so a
batch still never outgrows the link's limit, and what goes on the wire is
byte-for-byte what `add_message` would have produced (pinned by
tests/unit/test_outcome_batch.py against the SDK's path).

It touches the batch's private fields, so it is tied to the pinned SDK version;
with azure-core tracing on (which adds per-message properties in `add_message`)
the caller uses the SDK's own path instead.
"""

from __future__ import annotations

from typing import Any

from azure.core.settings import settings as azure_settings
from azure.servicebus import ServiceBusMessageBatch
from azure.servicebus._common.constants import _BATCH_MESSAGE_OVERHEAD_COST
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._pyamqp.message import Message, Properties
from azure.servicebus._pyamqp.utils import set_message_properties

from handlers.events import EVENT_CONTENT_TYPE, OutcomeEvent


def sdk_tracing_enabled() -> bool:
    """azure-core tracing adds per-message properties only the SDK's path writes."""
    return azure_settings.tracing_implementation() is not None


def session_of(event: OutcomeEvent) -> str:
    return event.job_id or "none"


def amqp_message(event: OutcomeEvent, *, session: bool) -> Message:
    """The pyamqp message `to_service_bus_message(event)` becomes on the way out."""
    return Message(
        properties=Properties(
            message_id=event.id,  # deterministic: the topic's duplicate detection drops republished events
            subject=event.outcome.value,
            correlation_id=event.source_message_id,
            content_type=EVENT_CONTENT_TYPE,
            group_id=session_of(event) if session else None,
        ),
        application_properties=event.application_properties(),  # type: ignore[arg-type]
        data=[event.body],
    )


def encode(message: Message) -> bytearray:
    output = bytearray()
    encode_payload(output, message)
    return output


def try_add(batch: ServiceBusMessageBatch, event: OutcomeEvent, *, session: bool) -> bool:
    """Append the event; False (batch unchanged) when it would outgrow the batch.

    Mirrors `ServiceBusMessageBatch._add`: the same size arithmetic, the same
    envelope properties from the first message.
    """
    message = amqp_message(event, session=session)
    encoded = encode(message)
    size = len(encoded)
    size_after_add: int = batch._size + size + _BATCH_MESSAGE_OVERHEAD_COST[0 if size < 256 else 1]
    if size_after_add > batch.max_size_in_bytes:
        return False
    envelope: list[Any] = batch._message
    envelope[5].append(encoded)
    batch._size = size_after_add
    batch._count += 1
    if batch._count == 1:  # as the SDK: the envelope carries the first message's ids
        properties: list[Any] = [None] * 13
        properties[0] = message.properties.message_id  # type: ignore[union-attr]
        properties[10] = message.properties.group_id  # type: ignore[union-attr]
        set_message_properties(envelope, properties)
    return True
