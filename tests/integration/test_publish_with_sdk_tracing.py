"""The direct-encoder publish with azure-core tracing on (as the Azure Monitor distro
sets it in Azure): the events arrive whole, with the trace context they carry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.settings import settings as azure_settings
from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan
from azure.servicebus.aio import ServiceBusClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from handlers.events import OutcomeEvent
from handlers.outcomes import Outcome
from handlers.publisher import ServiceBusPublisher
from standins.servicebus import LocalBroker

CONFIG = Path(__file__).resolve().parents[2] / "standins" / "servicebus" / "Config.json"
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def sdk_tracing() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    from opentelemetry import trace

    previous = trace._TRACER_PROVIDER  # the global is set once per process; restore it
    trace._TRACER_PROVIDER = provider
    azure_settings.tracing_implementation.set_value(OpenTelemetrySpan)
    try:
        yield exporter
    finally:
        azure_settings.tracing_implementation.unset_value()
        trace._TRACER_PROVIDER = previous


def _event(n: int) -> OutcomeEvent:
    return OutcomeEvent(
        id=f"00000000-0000-4000-8000-{n:012d}",
        outcome=Outcome.applied,
        body=b'{"n": %d}' % n,
        source_message_id=f"m-{n}",
        job_id=f"job-{n}",
        account="acct",
        http_status=200,
        error_code=None,
        traceparent=PARENT,
    )


async def test_events_arrive_with_their_trace_context_under_sdk_tracing(
    sdk_tracing: InMemorySpanExporter,
) -> None:
    with LocalBroker(config=str(CONFIG), port=0) as broker:
        publisher = ServiceBusPublisher.from_connection_string(broker.connection_string, "job-outcomes")
        await publisher.publish([_event(0)])  # a lone event
        await publisher.publish([_event(n) for n in range(1, 17)])  # a batch
        await publisher.aclose()
        async with ServiceBusClient.from_connection_string(broker.connection_string) as client:
            receiver = client.get_subscription_receiver("job-outcomes", "all-outcomes", max_wait_time=3)
            async with receiver:
                got = []
                while batch := await receiver.receive_messages(max_message_count=20, max_wait_time=2):
                    for message in batch:
                        got.append(message)
                        await receiver.complete_message(message)
    assert sorted(str(m.message_id) for m in got) == sorted(_event(n).id for n in range(17))
    for message in got:
        props = {
            k.decode() if isinstance(k, bytes) else k: v for k, v in message.application_properties.items()
        }
        diagnostic = props["Diagnostic-Id"]
        assert (diagnostic.decode() if isinstance(diagnostic, bytes) else diagnostic) == PARENT
        n = int(str(message.message_id)[-12:])
        assert b"".join(message.body) == _event(n).body
    # azure-core tracing is live: the SDK traced the sends (no per-message spans on this path).
    assert any("send" in span.name.lower() for span in sdk_tracing.get_finished_spans())
