"""One trace from producer to subscriber, over the real SDK and the local broker.

The producer puts its span's `traceparent` (or `Diagnostic-Id`) on the message; the
function (function_app.py under the local host loop) continues that trace; the outcome
event carries the publish span's context as the CloudEvents `traceparent` extension and
as the `Diagnostic-Id` application property, and a subscriber continues from either.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from azure.servicebus import ServiceBusMessage
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from handlers import telemetry
from tests.e2e.conftest import Stack, collect, drain, event_of, prop, running_function, send

PRODUCER_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PRODUCER_SPAN = 0x00F067AA0BA902B7
PRODUCER_TRACEPARENT = f"00-{PRODUCER_TRACE:032x}-{PRODUCER_SPAN:016x}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.enable(provider, MeterProvider())
    yield exporter
    telemetry.disable()


@pytest.mark.parametrize("property_name", [telemetry.TRACEPARENT, telemetry.DIAGNOSTIC_ID])
async def test_the_subscriber_continues_the_producers_trace(
    fresh: Stack, monkeypatch: pytest.MonkeyPatch, spans: InMemorySpanExporter, property_name: str
) -> None:
    fresh.emu.add_job({"id": "traced-job", "priority": 1})
    await drain(fresh)
    sent = ServiceBusMessage(
        json.dumps({"schemaVersion": "1.0", "jobId": "traced-job", "update": {"priority": 7}}),
        message_id=f"m-traced-{property_name}",  # distinct: the queue and topic drop duplicates
        content_type="application/json",
        application_properties={property_name: PRODUCER_TRACEPARENT},
    )
    async with running_function(fresh, monkeypatch):
        await send(fresh, "job-updates", [sent])
        (received,) = await collect(fresh, 1)

    assert event_of(received)["data"]["outcome"] == "applied"
    finished = list(spans.get_finished_spans())
    (handling,) = [s for s in finished if s.name == telemetry.SPAN_HANDLE]
    (publish,) = [s for s in finished if s.name == telemetry.SPAN_PUBLISH]
    assert handling.parent is not None and handling.parent.span_id == PRODUCER_SPAN
    assert (handling.attributes or {})[telemetry.ATTR_MESSAGE_ID] == f"m-traced-{property_name}"
    assert {s.context.trace_id for s in finished} == {PRODUCER_TRACE}

    expected = f"00-{PRODUCER_TRACE:032x}-{publish.context.span_id:016x}-01"
    assert event_of(received)["traceparent"] == expected
    assert prop(received, telemetry.DIAGNOSTIC_ID) == expected

    # The subscriber's side: its span is the publish span's child, in the producer's trace.
    properties = {
        (k.decode() if isinstance(k, bytes) else k): v
        for k, v in (received.application_properties or {}).items()
    }
    subscriber = TracerProvider()
    sub_spans = InMemorySpanExporter()
    subscriber.add_span_processor(SimpleSpanProcessor(sub_spans))
    subscriber.get_tracer("subscriber").start_span(
        "process outcome", context=telemetry.parent_from(properties)
    ).end()
    (sub,) = sub_spans.get_finished_spans()
    assert sub.context.trace_id == PRODUCER_TRACE
    assert sub.parent is not None and sub.parent.span_id == publish.context.span_id
