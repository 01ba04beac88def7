"""Telemetry over the real handler (httpx.MockTransport, as test_handler_loop.py): the span
tree, its attributes, the metrics, trace context in from the message and out on the event,
and that telemetry never changes an outcome nor carries a secret.

In-memory exporters (opentelemetry-sdk); the providers are passed to `telemetry.enable`,
never installed globally, so tests stay independent.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from handlers import telemetry
from handlers.flow_control import FlowControl
from handlers.handler import RetryLater
from handlers.lineage import Lineage
from handlers.outcomes import Outcome
from handlers.requeue import Envelope
from handlers.wire import client_request_id_for
from tests.infra.test_alert_contract import alert_queries
from tests.sdk_reference import to_service_bus_message
from tests.unit.test_handler_loop import (
    MAX_DELIVERIES,
    PRIORITY,
    TOKEN,
    Factory,
    connect_error,
    error,
    inbound,
    ok,
    rig,
)

__all__ = ["rig"]  # the fixture, shared with test_handler_loop.py

REPO = Path(__file__).resolve().parents[2]
PRODUCER_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
PRODUCER_SPAN = 0xB7AD6B7169203331
PRODUCER_TRACEPARENT = f"00-{PRODUCER_TRACE:032x}-{PRODUCER_SPAN:016x}-01"


def traceparent_of(body: bytes) -> Any:
    """The event's distributed-tracing extension, as the CloudEvents SDK reads it."""
    return JSONFormat().read(CloudEvent, body).get_extension("traceparent")


