"""handlers/settlement.py and the handler's explicit-settlement paths
(`JOB_UPDATES_SETTLEMENT=actions`), against a fake of the extension's actions."""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.servicebus._pyamqp.message import Header, Message, Properties
from azurefunctions.extensions.base import Datum
from azurefunctions.extensions.bindings import servicebus
from hypothesis import given
from hypothesis import strategies as st

from handlers.errors import AlreadySettled, RetryLater
from handlers.lineage import (
    DEAD_LETTER_DESCRIPTION,
    DEAD_LETTER_REASON,
    ORIGINAL_MESSAGE_ID,
    dead_letter_message_id,
)
from handlers.plan import Settle
from handlers.settlement import ActionsSettlement, run_settled
from handlers.trigger import on_job_update_settled, received_sdk
from standins.functions_host.settlement import ModelBindingData, encode_model_binding
from tests.unit import test_lineage_and_copies as copies
from tests.unit.test_handler_loop import error, ok
from tests.unit.test_lineage_and_copies import FakeRequeue, inbound

handler_for = copies.handler_for  # the fixture: a handler over a fake Batch and requeue
MESSAGE = object()  # the extension's message: passed through untouched


@dataclass
class FakeActions:
    """ServiceBusMessageActions' shape; records each call and the thread it ran on."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)

    def _record(self, *call: Any) -> None:
        self.threads.append(threading.get_ident())
        if call[0] in self.fail:
            raise RuntimeError(f"{call[0]} failed")  # SettlementError's stand-in
        self.calls.append(call)

    def complete(self, message: Any) -> None:
        self._record("complete", message)

    def abandon(self, message: Any) -> None:
        self._record("abandon", message)

    def deadletter(
        self,
        message: Any,
        deadletter_reason: str | None = None,
        deadletter_error_description: str | None = None,
    ) -> None:
        self._record("deadletter", message, deadletter_reason, deadletter_error_description)


# --- the module ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "call"),
    [
        (Settle.complete, ("complete", MESSAGE)),
        (Settle.reschedule, ("complete", MESSAGE)),
        (Settle.retry, ("abandon", MESSAGE)),
        (Settle.give_up, ("deadletter", MESSAGE, "ServerBusy", "given up: last HTTP 503")),
    ],
)
async def test_each_plan_settlement_makes_one_call(how: Settle, call: tuple[Any, ...]) -> None:
    actions = FakeActions()
    settlement = ActionsSettlement(actions, MESSAGE)
    await settlement.settle(how, reason="ServerBusy", description="given up: last HTTP 503")
    assert actions.calls == [call]
    assert settlement.settled == call[0]


async def test_calls_run_off_the_event_loop() -> None:
    actions = FakeActions()
    await ActionsSettlement(actions, MESSAGE).settle(Settle.complete)
    assert actions.threads and actions.threads[0] != threading.get_ident()


@given(how=st.sampled_from(list(Settle)), again=st.sampled_from(list(Settle)))
def test_a_second_settlement_is_refused_and_never_sent(how: Settle, again: Settle) -> None:
    async def run() -> None:
        actions = FakeActions()
        settlement = ActionsSettlement(actions, MESSAGE)
        await settlement.settle(how, reason="r", description="d")
        with pytest.raises(AlreadySettled):
            await settlement.settle(again, reason="r", description="d")
        with pytest.raises(AlreadySettled):
            await settlement.abandon()
        assert len(actions.calls) == 1

    asyncio.run(run())


@given(
    reason=st.text(min_size=1, max_size=40),
    description=st.text(min_size=1, max_size=200),
)
def test_give_up_passes_reason_and_description_unchanged(reason: str, description: str) -> None:
    actions = FakeActions()
    asyncio.run(
        ActionsSettlement(actions, MESSAGE).settle(Settle.give_up, reason=reason, description=description)
    )
    assert actions.calls == [("deadletter", MESSAGE, reason, description)]


async def test_a_crash_abandons_and_still_raises() -> None:
    actions = FakeActions()
    settlement = ActionsSettlement(actions, MESSAGE)

    async def crash() -> None:
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await run_settled(settlement, crash())
    assert actions.calls == [("abandon", MESSAGE)]


async def test_retry_later_abandons() -> None:
    actions = FakeActions()
    settlement = ActionsSettlement(actions, MESSAGE)

    async def transient() -> None:
        raise RetryLater("ServerBusy")

    with pytest.raises(RetryLater):
        await run_settled(settlement, transient())
    assert actions.calls == [("abandon", MESSAGE)]


async def test_work_that_settled_then_raised_is_not_settled_again() -> None:
    actions = FakeActions()
    settlement = ActionsSettlement(actions, MESSAGE)

    async def settle_then_crash() -> None:
        await settlement.settle(Settle.complete)
        raise ValueError("after")

    with pytest.raises(ValueError, match="after"):
        await run_settled(settlement, settle_then_crash())
    assert actions.calls == [("complete", MESSAGE)]


async def test_returning_without_settling_abandons() -> None:
    actions = FakeActions()
    settlement = ActionsSettlement(actions, MESSAGE)

    async def forgot() -> str:
        return "done"

    assert await run_settled(settlement, forgot()) == "done"
    assert actions.calls == [("abandon", MESSAGE)]


async def test_a_failed_complete_is_followed_by_an_abandon_and_the_error_raised() -> None:
    actions = FakeActions(fail={"complete"})
    settlement = ActionsSettlement(actions, MESSAGE)
    with pytest.raises(RuntimeError, match="complete failed"):
        await run_settled(settlement, settlement.settle(Settle.complete))
    assert actions.calls == [("abandon", MESSAGE)]


async def test_a_failed_abandon_is_logged_not_raised_over_the_crash(caplog: pytest.LogCaptureFixture) -> None:
    actions = FakeActions(fail={"abandon"})

    async def crash() -> None:
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await run_settled(ActionsSettlement(actions, MESSAGE), crash())
    assert "abandoning a message" in caplog.text and "RuntimeError" in caplog.text


# --- the handler with explicit settlement ----------------------------------------------


async def test_applied_is_completed(handler_for: Any) -> None:
    actions = FakeActions()
    handler, publisher = handler_for(ok(), requeue=FakeRequeue())
    await handler.handle(inbound(), None, ActionsSettlement(actions, MESSAGE))
    assert [call[0] for call in actions.calls] == ["complete"]
    assert len(publisher.events) == 1


async def test_a_scheduled_copy_then_complete(handler_for: Any) -> None:
    actions, requeue = FakeActions(), FakeRequeue()
    handler, publisher = handler_for(error(429, "TooManyRequests", retry_after="30"), requeue=requeue)
    await handler.handle(inbound(), None, ActionsSettlement(actions, MESSAGE))
    assert len(requeue.copies) == 1 and publisher.events == []
    assert actions.calls == [("complete", MESSAGE)]


async def test_a_copy_that_cannot_be_scheduled_is_abandoned(handler_for: Any) -> None:
    actions = FakeActions()
    handler, _ = handler_for(error(429, "TooManyRequests", retry_after="30"), requeue=FakeRequeue(fail=True))
    settlement = ActionsSettlement(actions, MESSAGE)
    with pytest.raises(RetryLater):
        await run_settled(settlement, handler.handle(inbound(), None, settlement))
    assert actions.calls == [("abandon", MESSAGE)]


async def test_give_up_publishes_first_then_dead_letters_with_the_plan_reason_and_no_copy(
    handler_for: Any,
) -> None:
    order: list[str] = []
    actions, requeue = FakeActions(), FakeRequeue()
    handler, publisher = handler_for(
        error(503, "ServerBusy", retry_after="30"), requeue=requeue, JOB_UPDATES_MAX_SCHEDULED_COPIES=5
    )
    publish = publisher.publish

    async def recording_publish(events: Any) -> None:
        order.append("publish")
        await publish(events)

    publisher.publish = recording_publish  # type: ignore[method-assign]
    deadletter = actions.deadletter

    def recording_deadletter(*args: Any, **kwargs: Any) -> None:
        order.append("deadletter")
        deadletter(*args, **kwargs)

    actions.deadletter = recording_deadletter  # type: ignore[method-assign]
    await handler.handle(inbound(copy=5), None, ActionsSettlement(actions, MESSAGE))
    assert order == ["publish", "deadletter"]
    ((name, _, reason, description),) = actions.calls
    assert (name, reason) == ("deadletter", "ServerBusy")
    assert description.startswith("given up: last HTTP 503 ServerBusy; ")
    assert requeue.dead == [] and requeue.copies == []  # no dead-letter copy in this mode


async def test_a_transient_without_copies_is_abandoned_by_run_settled(handler_for: Any) -> None:
    actions = FakeActions()
    handler, publisher = handler_for(
        *[error(503, "ServerBusy", retry_after="0")] * 3,
        requeue=FakeRequeue(),
        JOB_UPDATES_SCHEDULED_RETRIES=False,
    )
    settlement = ActionsSettlement(actions, MESSAGE)
    with pytest.raises(RetryLater):
        await run_settled(settlement, handler.handle(inbound(), None, settlement))
    assert actions.calls == [("abandon", MESSAGE)] and publisher.events == []


# --- the trigger's adapter for the extension's message -----------------------------------


def sdk_message(message_id: str, properties: dict[str, Any], body: bytes = b"{}") -> Any:
    """An azure-servicebus message as the extension decodes it from model binding data."""
    millis = int(datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
    amqp = Message(
        header=Header(delivery_count=3),
        message_annotations={b"x-opt-enqueued-time": millis},
        properties=Properties(message_id=message_id, content_type=b"application/json", subject=b"s"),
        application_properties=properties,
        data=[body],
    )
    datum = Datum(ModelBindingData(encode_model_binding(amqp, uuid.uuid4())), "model_binding_data")
    return servicebus.ServiceBusConverter.decode(
        datum, trigger_metadata={}, pytype=servicebus.ServiceBusReceivedMessage
    )


def test_the_extensions_message_adapts_like_the_functions_one() -> None:
    envelope, got = received_sdk(sdk_message("m-7", {"traceparent": "00-ab-cd-01", "n": 5}, b'{"a": 1}'))
    assert (got.message_id, got.body, got.copy) == ("m-7", b'{"a": 1}', 0)
    assert got.delivery_count == 1  # the extension loses the header: read as the first delivery
    assert got.enqueued_at is not None and got.enqueued_at.year == 2026
    assert envelope.application_properties == {"traceparent": "00-ab-cd-01", "n": 5}  # str keys
    assert (envelope.content_type, envelope.subject) == ("application/json", "s")


async def test_an_old_dead_letter_copy_is_dead_lettered_with_its_own_reason() -> None:
    properties = {
        ORIGINAL_MESSAGE_ID: "m-1",
        DEAD_LETTER_REASON: "ServerBusy",
        DEAD_LETTER_DESCRIPTION: "why",
    }
    message = sdk_message(dead_letter_message_id("m-1"), properties)
    actions = FakeActions()
    await on_job_update_settled(message, actions)  # no runtime: no Batch call, no event
    assert actions.calls == [("deadletter", message, "ServerBusy", "why")]
