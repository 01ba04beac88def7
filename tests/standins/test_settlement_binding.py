"""standins/functions_host/settlement.py: the model binding data the local host sends
decodes, through the unmodified extension, to the message the broker delivered."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus._pyamqp.message import Header, Message, Properties
from azurefunctions.extensions.base import Datum
from azurefunctions.extensions.bindings import servicebus
from azurefunctions.extensions.bindings.servicebus.serviceBusMessageActions import SettlementError
from hypothesis import given
from hypothesis import strategies as st

from standins.functions_host.settlement import (
    ModelBindingData,
    SettlementServer,
    encode_model_binding,
    settlement_client,
    settlement_param,
)
from tests.e2e.conftest import prop

ENQUEUED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# No NUL: uamqp's decoder (C strings) cuts a string at the first one (README, "leaves out").
names = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=20,
)
values = st.one_of(names, st.integers(-(2**63), 2**63 - 1), st.booleans())


def decode(content: bytes) -> Any:
    converter = servicebus.ServiceBusConverter
    datum = Datum(ModelBindingData(content), "model_binding_data")
    return converter.decode(datum, trigger_metadata={}, pytype=servicebus.ServiceBusReceivedMessage)


@given(
    body=st.binary(max_size=2000),
    message_id=names,
    session_id=st.none() | names,
    properties=st.dictionaries(names, values, max_size=6),
    sequence=st.integers(1, 2**62),
    delivery=st.integers(0, 100),
)
def test_what_the_extension_decodes_is_what_the_broker_sent(
    body: bytes,
    message_id: str,
    session_id: str | None,
    properties: dict[str, Any],
    sequence: int,
    delivery: int,
) -> None:
    lock = uuid.uuid4()
    millis = int(ENQUEUED.timestamp() * 1000)
    amqp = Message(
        header=Header(delivery_count=delivery, durable=True),
        message_annotations={
            b"x-opt-enqueued-time": millis,  # decoded as plain ints, as the SDK hands them over
            b"x-opt-sequence-number": sequence,
            b"x-opt-locked-until": millis + 60_000,
        },
        properties=Properties(
            message_id=message_id,
            content_type=b"application/json",
            correlation_id=b"c-1",
            group_id=session_id,
        ),
        application_properties=properties,
        data=[body],
    )
    got = decode(encode_model_binding(amqp, lock))
    assert isinstance(got, ServiceBusReceivedMessage)
    assert str(got.lock_token) == str(lock)
    assert b"".join(got.body) == body
    assert got.message_id == message_id
    assert got.session_id == session_id
    assert got.content_type == "application/json"
    assert got.sequence_number == sequence
    assert got.enqueued_time_utc == ENQUEUED
    assert got.locked_until_utc == ENQUEUED + timedelta(minutes=1)
    assert {name: prop(got, name) for name in properties} == properties
    # The extension reads from after the lock token, which follows the header: the
    # delivery count is lost, as with the real host (docs/host.md).
    assert got.delivery_count is None


def test_the_settlement_parameter_is_found_by_its_annotation() -> None:
    async def with_actions(
        received_message: servicebus.ServiceBusReceivedMessage,
        message_actions: servicebus.ServiceBusMessageActions,
    ) -> None: ...

    async def without(msg: str) -> None: ...

    async def two_unbound(msg: str, a: servicebus.ServiceBusMessageActions, b: int) -> None: ...

    assert settlement_param(with_actions, "received_message") == "message_actions"
    assert settlement_param(without, "msg") is None
    assert settlement_param(two_unbound, "msg") is None


class _Receiver:
    """Records what the Settlement server asks of the broker receiver."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def complete_message(self, message: Any) -> None:
        self.calls.append(("complete", message.lock_token))

    async def abandon_message(self, message: Any) -> None:
        self.calls.append(("abandon", message.lock_token))

    async def dead_letter_message(
        self, message: Any, reason: str | None = None, error_description: str | None = None
    ) -> None:
        self.calls.append(("deadletter", message.lock_token, reason, error_description))


class _Held:
    def __init__(self) -> None:
        self.lock_token = str(uuid.uuid4())
        self.message_id = "m-1"


async def test_the_server_settles_by_lock_token_once_through_the_extension_client() -> None:
    server = SettlementServer()
    await server.start()
    try:
        actions = settlement_client()
        receiver = _Receiver()
        first, second, moved = _Held(), _Held(), {"valid": True}
        server.hold(receiver, first, lambda: True)  # type: ignore[arg-type]
        server.hold(receiver, second, lambda: moved["valid"])  # type: ignore[arg-type]
        await asyncio.to_thread(
            actions.deadletter, first, deadletter_reason="ServerBusy", deadletter_error_description="why"
        )
        with pytest.raises(SettlementError, match="NOT_FOUND"):
            await asyncio.to_thread(actions.complete, first)  # settled already: refused, not sent
        moved["valid"] = False  # its receiver reconnected
        with pytest.raises(SettlementError, match="FAILED_PRECONDITION"):
            await asyncio.to_thread(actions.abandon, second)
        assert receiver.calls == [("deadletter", first.lock_token, "ServerBusy", "why")]
        assert dict(server.settled) == {"deadletter": 1}
        assert dict(server.refused) == {"complete": 1, "abandon": 1}
        assert server.release(first.lock_token) and server.release(second.lock_token)
    finally:
        await server.stop()
