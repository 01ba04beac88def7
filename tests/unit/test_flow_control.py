"""The asyncio gate (handlers/flow_control.py): order and accounting, never timing."""

from __future__ import annotations

import asyncio
import time

import pytest

from handlers.flow import FlowParams, Signal
from handlers.flow_control import FlowControl, origin_of

FAR = 3600.0


def test_origin_is_the_account() -> None:
    assert origin_of("https://a.westeurope.batch.azure.com/jobs/x?api-version=1") == (
        "https://a.westeurope.batch.azure.com"
    )
    assert origin_of("https://localhost:8443/jobs/y") == "https://localhost:8443"
    flow = FlowControl()
    assert flow.gate("https://a.b.batch.azure.com/jobs/1") is flow.gate("https://a.b.batch.azure.com/jobs/2")
    assert flow.gate("https://a.b.batch.azure.com/jobs/1") is not flow.gate("https://c.b.batch.azure.com/j")


async def test_waiters_get_freed_slots_in_order_and_nothing_leaks() -> None:
    gate = FlowControl(FlowParams(initial_limit=1)).gate("https://a/jobs/x")
    first = await gate.acquire(time.monotonic() + FAR)
    assert first == 0
    order: list[int] = []

    async def later(tag: int) -> None:
        ticket = await gate.acquire(time.monotonic() + FAR)
        assert ticket is not None
        order.append(tag)
        gate.release(ticket, Signal.ok)

    tasks = [asyncio.create_task(later(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert order == []  # all wait behind the one slot
    gate.release(first, Signal.ok)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert gate.state.in_flight == 0


async def test_a_retry_after_pauses_every_message_to_that_account_but_no_other() -> None:
    flow = FlowControl()
    a, b = flow.gate("https://a/jobs/1"), flow.gate("https://b/jobs/1")
    ticket = await a.acquire(time.monotonic() + FAR)
    assert ticket is not None
    a.release(ticket, Signal.throttled, retry_after=0.2)
    assert a.state.limit == 8 and a.state.paused_until > time.monotonic()
    waiting = asyncio.create_task(a.acquire(time.monotonic() + FAR))
    await asyncio.sleep(0)
    assert not waiting.done()  # held by the pause
    other = await b.acquire(time.monotonic() + FAR)  # another account flows meanwhile
    assert other is not None and not waiting.done()
    assert await waiting is not None  # woken when the pause ends
    assert time.monotonic() >= a.state.paused_until


async def test_a_pause_past_the_deadline_is_not_waited_for() -> None:
    gate = FlowControl().gate("https://a/jobs/1")
    ticket = await gate.acquire(time.monotonic() + FAR)
    assert ticket is not None
    gate.release(ticket, Signal.throttled, retry_after=30.0)
    assert await gate.acquire(time.monotonic() + 1.0) is None
    assert gate.state.in_flight == 0


async def test_a_wait_that_times_out_or_is_cancelled_leaves_no_waiter_and_no_slot() -> None:
    gate = FlowControl(FlowParams(initial_limit=1)).gate("https://a/jobs/1")
    held = await gate.acquire(time.monotonic() + FAR)
    assert held is not None
    assert await gate.acquire(time.monotonic() + 0.01) is None  # timed out behind the slot
    cancelled = asyncio.create_task(gate.acquire(time.monotonic() + FAR))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.release(held, Signal.ok)
    assert gate.state.in_flight == 0
    assert await gate.acquire(time.monotonic() + FAR) is not None  # the slot is free again
