"""ServiceBusPublisher with more than one topic link, socket-free (fake client/senders).

What must hold: with a free link an event goes out at once instead of waiting behind the
transfer in flight; events that arrive while every link is busy go out together in the
next free link's transfer; a failed transfer fails exactly its own callers and drops only
its own link; nobody is told "published" before their transfer is accepted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.errors import PublishInterrupted
from handlers.events import OutcomeEvent, build_event
from handlers.outcomes import Outcome, Result
from handlers.publisher import ServiceBusPublisher


class Batch:
    """Stands for the SDK's batch: which events went in (the encoder has its own tests)."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)


def add(batch: Batch, event: OutcomeEvent, *, session: bool) -> bool:
    batch.ids.append(event.id)
    return True


@pytest.fixture(autouse=True)
def _fake_batches() -> Iterator[None]:
    with mock.patch("handlers.publisher.try_add", add):
        yield


class Sender:
    """A topic sender whose transfers finish only when the test says so."""

    def __init__(self, client: Client, name: str) -> None:
        self.client, self.name = client, name
        self._handler: Any = None
        self.transfers: list[list[str]] = []
        self.closed = False
        self.opened = False

    def _create_handler(self, auth: Any) -> None:
        return None

    async def __aenter__(self) -> Sender:
        await self.client.open_gate(self)
        self.opened = True
        return self

    async def create_message_batch(self) -> Batch:
        return Batch()

    async def send_messages(self, batch: Batch) -> None:
        ids = list(batch.ids)
        self.transfers.append(ids)
        release: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.client.in_flight.append((self, ids, release))
        if not await release:
            raise ConnectionError("link detached")

    async def close(self) -> None:
        self.closed = True


class Client:
    def __init__(self) -> None:
        self.senders: list[Sender] = []
        self.in_flight: list[tuple[Sender, list[str], asyncio.Future[bool]]] = []
        self.gates: dict[str, asyncio.Event] = {}  # a sender's open waits for its gate, if any
        self.closed = False

    async def open_gate(self, sender: Sender) -> None:
        gate = self.gates.get(sender.name)
        if gate is not None:
            await gate.wait()

    def get_topic_sender(self, topic: str) -> Sender:
        assert not self.closed, "a sender opened on a closed client"
        sender = Sender(self, f"link{len(self.senders)}")
        self.senders.append(sender)
        return sender

    async def close(self) -> None:
        self.closed = True

    def finish(self, index: int = 0, ok: bool = True) -> list[str]:
        _, ids, release = self.in_flight.pop(index)
        release.set_result(ok)
        return ids


def event(n: int) -> OutcomeEvent:
    return build_event(Result(Outcome.applied, job_id=f"job-{n}"), f"m-{n}")


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def two_publishes(
    links: int,
) -> tuple[Client, ServiceBusPublisher, asyncio.Task[None], asyncio.Task[None]]:
    """A publisher with `links` links, and two publishes started one after the other."""
    client = Client()
    publisher = ServiceBusPublisher(client, "t", links=links)  # type: ignore[arg-type]
    first = asyncio.create_task(publisher.publish([event(1)]))
    await settle()
    second = asyncio.create_task(publisher.publish([event(2)]))
    await settle()
    return client, publisher, first, second


async def test_with_two_links_an_event_does_not_wait_behind_the_transfer_in_flight() -> None:
    client, publisher, first, second = await two_publishes(links=2)
    assert [(s.name, ids) for s, ids, _ in client.in_flight] == [
        ("link0", [event(1).id]),
        ("link1", [event(2).id]),  # out while link0's transfer is still in flight
    ]
    client.finish(1)
    await second
    assert not first.done()  # told "published" only when its own transfer is accepted
    client.finish(0)
    await first
    assert publisher.transfers == 2


async def test_with_one_link_the_second_event_waits_for_the_first_transfer() -> None:
    client, _, first, second = await two_publishes(links=1)
    assert len(client.in_flight) == 1
    client.finish()
    await first
    await settle()
    assert client.finish() == [event(2).id]
    await second
    assert len(client.senders) == 1


async def test_events_arriving_while_every_link_is_busy_go_out_together() -> None:
    client = Client()
    publisher = ServiceBusPublisher(client, "t", links=2)  # type: ignore[arg-type]
    tasks = [asyncio.create_task(publisher.publish([event(n)])) for n in range(2)]
    await settle()
    tasks += [asyncio.create_task(publisher.publish([event(n)])) for n in range(2, 6)]
    await settle()
    assert len(client.in_flight) == 2  # both links busy; 2..5 wait
    client.finish(0)
    await settle()
    assert client.in_flight[-1][1] == [event(n).id for n in range(2, 6)]  # one transfer
    while client.in_flight:
        client.finish(0)
        await settle()
    await asyncio.gather(*tasks)
    assert publisher.transfers == 3


async def test_a_failed_transfer_fails_its_own_callers_and_drops_only_its_link() -> None:
    client, publisher, first, second = await two_publishes(links=2)
    client.finish(0, ok=False)  # link0's transfer fails
    with pytest.raises(ConnectionError):
        await first
    assert not second.done()
    client.finish(0)
    await second
    assert [s.closed for s in client.senders] == [True, False]
    # Both links busy again: link0 must open a new sender, its old one is gone.
    third = asyncio.create_task(publisher.publish([event(3)]))
    fourth = asyncio.create_task(publisher.publish([event(4)]))
    await settle()
    assert len(client.senders) == 3 and {s.name for s, _, _ in client.in_flight} == {"link1", "link2"}
    while client.in_flight:
        client.finish(0)
        await settle()
    await asyncio.gather(third, fourth)
    await publisher.aclose()
    assert all(s.closed for s in client.senders)


