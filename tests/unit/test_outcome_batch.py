"""The one-encode batch path (handlers/outcome_batch.py) against the SDK's own.

Whatever the event, the batch it builds must be what `ServiceBusMessageBatch.
add_message(to_service_bus_message(event))` builds: the same envelope, the same
encoded messages byte for byte, the same size accounting, and the same point at
which a batch is full. No sockets: batches are built and encoded in memory.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.servicebus import ServiceBusMessageBatch
from azure.servicebus._pyamqp.message import BatchMessage
from azure.servicebus._pyamqp.utils import get_message_encoded_size
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.events import OutcomeEvent
from handlers.outcome_batch import amqp_message, encode, encode_outcome, try_add
from handlers.outcomes import Outcome
from tests.sdk_reference import to_service_bus_message

text = st.text(max_size=80)  # long enough for the 32-bit list, map and string forms
events = st.builds(
    OutcomeEvent,
    id=st.uuids().map(str),
    outcome=st.sampled_from(Outcome),
    body=st.binary(max_size=600),  # across the 256-byte step in the SDK's per-message overhead
    source_message_id=text,
    job_id=st.none() | text,
    account=st.none() | text,
    http_status=st.none() | st.integers(min_value=-(2**31), max_value=2**31 - 1),  # both int widths
    error_code=st.none() | text,
    traceparent=st.none() | st.just("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
)


def sdk_batch(
    evts: list[OutcomeEvent], *, session: bool, max_size: int | None = None
) -> ServiceBusMessageBatch:
    batch = ServiceBusMessageBatch(max_size_in_bytes=max_size)
    for event in evts:
        batch.add_message(to_service_bus_message(event, session=session))
    return batch


def wire(batch: ServiceBusMessageBatch) -> bytes:
    """The bytes the sender transfers for this batch."""
    envelope: list[Any] = batch._message  # type: ignore[assignment]
    message = BatchMessage(*envelope)
    return bytes(encode(message))


@settings(max_examples=200, deadline=None)
@given(event=events, session=st.booleans())
def test_one_message_is_what_the_sdk_sends(event: OutcomeEvent, session: bool) -> None:
    ours = amqp_message(event, session=session)
    sdk = to_service_bus_message(event, session=session)
    from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

    theirs = PyamqpTransport.to_outgoing_amqp_message(sdk.raw_amqp_message)
    assert ours == theirs
    assert len(encode(ours)) == get_message_encoded_size(theirs)
    assert encode_outcome(event, session=session) == encode(theirs)  # the direct encoder, byte for byte


@pytest.mark.parametrize("session", [False, True])
@pytest.mark.parametrize("size", [0, 1, 254, 255, 256, 300])
@pytest.mark.parametrize("status", [None, -129, -128, 127, 128, 200, 2**31 - 1])
def test_every_width_the_encoder_can_choose(size: int, status: int | None, session: bool) -> None:
    """Each 8-bit/32-bit boundary of strings, binary, list, map and int, on purpose
    (random text seldom reaches the 32-bit forms)."""
    event = OutcomeEvent(
        id="5d368e55-dcb2-55a7-a95e-1f259e8ecab3",
        outcome=Outcome.failed,
        body=b"{" * size,
        source_message_id="m" * size,
        job_id="j" * size if size else None,
        account="a" * size,
        http_status=status,
        error_code="é" * size,
    )
    from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

    try:
        sdk = to_service_bus_message(event, session=session)
    except ValueError:  # a session id past 128 characters: the SDK refuses it, and so do we
        with pytest.raises(ValueError, match="session_id"):
            encode_outcome(event, session=session)
        return
    theirs = PyamqpTransport.to_outgoing_amqp_message(sdk.raw_amqp_message)
    assert encode_outcome(event, session=session) == encode(theirs)


@settings(max_examples=100, deadline=None)
@given(evts=st.lists(events, min_size=1, max_size=20), session=st.booleans())
def test_batch_is_byte_for_byte_the_sdk_batch(evts: list[OutcomeEvent], session: bool) -> None:
    ours = ServiceBusMessageBatch()
    for event in evts:
        assert try_add(ours, event, session=session)
    theirs = sdk_batch(evts, session=session)
    assert len(ours) == len(theirs) == len(evts)
    assert ours.size_in_bytes == theirs.size_in_bytes
    assert wire(ours) == wire(theirs)


@settings(max_examples=100, deadline=None)
@given(
    evts=st.lists(events, min_size=1, max_size=12),
    max_size=st.integers(min_value=200, max_value=4000),
    session=st.booleans(),
)
def test_a_full_batch_refuses_where_the_sdk_refuses(
    evts: list[OutcomeEvent], max_size: int, session: bool
) -> None:
    ours = ServiceBusMessageBatch(max_size_in_bytes=max_size)
    theirs = ServiceBusMessageBatch(max_size_in_bytes=max_size)
    for event in evts:
        before = wire(ours)
        added = try_add(ours, event, session=session)
        try:
            theirs.add_message(to_service_bus_message(event, session=session))
            sdk_added = True
        except ValueError:
            sdk_added = False
        assert added == sdk_added
        if not added:
            assert wire(ours) == before  # a refused event leaves the batch as it was
        assert ours.size_in_bytes == theirs.size_in_bytes <= max_size
    assert wire(ours) == wire(theirs)