@dataclass
class Otel:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def one(self, name: str) -> ReadableSpan:
        found = [s for s in self.finished() if s.name == name]
        assert len(found) == 1, [s.name for s in self.finished()]
        return found[0]

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]

    def all_points(self) -> dict[str, list[dict[str, Any]]]:
        data = self.metrics.get_metrics_data()
        out: dict[str, list[dict[str, Any]]] = {}
        if data is None:
            return out
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    out.setdefault(m.name, []).extend(dict(p.attributes or {}) for p in m.data.data_points)
        return out

    def alert_sum(self, variable: str) -> float:
        """What an alert query of infra/app/alerts.bicep would sum over these points."""
        (query,) = [q for q in alert_queries() if q.variable == variable]
        total = 0.0
        for labels, value in self.points(query.metric):
            if all(str(labels.get(k)) == v for k, v in query.dimensions.items()):
                total += value
        return total

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, value) of every data point of `metric`: a sum's value, a histogram's count."""
        data = self.metrics.get_metrics_data()
        out: list[tuple[dict[str, Any], Any]] = []
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for m in scope.metrics:
                    if m.name == metric:
                        for p in m.data.data_points:
                            value = getattr(p, "value", None)
                            out.append((dict(p.attributes or {}), value if value is not None else p))
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    telemetry.enable(provider, MeterProvider(metric_readers=[reader]))
    yield Otel(exporter, reader)
    telemetry.disable()


def envelope(properties: dict[str, Any], message_id: str = "m-1") -> Envelope:
    return Envelope(b"", Lineage(message_id, None, 0), application_properties=properties)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def all_attribute_text(spans: Sequence[ReadableSpan]) -> str:
    return json.dumps([{k: str(v) for k, v in (s.attributes or {}).items()} for s in spans])


# --- the span tree -------------------------------------------------------------------


async def test_applied_one_trace_continued_from_the_message_and_out_on_the_event(
    rig: Factory, otel: Otel
) -> None:
    r = rig(ok(rid="r-ok"))
    result = await r.handler.handle(inbound(PRIORITY), envelope({"traceparent": PRODUCER_TRACEPARENT}))
    assert result.outcome is Outcome.applied

    handling = otel.one(telemetry.SPAN_HANDLE)
    patch = otel.one("PATCH")
    token = otel.one(telemetry.SPAN_TOKEN)
    publish = otel.one(telemetry.SPAN_PUBLISH)
    # One trace, the producer's; the handling span is the producer span's child.
    assert {s.context.trace_id for s in otel.finished()} == {PRODUCER_TRACE}
    assert parent_id(handling) == PRODUCER_SPAN
    assert parent_id(patch) == handling.context.span_id
    assert parent_id(token) == handling.context.span_id  # fetched inside the attempt, a sibling
    assert parent_id(publish) == handling.context.span_id
    assert (handling.kind, patch.kind, publish.kind) == (
        SpanKind.CONSUMER,
        SpanKind.CLIENT,
        SpanKind.PRODUCER,
    )

    assert dict(handling.attributes or {}) == {
        telemetry.ATTR_MESSAGING_SYSTEM: "servicebus",
        telemetry.ATTR_MESSAGING_OPERATION: "process",
        telemetry.ATTR_MESSAGING_DESTINATION: "job-updates",
        telemetry.ATTR_MESSAGE_ID: "m-1",
        telemetry.ATTR_DELIVERY_COUNT: 1,
        telemetry.ATTR_COPY: 0,
        telemetry.ATTR_OUTCOME: "applied",
        telemetry.ATTR_ATTEMPTS: 1,
        telemetry.ATTR_JOB_ID: "job-1",
        telemetry.ATTR_ACCOUNT: "acct",
        telemetry.ATTR_HTTP_STATUS: 200,
    }
    assert dict(patch.attributes or {}) == {
        telemetry.ATTR_HTTP_METHOD: "PATCH",
        telemetry.ATTR_URL: "https://acct.westeurope.batch.azure.com/jobs/job-1",  # no query
        telemetry.ATTR_SERVER_ADDRESS: "acct.westeurope.batch.azure.com",
        telemetry.ATTR_SERVER_PORT: 443,
        telemetry.ATTR_ATTEMPT: 1,
        telemetry.ATTR_CLIENT_REQUEST_ID: client_request_id_for("m-1"),
        telemetry.ATTR_HTTP_STATUS: 200,
        telemetry.ATTR_REQUEST_ID: "r-ok",
    }

    # Out: the event carries the publish span's context, twice.
    event = r.publisher.events[-1]
    expected = f"00-{PRODUCER_TRACE:032x}-{publish.context.span_id:016x}-01"
    assert publish.attributes is not None
    assert publish.attributes[telemetry.ATTR_MESSAGE_ID] == event.id
    assert traceparent_of(event.body) == expected
    message = to_service_bus_message(event, session=False)
    assert message.application_properties is not None
    assert message.application_properties[telemetry.DIAGNOSTIC_ID] == expected

    # A subscriber continuing from Diagnostic-Id lands in the same trace, under the publish.
    subscriber = TracerProvider()
    sub_spans = InMemorySpanExporter()
    subscriber.add_span_processor(SimpleSpanProcessor(sub_spans))
    context = telemetry.parent_from(message.application_properties)
    subscriber.get_tracer("subscriber").start_span("process outcome", context=context).end()
    (sub,) = sub_spans.get_finished_spans()
    assert (sub.context.trace_id, parent_id(sub)) == (PRODUCER_TRACE, publish.context.span_id)

    assert otel.points(telemetry.METRIC_MESSAGES) == [({telemetry.ATTR_OUTCOME: "applied"}, 1)]
    assert otel.points(telemetry.METRIC_BATCH_RESPONSES) == [({telemetry.ATTR_HTTP_STATUS: 200}, 1)]
    assert otel.points(telemetry.METRIC_BATCH_RETRIES) == []
    ((labels, histogram),) = otel.points(telemetry.METRIC_DURATION)
    assert labels == {telemetry.ATTR_OUTCOME: "applied"} and histogram.count == 1


async def test_throttled_then_applied_two_attempts_one_retry_one_wait(rig: Factory, otel: Otel) -> None:
    r = rig(error(429, "TooManyRequests", rid="r-429", retry_after="0"), ok(rid="r-ok"))
    result = await r.handler.handle(inbound(PRIORITY))
    assert (result.outcome, result.attempts) == (Outcome.applied, 2)

    handling = otel.one(telemetry.SPAN_HANDLE)
    first, second = sorted(otel.named("PATCH"), key=lambda s: s.start_time or 0)
    assert {parent_id(first), parent_id(second)} == {handling.context.span_id}
    a1, a2 = dict(first.attributes or {}), dict(second.attributes or {})
    assert (a1[telemetry.ATTR_ATTEMPT], a2[telemetry.ATTR_ATTEMPT]) == (1, 2)
    assert (a1[telemetry.ATTR_HTTP_STATUS], a2[telemetry.ATTR_HTTP_STATUS]) == (429, 200)
    assert (a1[telemetry.ATTR_REQUEST_ID], a2[telemetry.ATTR_REQUEST_ID]) == ("r-429", "r-ok")
    assert a1[telemetry.ATTR_RETRY_AFTER] == 0
    assert a1[telemetry.ATTR_ERROR_TYPE] == "429" and telemetry.ATTR_ERROR_TYPE not in a2
    assert telemetry.ATTR_RESEND_COUNT not in a1 and a2[telemetry.ATTR_RESEND_COUNT] == 1
    assert a1[telemetry.ATTR_CLIENT_REQUEST_ID] == a2[telemetry.ATTR_CLIENT_REQUEST_ID]
    assert first.status.status_code is trace.StatusCode.ERROR
    assert (handling.attributes or {})[telemetry.ATTR_ATTEMPTS] == 2

    responses = sorted(
        otel.points(telemetry.METRIC_BATCH_RESPONSES), key=lambda p: p[0][telemetry.ATTR_HTTP_STATUS]
    )
    assert responses == [({telemetry.ATTR_HTTP_STATUS: 200}, 1), ({telemetry.ATTR_HTTP_STATUS: 429}, 1)]
    assert otel.points(telemetry.METRIC_BATCH_RETRIES) == [({}, 1)]
    ((labels, wait),) = otel.points(telemetry.METRIC_THROTTLE_WAIT)
    assert labels == {telemetry.ATTR_WAIT_REASON: telemetry.WAIT_RETRY_AFTER} and wait.count == 1
    assert otel.alert_sum("throttleQuery") == 1  # alert 3 sees the 429 the handler recovered from


async def test_throttled_under_flow_control_the_account_pause_is_a_wait_span(
    rig: Factory, otel: Otel
) -> None:
    r = rig(error(429, "TooManyRequests", retry_after="1"), ok())
    r.client.flow = FlowControl()
    result = await r.handler.handle(inbound(PRIORITY))
    assert (result.outcome, result.attempts) == (Outcome.applied, 2)
    handling = otel.one(telemetry.SPAN_HANDLE)
    wait = otel.one(telemetry.SPAN_FLOW_WAIT)
    assert parent_id(wait) == handling.context.span_id
    ((labels, _),) = otel.points(telemetry.METRIC_THROTTLE_WAIT)
    assert labels == {telemetry.ATTR_WAIT_REASON: telemetry.WAIT_FLOW_CONTROL}


async def test_rejected_has_no_batch_or_token_span(rig: Factory, otel: Otel) -> None:
    r = rig()
    result = await r.handler.handle(inbound({"update": {"priorty": 5}}))
    assert result.outcome is Outcome.rejected
    assert sorted(s.name for s in otel.finished()) == sorted([telemetry.SPAN_HANDLE, telemetry.SPAN_PUBLISH])
    handling = otel.one(telemetry.SPAN_HANDLE)
    attributes = dict(handling.attributes or {})
    assert (attributes[telemetry.ATTR_OUTCOME], attributes[telemetry.ATTR_ATTEMPTS]) == ("rejected", 0)
    assert handling.parent is None  # no traceparent on the message: a new trace
    assert otel.points(telemetry.METRIC_MESSAGES) == [({telemetry.ATTR_OUTCOME: "rejected"}, 1)]
    assert otel.points(telemetry.METRIC_BATCH_RESPONSES) == []


async def test_given_up_on_the_last_delivery(rig: Factory, otel: Otel) -> None:
    r = rig(*[error(503, "ServerBusy", rid=f"r-{n}", retry_after="0") for n in range(3)])
    with pytest.raises(RetryLater):
        await r.handler.handle(inbound(PRIORITY, delivery=MAX_DELIVERIES))
    handling = otel.one(telemetry.SPAN_HANDLE)
    attributes = dict(handling.attributes or {})
    assert attributes[telemetry.ATTR_OUTCOME] == "given-up"
    assert attributes[telemetry.ATTR_DELIVERY_COUNT] == MAX_DELIVERIES
    assert attributes[telemetry.ATTR_ERROR_CODE] == "ServerBusy"
    assert [dict(s.attributes or {})[telemetry.ATTR_ATTEMPT] for s in otel.named("PATCH")] == [1, 2, 3]
    assert parent_id(otel.one(telemetry.SPAN_PUBLISH)) == handling.context.span_id
    assert otel.points(telemetry.METRIC_MESSAGES) == [({telemetry.ATTR_OUTCOME: "given-up"}, 1)]
    assert otel.points(telemetry.METRIC_BATCH_RETRIES) == [({}, 2)]
    assert traceparent_of(r.publisher.events[-1].body).split("-")[1] == format(
        handling.context.trace_id, "032x"
    )


async def test_a_transient_delivery_publishes_nothing_and_says_transient(rig: Factory, otel: Otel) -> None:
    r = rig(*[error(503, "ServerBusy", retry_after="0") for _ in range(3)])
    with pytest.raises(RetryLater):
        await r.handler.handle(inbound(PRIORITY))
    assert otel.named(telemetry.SPAN_PUBLISH) == []
    assert otel.points(telemetry.METRIC_MESSAGES) == [({telemetry.ATTR_OUTCOME: "transient"}, 1)]


async def test_a_failed_publish_is_counted_and_still_raises(rig: Factory, otel: Otel) -> None:
    r = rig(ok())
    r.publisher.fail_with = ConnectionError("topic down")
    with pytest.raises(RetryLater):
        await r.handler.handle(inbound(PRIORITY))
    publish = otel.one(telemetry.SPAN_PUBLISH)
    assert publish.status.status_code is trace.StatusCode.ERROR
    assert otel.points(telemetry.METRIC_PUBLISH_FAILURES) == [
        ({telemetry.ATTR_ERROR_TYPE: "ConnectionError"}, 1)
    ]
    assert otel.alert_sum("publishFailureQuery") == 1


async def test_metrics_carry_only_the_attributes_the_alert_contract_names(rig: Factory, otel: Otel) -> None:
    r = rig(error(429, "TooManyRequests", retry_after="0"), connect_error(), ok())
    await r.handler.handle(inbound(PRIORITY))
    r.publisher.fail_with = ConnectionError("topic down")
    r2 = rig()
    r2.publisher.fail_with = ConnectionError("topic down")
    with pytest.raises(RetryLater):
        await r2.handler.handle(inbound({"update": {"priorty": 5}}, message_id="m-2"))
    emitted = otel.all_points()
    assert set(emitted) == set(telemetry.METRIC_ATTRIBUTES)  # every instrument was exercised
    for metric, points in emitted.items():
        for labels in points:
            assert set(labels) <= telemetry.METRIC_ATTRIBUTES[metric], (metric, labels)


# --- propagation in ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "properties",
    [
        {"Diagnostic-Id": PRODUCER_TRACEPARENT},  # what the Service Bus SDKs write
        {"traceparent": PRODUCER_TRACEPARENT.encode()},  # AMQP may hand bytes over
        {"traceparent": PRODUCER_TRACEPARENT, "Diagnostic-Id": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
    ],
)
async def test_the_parent_comes_from_traceparent_first_then_diagnostic_id(
    rig: Factory, otel: Otel, properties: dict[str, Any]
) -> None:
    r = rig(ok())
    await r.handler.handle(inbound(PRIORITY), envelope(properties))
    handling = otel.one(telemetry.SPAN_HANDLE)
    assert (handling.context.trace_id, parent_id(handling)) == (PRODUCER_TRACE, PRODUCER_SPAN)


@pytest.mark.parametrize("value", ["garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "", b"\xff"])
async def test_a_malformed_parent_starts_a_new_trace(rig: Factory, otel: Otel, value: Any) -> None:
    r = rig(ok())
    result = await r.handler.handle(inbound(PRIORITY), envelope({"traceparent": value}))
    assert result.outcome is Outcome.applied
    assert otel.one(telemetry.SPAN_HANDLE).parent is None


async def test_without_a_message_parent_the_invocation_context_is_continued(rig: Factory, otel: Otel) -> None:
    """In Azure the worker attaches the host's invocation context; the span continues it."""
    r = rig(ok())
    outer_provider = TracerProvider()
    with outer_provider.get_tracer("host").start_as_current_span("invocation") as outer:
        await r.handler.handle(inbound(PRIORITY))
    assert parent_id(otel.one(telemetry.SPAN_HANDLE)) == outer.get_span_context().span_id