async def test_a_publish_waits_only_for_its_own_links_warm_up() -> None:
    client = Client()
    client.gates["link1"] = asyncio.Event()  # the second link is slow to open
    publisher = ServiceBusPublisher(client, "t", links=2)  # type: ignore[arg-type]
    warming = publisher.start_warming()
    await settle()
    first = asyncio.create_task(publisher.publish([event(1)]))
    await settle()
    assert [(s.name, ids) for s, ids, _ in client.in_flight] == [("link0", [event(1).id])]
    second = asyncio.create_task(publisher.publish([event(2)]))
    await settle()
    assert len(client.in_flight) == 1  # link1 is still opening: nothing goes over it half-open
    client.gates["link1"].set()
    await settle()
    assert [s.name for s, _, _ in client.in_flight] == ["link0", "link1"]
    assert all(s.opened for s, _, _ in client.in_flight)
    while client.in_flight:
        client.finish(0)
        await settle()
    await asyncio.gather(first, second, warming)
    assert len(client.senders) == 2


async def test_close_answers_every_caller_and_opens_nothing_after() -> None:
    client = Client()
    publisher = ServiceBusPublisher(client, "t", links=2)  # type: ignore[arg-type]
    calls = [asyncio.create_task(publisher.publish([event(n)])) for n in range(2)]
    await settle()
    calls.append(asyncio.create_task(publisher.publish([event(2)])))  # waits: both links busy
    await settle()
    closing = asyncio.create_task(publisher.aclose(grace_seconds=0.05))
    await settle()
    assert calls[2].done() and isinstance(calls[2].exception(), PublishInterrupted)
    client.finish(0)  # link0's transfer is answered within the grace
    await closing  # link1's is not: cancelled after the grace
    assert calls[0].exception() is None
    assert isinstance(calls[1].exception(), PublishInterrupted)
    assert client.closed and len(client.senders) == 2 and all(s.closed for s in client.senders)
    with pytest.raises(PublishInterrupted):
        await publisher.publish([event(3)])


async def test_a_cancelled_transfer_tells_its_callers_it_did_not_go_out() -> None:
    client = Client()
    publisher = ServiceBusPublisher(client, "t")  # type: ignore[arg-type]
    call = asyncio.create_task(publisher.publish([event(1)]))
    await settle()
    (transfer,) = publisher._running
    transfer.cancel()  # as the SDK's own wait being cancelled would
    with pytest.raises(PublishInterrupted):
        await call
    again = asyncio.create_task(publisher.publish([event(2)]))  # the link is free again
    await settle()
    client.finish(-1)
    await again


async def test_a_caller_cancelled_while_it_waits_has_its_event_left_out() -> None:
    client = Client()
    publisher = ServiceBusPublisher(client, "t")  # type: ignore[arg-type]
    first = asyncio.create_task(publisher.publish([event(1)]))
    await settle()
    gone = asyncio.create_task(publisher.publish([event(2)]))  # waits behind the first
    kept = asyncio.create_task(publisher.publish([event(3)]))
    await settle()
    gone.cancel()  # its invocation ended: nobody to tell, so nothing to send
    await settle()
    client.finish()
    await first
    await settle()
    assert client.finish() == [event(3).id]
    await kept
    only_cancelled = asyncio.create_task(publisher.publish([event(4)]))
    await settle()
    blocked = asyncio.create_task(publisher.publish([event(5)]))
    await settle()
    blocked.cancel()
    await settle()
    client.finish()
    await only_cancelled
    await settle()
    assert client.in_flight == []  # a transfer of nobody's events is not sent at all
    assert [ids for s in client.senders for ids in s.transfers] == [[event(n).id] for n in (1, 3, 4)]


async def test_warming_after_a_publish_does_not_reopen_its_link() -> None:
    client = Client()
    publisher = ServiceBusPublisher(client, "t", links=2)  # type: ignore[arg-type]
    call = asyncio.create_task(publisher.publish([event(1)]))
    await settle()
    await publisher.start_warming()  # link0 is mid-transfer: only link1 is warmed
    assert [s.opened for s in client.senders] == [False, True]
    client.finish()
    await call


def test_a_publisher_needs_a_link() -> None:
    with pytest.raises(ValueError, match="at least one link"):
        ServiceBusPublisher(Client(), "t", links=0)  # type: ignore[arg-type]


@given(
    links=st.integers(1, 4),
    script=st.lists(st.one_of(st.just("publish"), st.tuples(st.just("finish"), st.booleans())), max_size=40),
)
@settings(max_examples=150)
def test_every_caller_is_told_exactly_its_own_transfers_result(links: int, script: list[Any]) -> None:
    """Whatever the interleaving: at most `links` transfers in flight; each caller's
    event is in exactly one transfer; a caller succeeds iff that transfer was accepted."""

    async def run() -> None:
        client = Client()
        publisher = ServiceBusPublisher(client, "t", links=links)  # type: ignore[arg-type]
        calls: dict[str, asyncio.Task[None]] = {}
        verdict: dict[str, bool] = {}
        n = 0
        for step in [*script, *[("finish", True)] * (len(script) + 1)]:
            if step == "publish":
                e = event(n)
                n += 1
                calls[e.id] = asyncio.create_task(publisher.publish([e]))
            elif client.in_flight:
                ok = step[1]
                for event_id in client.finish(0, ok=ok):
                    assert event_id not in verdict  # in one transfer only
                    verdict[event_id] = ok
            await settle()
            assert len(client.in_flight) <= links
        assert set(verdict) == set(calls)
        for event_id, task in calls.items():
            assert task.done()
            assert (task.exception() is None) is verdict[event_id]
        await publisher.aclose()

    with mock.patch("handlers.publisher.try_add", add):
        asyncio.run(run())
