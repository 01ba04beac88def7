"""The Service Bus trigger's entry points: adapt the message, run the handler.

`on_job_update_message` is the GA trigger's (the host settles); `on_job_update_settled`
the settlement extension's (`JOB_UPDATES_SETTLEMENT=actions`: the function settles)."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any

import azure.functions as func
from azure.servicebus import ServiceBusReceivedMessage

from handlers.errors import DeadLetterPending
from handlers.lineage import lineage_of
from handlers.plan import Inbound, Settle
from handlers.redaction import redact_text
from handlers.requeue import Envelope
from handlers.runtime import get_runtime
from handlers.settlement import ActionsSettlement, MessageActions, run_settled

log = logging.getLogger("handlers.job_update")


def received(msg: func.ServiceBusMessage) -> tuple[Envelope, Inbound]:
    """The message as a copy would need it (Envelope) and as the plan reads it (Inbound)."""
    return _adapt(
        msg.get_body(),
        dict(msg.application_properties or {}),
        message_id=msg.message_id,
        enqueued=msg.enqueued_time_utc,
        delivery_count=msg.delivery_count,
        session_id=msg.session_id,
        content_type=msg.content_type,
        correlation_id=msg.correlation_id,
        subject=msg.subject or msg.label,
    )


def received_sdk(msg: ServiceBusReceivedMessage) -> tuple[Envelope, Inbound]:
    """The same from the settlement extension's message (azure-servicebus' own type).

    Its delivery count is None: the extension decodes the AMQP message from after the
    lock token, which the host writes after the header, so the header is lost
    (docs/host.md). Every delivery then reads as the first."""
    body = msg.body if isinstance(msg.body, bytes) else b"".join(msg.body)
    properties = {_text(k): _text(v) for k, v in (msg.application_properties or {}).items()}
    return _adapt(
        body,
        properties,
        message_id=msg.message_id,
        enqueued=msg.enqueued_time_utc,
        delivery_count=msg.delivery_count,
        session_id=msg.session_id,
        content_type=msg.content_type,
        correlation_id=msg.correlation_id,
        subject=msg.subject,
    )


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _adapt(
    body: bytes,
    properties: dict[str, Any],
    *,
    message_id: str | None,
    enqueued: datetime | None,
    delivery_count: int | None,
    session_id: str | None,
    content_type: str | None,
    correlation_id: str | None,
    subject: str | None,
) -> tuple[Envelope, Inbound]:
    # Without a message id, the body digest stands in (as Inbound.key), so copies of
    # different id-less messages never share an id.
    message_id = message_id or "sha256:" + hashlib.sha256(body).hexdigest()
    lineage = lineage_of(message_id, enqueued, properties)
    envelope = Envelope(
        body=body,
        lineage=lineage,
        session_id=session_id,
        content_type=content_type,
        correlation_id=correlation_id,
        subject=subject,
        application_properties=properties,
    )
    inbound = Inbound(
        body=body,
        message_id=lineage.original_id,
        delivery_count=delivery_count or 1,
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


async def on_job_update_settled(msg: ServiceBusReceivedMessage, actions: MessageActions) -> None:
    """Explicit settlement: every path completes, abandons or dead-letters `msg` once."""
    settlement = ActionsSettlement(actions, msg)
    await run_settled(settlement, _handle_settled(msg, settlement))


async def _handle_settled(msg: ServiceBusReceivedMessage, settlement: ActionsSettlement) -> None:
    envelope, inbound = received_sdk(msg)
    if envelope.lineage.dead_letter is not None:
        # A dead-letter copy sent before the switch to explicit settlement: dead-letter it
        # now, with the reason and description it carries.
        reason, description = envelope.lineage.dead_letter
        await settlement.settle(Settle.give_up, reason=reason, description=description)
        return
    runtime = await get_runtime()
    await runtime.handler.handle(inbound, envelope, settlement)
