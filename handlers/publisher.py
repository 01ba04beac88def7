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
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from azure.servicebus.exceptions import MessageSizeExceededError

from handlers.amqp_open import open_without_polling
from handlers.events import EVENT_CONTENT_TYPE, OutcomeEvent
from handlers.outcome_batch import session_of, try_add

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def publish(self, events: Sequence[OutcomeEvent]) -> None: ...

    async def aclose(self) -> None: ...


def to_service_bus_message(event: OutcomeEvent, *, session: bool) -> ServiceBusMessage:
    return ServiceBusMessage(
        event.body,
        content_type=EVENT_CONTENT_TYPE,
        message_id=event.id,  # deterministic: the topic's duplicate detection drops republished events
        correlation_id=event.source_message_id,
        subject=event.outcome.value,
        application_properties=event.application_properties(),  # type: ignore[arg-type]
        session_id=session_of(event) if session else None,
    )


class ServiceBusPublisher:
    """One long-lived client and topic sender per process."""

    def __init__(self, client: ServiceBusClient, topic: str, *, sessions: bool = False) -> None:
        self._client = client
        self._topic = topic
        self._sessions = sessions
        self._sender: ServiceBusSender | None = None
        self._lock = asyncio.Lock()
        self._pending: list[tuple[list[OutcomeEvent], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self.transfers = 0  # sends to the broker (batches count once): how well coalescing works

    @classmethod
    def from_namespace(
        cls, namespace: str, credential: AsyncTokenCredential, topic: str, *, sessions: bool = False
    ) -> ServiceBusPublisher:
        return cls(ServiceBusClient(namespace, credential), topic, sessions=sessions)

    @classmethod
    def from_connection_string(
        cls, connection_string: str, topic: str, *, sessions: bool = False
    ) -> ServiceBusPublisher:
        return cls(ServiceBusClient.from_connection_string(connection_string), topic, sessions=sessions)

    async def _get_sender(self) -> ServiceBusSender:
        if self._sender is None:
            async with self._lock:
                if self._sender is None:
                    self._sender = open_without_polling(self._client.get_topic_sender(self._topic))
        return self._sender

    def start_warming(self) -> asyncio.Task[None]:
        """Open the topic link in the background, ahead of the first publish.

        A publish that comes while it opens waits for it (two opens of one sender
        would tear each other down); a failed warm-up only drops the sender, and
        the publish opens its own as it always did.
        """
        if self._warming is None:
            self._warming = asyncio.create_task(self._warm())
        return self._warming

    async def _warm(self) -> None:
        try:
            sender = await self._get_sender()
            await sender.__aenter__()  # the SDK's own open, with its retries and deadline
        except Exception as exc:
            log.warning(
                "opening the outcome topic link ahead of time failed (%s); it opens on first publish",
                type(exc).__name__,
            )
            await self._reset_sender()

    async def publish(self, events: Sequence[OutcomeEvent]) -> None:
        """Send the events; returns once the broker has accepted them.

        Calls that arrive while a send is in flight are coalesced into the next
        send as one batch (one AMQP transfer): under concurrency the per-event
        cost of the SDK is shared. A failure fails every caller in that batch.
        """
        if not events:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((list(events), done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self._pending:
            waiting, self._pending = self._pending, []
            events = [event for batch, _ in waiting for event in batch]
            try:
                await self._send(events)
            except Exception as exc:
                for _, done in waiting:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in waiting:
                    if not done.done():
                        done.set_result(None)

    async def _send(self, events: list[OutcomeEvent]) -> None:
        if self._warming is not None and not self._warming.done():
            await asyncio.wait([self._warming])  # never raises: _warm keeps its failures
        sender = await self._get_sender()
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
            await self._reset_sender()
            raise

    async def _reset_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                await sender.close()
            except Exception:  # closing a broken link may fail too; nothing to recover
                log.debug("closing a failed topic sender raised", exc_info=True)

    async def aclose(self) -> None:
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
            await asyncio.wait([self._warming])
        await self._reset_sender()
        await self._client.close()
