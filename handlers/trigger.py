"""The Service Bus trigger's entry point: adapt the Functions message, run the handler."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import azure.functions as func

from handlers.errors import DeadLetterPending
from handlers.lineage import lineage_of
from handlers.plan import Inbound
from handlers.redaction import redact_text
from handlers.requeue import Envelope
from handlers.runtime import get_runtime

log = logging.getLogger("handlers.job_update")


def received(msg: func.ServiceBusMessage) -> tuple[Envelope, Inbound]:
    """The message as a copy would need it (Envelope) and as the plan reads it (Inbound)."""
    properties: dict[str, Any] = dict(msg.application_properties or {})
    body = msg.get_body()
    # Without a message id, the body digest stands in (as Inbound.key), so copies of
    # different id-less messages never share an id.
    message_id = msg.message_id or "sha256:" + hashlib.sha256(body).hexdigest()
    lineage = lineage_of(message_id, msg.enqueued_time_utc, properties)
    envelope = Envelope(
        body=body,
        lineage=lineage,
        session_id=msg.session_id,
        content_type=msg.content_type,
        correlation_id=msg.correlation_id,
        subject=msg.subject or msg.label,
        application_properties=properties,
    )
    inbound = Inbound(
        body=body,
        message_id=lineage.original_id,
        delivery_count=msg.delivery_count or 1,
        enqueued_at=lineage.original_enqueued_at,
        copy=lineage.copy,
    )
    return envelope, inbound


async def on_job_update_message(msg: func.ServiceBusMessage) -> None:
    """Return: the host completes the message. Raise: it abandons it (redelivery)."""
    envelope, inbound = received(msg)
    if envelope.lineage.dead_letter is not None:
        # Our own copy of a message given up (its event is out): no Batch call, no
        # event; abandoned until Service Bus moves it, with its reason, to the DLQ.
        reason, _ = envelope.lineage.dead_letter
        log.info(
            "job-update dead-letter copy of messageId=%s (reason=%s), delivery %s",
            redact_text(envelope.lineage.original_id),
            reason,
            msg.delivery_count,
        )
        raise DeadLetterPending(reason)
    runtime = await get_runtime()
    await runtime.handler.handle(inbound, envelope)
