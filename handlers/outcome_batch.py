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

It touches the batch's private fields, so it is tied to the pinned SDK version.
With azure-core tracing on it is still used: the event already carries its trace
context (`Diagnostic-Id`, from the project's publish span), so the SDK's
per-message span is given up (docs/publish-profile.md).
"""

from __future__ import annotations

from typing import Any

from azure.servicebus import ServiceBusMessageBatch
from azure.servicebus._common.constants import _BATCH_MESSAGE_OVERHEAD_COST, MESSAGE_PROPERTY_MAX_LENGTH
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._pyamqp.message import Message, Properties
from azure.servicebus._pyamqp.utils import set_message_properties

from handlers.events import EVENT_CONTENT_TYPE, OutcomeEvent


def session_of(event: OutcomeEvent) -> str:
    return event.job_id or "none"


def amqp_message(event: OutcomeEvent, *, session: bool) -> Message:
    """The pyamqp message the SDK builds from the event on the way out (the reference:
    `to_service_bus_message` in tests/sdk_reference.py)."""
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
    """The SDK's generic encoder (the reference `encode_outcome` is tested against)."""
    output = bytearray()
    encode_payload(output, message)
    return output


# AMQP 1.0 type codes (OASIS AMQP 1.0, part 1, 1.6) as pyamqp's encoder chooses them:
# the smallest width that fits, every Properties field written (absent ones as null).
_NULL = b"\x40"
_SECTION = b"\x00\x53"  # a described section: descriptor, smallulong code
_PROPERTIES, _APPLICATION_PROPERTIES, _DATA = 0x73, 0x74, 0x75
_CONTENT_TYPE = b"\xa3" + bytes((len(EVENT_CONTENT_TYPE),)) + EVENT_CONTENT_TYPE.encode("ascii")


def _variable(out: bytearray, raw: bytes, small: int, large: int) -> None:
    size = len(raw)
    if size <= 255:
        out += bytes((small, size))
    else:
        out.append(large)
        out += size.to_bytes(4, "big")
    out += raw


def _string(out: bytearray, value: str) -> None:
    _variable(out, value.encode("utf-8"), 0xA1, 0xB1)


def _compound(out: bytearray, body: bytes | bytearray, count: int, small: int, large: int) -> None:
    if count <= 255 and len(body) < 255:
        out += bytes((small, len(body) + 1, count))
    else:
        out.append(large)
        out += (len(body) + 4).to_bytes(4, "big")
        out += count.to_bytes(4, "big")
    out += body


def _int(out: bytearray, value: int) -> None:
    if -128 <= value <= 127:
        out += b"\x54" + value.to_bytes(1, "big", signed=True)
    else:
        try:
            out += b"\x71" + value.to_bytes(4, "big", signed=True)
        except OverflowError as exc:  # as pyamqp: an int property must fit 32 bits
            raise ValueError(f"Value supplied for int invalid: {value}") from exc


def encode_outcome(event: OutcomeEvent, *, session: bool) -> bytearray:
    """`encode(amqp_message(event))`, written directly for this one message shape:
    about a quarter of the SDK encoder's cost (docs/publish-profile.md)."""
    if len(event.id) > MESSAGE_PROPERTY_MAX_LENGTH:  # a uuid: never, but as ServiceBusMessage
        raise ValueError(f"message_id cannot be longer than {MESSAGE_PROPERTY_MAX_LENGTH} characters.")
    fields = bytearray()
    _string(fields, event.id)  # message-id
    fields += _NULL * 2  # user-id, to
    _string(fields, event.outcome.value)  # subject
    fields += _NULL  # reply-to
    _string(fields, event.source_message_id)  # correlation-id
    fields += _CONTENT_TYPE
    fields += _NULL * 3  # content-encoding, absolute-expiry-time, creation-time
    if session:
        group = session_of(event)
        if len(group) > MESSAGE_PROPERTY_MAX_LENGTH:  # as ServiceBusMessage refuses it
            raise ValueError(f"session_id cannot be longer than {MESSAGE_PROPERTY_MAX_LENGTH} characters.")
        _string(fields, group)  # group-id
    else:
        fields += _NULL
    fields += _NULL * 2  # group-sequence, reply-to-group-id
    out = bytearray(_SECTION)
    out.append(_PROPERTIES)
    _compound(out, fields, 13, 0xC0, 0xD0)

    props = event.application_properties()
    entries = bytearray()
    for key, value in props.items():
        _string(entries, key)
        if isinstance(value, str):
            _string(entries, value)
        else:
            _int(entries, value)
    out += _SECTION
    out.append(_APPLICATION_PROPERTIES)
    _compound(out, entries, 2 * len(props), 0xC1, 0xD1)

    out += _SECTION
    out.append(_DATA)
    _variable(out, event.body, 0xA0, 0xB0)
    return out


def try_add(batch: ServiceBusMessageBatch, event: OutcomeEvent, *, session: bool) -> bool:
    """Append the event; False (batch unchanged) when it would outgrow the batch.

    Mirrors `ServiceBusMessageBatch._add`: the same size arithmetic, the same
    envelope properties from the first message.
    """
    encoded = encode_outcome(event, session=session)
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
        properties[0] = event.id
        properties[10] = session_of(event) if session else None
        set_message_properties(envelope, properties)
    return True
