"""The outcome event as the SDK's own API would build it: the reference the direct
encoder (handlers/outcome_batch.py) must match byte for byte, and what a subscriber's
SDK sees. Not on the hot path: the publisher encodes without these objects."""

from __future__ import annotations

from azure.servicebus import ServiceBusMessage

from handlers.events import EVENT_CONTENT_TYPE, OutcomeEvent
from handlers.outcome_batch import session_of

__all__ = ["to_service_bus_message"]


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