async def test_with_a_message_parent_the_invocation_context_is_a_link(rig: Factory, otel: Otel) -> None:
    r = rig(ok())
    with TracerProvider().get_tracer("host").start_as_current_span("invocation") as outer:
        await r.handler.handle(inbound(PRIORITY), envelope({"traceparent": PRODUCER_TRACEPARENT}))
    handling = otel.one(telemetry.SPAN_HANDLE)
    assert parent_id(handling) == PRODUCER_SPAN
    assert [link.context.span_id for link in handling.links] == [outer.get_span_context().span_id]


# --- off: nothing ---------------------------------------------------------------------------


async def test_off_no_span_and_no_trace_context_on_the_event(rig: Factory, otel: Otel) -> None:
    telemetry.disable()
    r = rig(error(429, "TooManyRequests", retry_after="0"), ok())
    result = await r.handler.handle(inbound(PRIORITY), envelope({"traceparent": PRODUCER_TRACEPARENT}))
    assert result.outcome is Outcome.applied
    assert otel.finished() == []
    event = r.publisher.events[-1]
    assert "traceparent" not in json.loads(event.body)
    assert telemetry.DIAGNOSTIC_ID not in (
        to_service_bus_message(event, session=False).application_properties or {}
    )


def test_off_the_app_does_not_even_import_opentelemetry() -> None:
    code = (
        "import sys, function_app, handlers.runtime, handlers.handler;"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": "."},
    )
    assert out.stdout.strip() == "[]"


