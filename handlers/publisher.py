"""Publishing outcome events to the Service Bus topic.

`Publisher` is what the handler calls. `ServiceBusPublisher` keeps one client
and one topic sender for the process; a failed send is retried by the SDK and
then raised, so the input message is abandoned and comes back: an outcome is
never lost silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from azure.core.credentials_async import AsyncTokenCredential
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from azure.servicebus.exceptions import MessageSizeExceededError

from handlers.amqp_open import open_without_polling
from handlers.errors import PublisherClosed, PublishInterrupted
from handlers.events import OutcomeEvent
from handlers.outcome_batch import try_add

log = logging.getLogger(__name__)

# On close, how long transfers in flight may take to be answered before they are cancelled.
CLOSE_GRACE_SECONDS = 10.0


class Publisher(Protocol):
    async def publish(self, events: Sequence[OutcomeEvent]) -> None: ...

    async def aclose(self) -> None: ...


class _Link:
    """One topic sender (one AMQP link), and its warm-up while it runs."""

    __slots__ = ("sender", "warming")

    def __init__(self) -> None:
        self.sender: ServiceBusSender | None = None
        self.warming: asyncio.Task[None] | None = None


_Waiting = list[tuple[list[OutcomeEvent], asyncio.Future[None]]]


class ServiceBusPublisher:
    """One long-lived client and `links` topic senders per process.

    Events that arrive while every link has a transfer in flight wait and go out together
    in the next free link's transfer (coalescing). With one link an event can wait for the
    transfer in flight and then its own; a second link lets it go at once while the first
    is out, at some CPU (fewer events per transfer) and one more AMQP link
    (docs/performance.md, "The publish's latency").

    Every caller is told exactly its own transfer's result: accepted, or an exception
    (the SDK's, or `PublishInterrupted` when the transfer was cancelled or the publisher
    closed first). Nobody is left waiting and nobody is told "published" falsely.
    """

    def __init__(
        self, client: ServiceBusClient, topic: str, *, sessions: bool = False, links: int = 1
    ) -> None:
        if links < 1:
            raise ValueError("a publisher needs at least one link")
        self._client = client
        self._topic = topic
        self._sessions = sessions
        self._links = [_Link() for _ in range(links)]
        self._idle = list(reversed(self._links))  # popped from the end: link 0 first
        self._pending: _Waiting = []
        self._running: set[asyncio.Task[None]] = set()
        self._warming: asyncio.Task[None] | None = None
        self._closed = False
        self.transfers = 0  # sends to the broker (batches count once): how well coalescing works

    @classmethod
    def from_namespace(
        cls,
        namespace: str,
        credential: AsyncTokenCredential,
        topic: str,
        *,
        sessions: bool = False,
        links: int = 1,
    ) -> ServiceBusPublisher:
        return cls(ServiceBusClient(namespace, credential), topic, sessions=sessions, links=links)

    @classmethod
    def from_connection_string(
        cls, connection_string: str, topic: str, *, sessions: bool = False, links: int = 1
    ) -> ServiceBusPublisher:
        return cls(
            ServiceBusClient.from_connection_string(connection_string), topic, sessions=sessions, links=links
        )

    def _sender_of(self, link: _Link) -> ServiceBusSender:
        # No await between the test and the set: one sender per link, whoever asks first.
        if self._closed:
            raise PublisherClosed("the publisher is closed")
        if link.sender is None:
            link.sender = open_without_polling(self._client.get_topic_sender(self._topic))
        return link.sender

    def start_warming(self) -> asyncio.Task[None]:
        """Open the topic links in the background, ahead of the first publish.

        A publish that comes while its link opens waits for that link (two opens of one
        sender would tear each other down); a failed warm-up only drops that sender, and
        the publish opens its own as it always did.
        """
        if self._warming is None:
            for link in self._links:
                if link.sender is None:  # one already open (a publish came first) is not reopened
                    link.warming = asyncio.create_task(self._warm_link(link))
            self._warming = asyncio.create_task(self._warm())
        return self._warming

    async def _warm(self) -> None:
        warming = [link.warming for link in self._links if link.warming is not None]
        if warming:
            await asyncio.wait(warming)

    async def _warm_link(self, link: _Link) -> None:
        sender = None
        try:
            sender = self._sender_of(link)
            await sender.__aenter__()  # the SDK's own open, with its retries and deadline
        except Exception as exc:
            log.warning(
                "opening the outcome topic link ahead of time failed (%s); it opens on first publish",
                type(exc).__name__,
            )
            if sender is not None:
                await self._drop(link, sender)

    async def publish(self, events: Sequence[OutcomeEvent]) -> None:
        """Send the events; returns once the broker has accepted them.

        Calls that arrive while every link has a send in flight are coalesced into
        the next send as one batch (one AMQP transfer): under concurrency the per-event
        cost of the SDK is shared. A failure fails every caller in that batch.
        """
        if not events:
            return
        if self._closed:
            raise PublisherClosed("the publisher is closed")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((list(events), done))
        self._dispatch()
        await done

    def _dispatch(self) -> None:
        """Hand what is pending to an idle link, if there is one."""
        while self._pending and self._idle and not self._closed:
            link = self._idle.pop()
            waiting, self._pending = self._pending, []
            task = asyncio.create_task(self._transfer(link, waiting))
            self._running.add(task)  # held: the loop keeps only weak references to tasks
            task.add_done_callback(self._running.discard)

    async def _transfer(self, link: _Link, waiting: _Waiting) -> None:
        # A caller cancelled while it waited (its invocation ended) has no one to tell:
        # its event is not sent (its redelivery publishes it, under the same id).
        waiting = [(batch, done) for batch, done in waiting if not done.done()]
        try:
            if waiting:
                await self._send(link, [event for batch, _ in waiting for event in batch])
        except Exception as exc:
            _tell(waiting, exc)
        else:
            _tell(waiting, None)
        finally:
            # Cancelled (aclose, or the loop shutting down): the broker's answer never came.
            _tell(waiting, PublishInterrupted("the transfer was cancelled before the broker answered"))
            self._idle.append(link)
            task = asyncio.current_task()
            if task is None or not task.cancelling():  # no new transfer from a cancelled one
                self._dispatch()  # what arrived meanwhile goes next, as one batch

    async def _send(self, link: _Link, events: list[OutcomeEvent]) -> None:
        if link.warming is not None and not link.warming.done():
            await asyncio.wait([link.warming])  # never raises: _warm_link keeps its failures
        sender = self._sender_of(link)
        try:
            # Each event encoded once, directly, into a batch (handlers/outcome_batch.py);
            # a lone event too: a batch of one is what send_messages([message]) sends, and
            # it skips the SDK's three message objects per event (-21 % instructions).
            batch = await sender.create_message_batch()
            for event in events:
                if try_add(batch, event, session=self._sessions):
                    continue
                if len(batch) == 0:  # alone too big for a batch: as add_message would
                    raise MessageSizeExceededError(message="an outcome event outgrew an empty message batch")
                self.transfers += 1
                await sender.send_messages(batch)
                batch = await sender.create_message_batch()
                if not try_add(batch, event, session=self._sessions):
                    raise MessageSizeExceededError(message="an outcome event outgrew an empty message batch")
            self.transfers += 1
            await sender.send_messages(batch)
        except Exception:
            # Drop the sender: a broken link is rebuilt on the next publish.
            await self._drop(link, sender)
            raise

    async def _drop(self, link: _Link, sender: ServiceBusSender) -> None:
        """Close `sender`; forget it only if the link still holds it (not a newer one)."""
        if link.sender is sender:
            link.sender = None
        try:
            await sender.close()
        except Exception:  # closing a broken link may fail too; nothing to recover
            log.debug("closing a failed topic sender raised", exc_info=True)

    async def aclose(self, grace_seconds: float = CLOSE_GRACE_SECONDS) -> None:
        """Stop: nothing new is sent; transfers in flight get `grace_seconds` to be
        answered, then are cancelled; every caller still waiting is told it failed."""
        self._closed = True
        waiting, self._pending = self._pending, []
        _tell(waiting, PublisherClosed("the publisher closed before the event was sent"))
        tasks = [t for t in (self._warming, *(link.warming for link in self._links)) if t is not None]
        try:
            for task in tasks:
                task.cancel()
            if self._running:
                _, late = await asyncio.wait(list(self._running), timeout=grace_seconds)
                for task in late:
                    task.cancel()
                tasks.extend(late)
            if tasks:
                await asyncio.wait(tasks)
        finally:  # also when the close itself is cancelled: the links and the client close
            for link in self._links:
                if link.sender is not None:
                    await self._drop(link, link.sender)
            await self._client.close()


def _tell(waiting: _Waiting, error: BaseException | None) -> None:
    """Resolve each caller not yet told: accepted (None) or failed with `error`."""
    for _, done in waiting:
        if not done.done():
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
