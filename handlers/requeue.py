"""Scheduled copies on the trigger queue: retries off the lock, and dead-lettering
with a reason on the GA trigger (docs/host.md, "Retries off the lock").

I/O only (azure-servicebus); what a copy carries is decided in `lineage.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender

from handlers.amqp_open import open_without_polling
from handlers.lineage import (
    DEAD_LETTER_DESCRIPTION,
    DEAD_LETTER_REASON,
    Lineage,
    copy_message_id,
    copy_properties,
    dead_letter_message_id,
)

__all__ = ["Envelope", "Requeue", "ServiceBusRequeue"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The parts of the received message a copy must keep."""

    body: bytes
    lineage: Lineage
    session_id: str | None = None
    content_type: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    application_properties: Mapping[str, Any] = field(default_factory=dict)


class Requeue(Protocol):
    async def schedule_copy(self, envelope: Envelope, copy: int, due: datetime, attempts: int) -> None: ...

    async def dead_letter(self, envelope: Envelope, reason: str, description: str, attempts: int) -> None: ...

    async def aclose(self) -> None: ...


class ServiceBusRequeue:
    """Schedules copies on the trigger queue through one long-lived sender."""

    def __init__(self, client: ServiceBusClient, queue: str) -> None:
        self._client = client
        self._queue = queue
        self._sender: ServiceBusSender | None = None
        self._lock = asyncio.Lock()

    async def _get_sender(self) -> ServiceBusSender:
        if self._sender is None:
            # Opens without the SDK's 50 ms polling, as the topic sender (handlers/amqp_open.py).
            self._sender = open_without_polling(self._client.get_queue_sender(self._queue))
        return self._sender

    def _message(
        self, envelope: Envelope, message_id: str, properties: dict[str, str | int]
    ) -> ServiceBusMessage:
        return ServiceBusMessage(
            envelope.body,
            message_id=message_id,
            session_id=envelope.session_id,
            content_type=envelope.content_type,
            correlation_id=envelope.correlation_id,
            subject=envelope.subject,
            application_properties=properties,  # type: ignore[arg-type]
        )

    async def schedule_copy(self, envelope: Envelope, copy: int, due: datetime, attempts: int) -> None:
        properties = copy_properties(envelope.lineage, envelope.application_properties, copy, attempts)
        message = self._message(envelope, copy_message_id(envelope.lineage.original_id, copy), properties)
        await self._send(lambda sender: sender.schedule_messages(message, due))

    async def dead_letter(self, envelope: Envelope, reason: str, description: str, attempts: int) -> None:
        """A copy due now that carries the reason; the trigger abandons it until
        Service Bus dead-letters it (the GA trigger has no dead-letter call)."""
        lineage = envelope.lineage
        properties = copy_properties(lineage, envelope.application_properties, lineage.copy, attempts)
        properties[DEAD_LETTER_REASON] = reason
        properties[DEAD_LETTER_DESCRIPTION] = description
        message = self._message(envelope, dead_letter_message_id(lineage.original_id), properties)
        await self._send(lambda sender: sender.send_messages(message))

    async def _send(self, action: Any) -> None:
        # One operation at a time: the SDK's sender is not safe to open from two
        # coroutines at once (both see it unopened). Copies are the slow path.
        async with self._lock:
            sender = await self._get_sender()
            try:
                await action(sender)
            except Exception:
                await self._reset()
                raise

    async def _reset(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                await sender.close()
            except Exception:  # closing a broken link may fail too
                log.debug("closing a failed queue sender raised", exc_info=True)

    async def aclose(self) -> None:
        async with self._lock:
            await self._reset()


def due_in(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)