# --- telemetry never changes an outcome -------------------------------------------------------


class RaisingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise RuntimeError("collector unreachable")


class BlockingExporter(SpanExporter):
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait()
        return SpanExportResult.SUCCESS


@pytest.mark.parametrize("exporter_type", [RaisingExporter, BlockingExporter])
async def test_a_failing_or_stuck_exporter_changes_nothing(
    rig: Factory, exporter_type: type[SpanExporter]
) -> None:
    exporter = exporter_type()
    provider = TracerProvider()
    # One span per export, exported at once: the exporter is entered while the message runs.
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_export_batch_size=1, schedule_delay_millis=1)
    )
    telemetry.enable(provider, MeterProvider())
    try:
        r = rig(error(429, "TooManyRequests", retry_after="0"), ok())
        result = await r.handler.handle(inbound(PRIORITY))
        assert (result.outcome, result.attempts) == (Outcome.applied, 2)
        assert len(r.publisher.events) == 1
        if isinstance(exporter, BlockingExporter):
            assert exporter.entered.wait(5)  # it really is stuck in an export
            assert not exporter.release.is_set()
    finally:
        if isinstance(exporter, BlockingExporter):
            exporter.release.set()
        provider.shutdown()
        telemetry.disable()


async def test_a_telemetry_bug_is_swallowed(
    rig: Factory, otel: Otel, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise ValueError("instrument broke")

    instruments = telemetry._get()
    for name in ("messages", "responses", "retries", "throttle_wait", "duration"):
        monkeypatch.setattr(instruments, name, type("Broken", (), {"add": broken, "record": broken})())
    r = rig(error(429, "TooManyRequests", retry_after="0"), ok())
    result = await r.handler.handle(inbound(PRIORITY))
    assert (result.outcome, result.attempts) == (Outcome.applied, 2)
    assert len(r.publisher.events) == 1


# --- no secret in a span or a log line -----------------------------------------------------------

SECRET = "c2VjcmV0LXNpZ25hdHVyZQ"
SECRET_IDS = [
    f"https://acct.blob.core.windows.net/c/b?sv=2024-01-01&sig={SECRET}",
    f"msg;SharedAccessSignature=sr=x&sig={SECRET}",
    f"token={SECRET}",
    f"Bearer {SECRET}",
]


@pytest.mark.parametrize("message_id", SECRET_IDS)
async def test_no_secret_reaches_a_span_or_a_log_line(
    rig: Factory, otel: Otel, message_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    r = rig(error(429, "TooManyRequests", retry_after="0"), ok())
    formatter = telemetry.JsonLineFormatter()
    lines: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    capture = Capture()
    logging.getLogger("handlers").addHandler(capture)
    caplog.set_level(logging.INFO, logger="handlers")
    try:
        await r.handler.handle(inbound(PRIORITY, message_id=message_id))
    finally:
        logging.getLogger("handlers").removeHandler(capture)
    spans = otel.finished()
    text = all_attribute_text(spans)
    assert SECRET not in text
    assert TOKEN not in text and "authorization" not in text.lower()
    assert all("?" not in str((s.attributes or {})[telemetry.ATTR_URL]) for s in otel.named("PATCH"))
    assert lines
    for line in lines:
        entry = json.loads(line)  # one JSON object per line
        assert SECRET not in line and TOKEN not in line
        assert entry["traceId"] == format(otel.one(telemetry.SPAN_HANDLE).context.trace_id, "032x")
        assert SECRET not in entry["messageId"]
    (outcome_line,) = [json.loads(line) for line in lines if "job-update outcome=" in line]
    assert outcome_line["jobId"] == "job-1"
    assert outcome_line["spanId"] == format(otel.one(telemetry.SPAN_HANDLE).context.span_id, "016x")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    prefix=st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=20),
    key=st.sampled_from(["sig", "sastoken", "token", "password", "AccountKey", "SharedAccessKey"]),
    secret=st.from_regex(r"[A-Za-z0-9]{12,30}", fullmatch=True),
    url=st.booleans(),
)
def test_message_ids_with_credentials_never_reach_the_handling_span(
    otel: Otel, prefix: str, key: str, secret: str, url: bool
) -> None:
    otel.spans.clear()
    message_id = (
        f"https://h.example/p?{prefix}&{key}={secret}" if url else f"{prefix.replace('?', '')} {key}={secret}"
    )
    with telemetry.handling_span(message_id=message_id, delivery_count=1, copy=0, queue="q", properties=None):
        pass
    assert secret not in all_attribute_text(otel.finished())


@given(
    url=st.from_regex(r"https://[a-z]{1,10}\.example(:[0-9]{2,4})?/[a-z/]{0,20}\?[ -~]{0,40}", fullmatch=True)
)
def test_public_url_never_keeps_a_query(url: str) -> None:
    assert "?" not in telemetry.public_url(url)
    assert telemetry.public_url(url) == url.split("?", 1)[0].split("#", 1)[0]


def test_local_runs_honour_otel_sdk_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry.disable()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    telemetry.setup_local()
    assert telemetry.ENABLED is False
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    telemetry.setup_local()
    try:
        assert telemetry.ENABLED is True
    finally:
        telemetry.disable()
