"""The Service Bus trigger's entry point: adapt the Functions message, run the handler."""

from __future__ import annotations

import azure.functions as func

from handlers.plan import Inbound
from handlers.runtime import get_runtime


def inbound_from(msg: func.ServiceBusMessage) -> Inbound:
    return Inbound(
        body=msg.get_body(),
        message_id=msg.message_id or "",
        delivery_count=msg.delivery_count or 1,
        enqueued_at=msg.enqueued_time_utc,
    )


async def on_job_update_message(msg: func.ServiceBusMessage) -> None:
    """Return: the host completes the message. Raise: it abandons it (redelivery)."""
    runtime = await get_runtime()
    await runtime.handler.handle(inbound_from(msg))
