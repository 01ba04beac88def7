"""OpenTelemetry for the handler: names, the on/off flag, spans, metrics, propagation.

One trace per message:

    process job-updates            CONSUMER  the handling span (parent: the message's traceparent)
    |- batch token                 INTERNAL  only when the token cache fetches (not per request)
    |- flow-control wait           INTERNAL  only when the account's gate made it wait
    |- PATCH / GET                 CLIENT    one per Batch attempt (HTTP semantic conventions)
    `- send job-outcomes           PRODUCER  the publish; its context goes out on the event

Off by default (`ENABLED` is False): the I/O modules check the flag once per message
or per send and take their plain path, so no span, no attribute and no OTel import
exists. `enable()` turns it on: in Azure the Python worker configures the Azure
Monitor distro (`PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`, host.json
`telemetryMode: OpenTelemetry`) and this module only takes a tracer and a meter
from the global providers; tests and local runs pass their own.

Telemetry never changes an outcome: the SDK's API does not raise, exporters run on
the batch processors' threads, and what this module computes itself is guarded.
Nothing from a message reaches an attribute unredacted (`handlers/redaction.py`);
URLs lose their query; no header is recorded.

The names below are the single source of truth for docs/telemetry.md and the alert
queries in infra/app/alerts.bicep (tests/infra/test_alert_contract.py reads this
file). Top-level imports stay stdlib-only (plus redaction.py) for that test.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from handlers.redaction import redact_text

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import Counter, Histogram, MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "batch-job-update"

# --- Span names -------------------------------------------------------------------
SPAN_HANDLE = "process job-updates"
SPAN_TOKEN = "batch token"  # noqa: S105 - a span name
SPAN_FLOW_WAIT = "flow-control wait"
SPAN_PUBLISH = "send job-outcomes"

# --- Attribute names --------------------------------------------------------------
# OpenTelemetry semantic conventions where one exists, `jobupdate.*` for ours.
ATTR_MESSAGING_SYSTEM = "messaging.system"
ATTR_MESSAGING_OPERATION = "messaging.operation.type"
ATTR_MESSAGING_DESTINATION = "messaging.destination.name"
ATTR_MESSAGE_ID = "messaging.message.id"
ATTR_DELIVERY_COUNT = "messaging.servicebus.message.delivery_count"
ATTR_JOB_ID = "jobupdate.job_id"
ATTR_ACCOUNT = "jobupdate.account"
ATTR_OUTCOME = "jobupdate.outcome"
ATTR_ATTEMPTS = "jobupdate.attempts"  # Batch attempts this delivery made
ATTR_COPY = "jobupdate.copy"  # which scheduled copy of the message this is (0: the original)
ATTR_ERROR_CODE = "jobupdate.error_code"
ATTR_HTTP_METHOD = "http.request.method"
ATTR_HTTP_STATUS = "http.response.status_code"
ATTR_RESEND_COUNT = "http.request.resend_count"
ATTR_URL = "url.full"
ATTR_SERVER_ADDRESS = "server.address"
ATTR_SERVER_PORT = "server.port"
ATTR_ERROR_TYPE = "error.type"
ATTR_ATTEMPT = "jobupdate.attempt"  # 1-based number of this Batch attempt
ATTR_REQUEST_ID = "batch.request_id"  # Batch's `request-id` response header
ATTR_CLIENT_REQUEST_ID = "batch.client_request_id"  # our `client-request-id` header
ATTR_RETRY_AFTER = "jobupdate.retry_after_s"
ATTR_WAIT_REASON = "jobupdate.wait.reason"

# --- Metric names (instrument name, unit) ---------------------------------------------
METRIC_MESSAGES = "jobupdate.messages"  # counter; ATTR_OUTCOME
METRIC_BATCH_RESPONSES = "jobupdate.batch.responses"  # counter; ATTR_HTTP_STATUS or ATTR_ERROR_TYPE
METRIC_BATCH_RETRIES = "jobupdate.batch.retries"  # counter; attempts after the first
METRIC_THROTTLE_WAIT = "jobupdate.batch.throttle_wait"  # histogram (s); ATTR_WAIT_REASON
METRIC_DURATION = "jobupdate.handling.duration"  # histogram (s); ATTR_OUTCOME
METRIC_PUBLISH_FAILURES = "jobupdate.publish.failures"  # counter
THROTTLED_STATUS = 429
# The attributes each metric's points may carry (tests check the code records no other,
# and that infra/app/alerts.bicep filters only on these).
METRIC_ATTRIBUTES: dict[str, frozenset[str]] = {
    METRIC_MESSAGES: frozenset({ATTR_OUTCOME}),
    METRIC_BATCH_RESPONSES: frozenset({ATTR_HTTP_STATUS, ATTR_ERROR_TYPE}),
    METRIC_BATCH_RETRIES: frozenset(),
    METRIC_THROTTLE_WAIT: frozenset({ATTR_WAIT_REASON}),
    METRIC_DURATION: frozenset({ATTR_OUTCOME}),
    METRIC_PUBLISH_FAILURES: frozenset({ATTR_ERROR_TYPE}),
}

# Wait reasons (ATTR_WAIT_REASON).
WAIT_RETRY_AFTER = "retry-after"
WAIT_FLOW_CONTROL = "flow-control"

# --- Propagation ------------------------------------------------------------------
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
DIAGNOSTIC_ID = "Diagnostic-Id"  # what the Service Bus SDKs read and write

# The flag. Read by the I/O modules once per message / per send; only enable()/disable()
# write it.
ENABLED = False


class _Instruments:
    """The tracer and the instruments, made once by enable()."""

    def __init__(self, tracer: Tracer, meter_provider: MeterProvider | None) -> None:
        from opentelemetry import metrics
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.tracer = tracer
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(INSTRUMENTATION_NAME)
        self.messages: Counter = meter.create_counter(METRIC_MESSAGES, unit="{message}")
        self.responses: Counter = meter.create_counter(METRIC_BATCH_RESPONSES, unit="{response}")
        self.retries: Counter = meter.create_counter(METRIC_BATCH_RETRIES, unit="{attempt}")
        self.throttle_wait: Histogram = meter.create_histogram(METRIC_THROTTLE_WAIT, unit="s")
        self.duration: Histogram = meter.create_histogram(METRIC_DURATION, unit="s")
        self.publish_failures: Counter = meter.create_counter(METRIC_PUBLISH_FAILURES, unit="{event}")
        self.propagator = TraceContextTextMapPropagator()


_instruments: _Instruments | None = None


def enable(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Turn telemetry on; without providers, use the global ones (the worker's distro)."""
    global ENABLED, _instruments
    from opentelemetry import trace

    tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(INSTRUMENTATION_NAME)
    _instruments = _Instruments(tracer, meter_provider)
    ENABLED = True


def disable() -> None:
    global ENABLED, _instruments
    ENABLED = False
    _instruments = None


def _get() -> _Instruments:
    assert _instruments is not None  # callers check ENABLED first
    return _instruments


# --- Attribute hygiene -------------------------------------------------------------


def public_url(url: str) -> str:
    """The URL without query or fragment: a query may be a SAS token."""
    for mark in ("?", "#"):
        url = url.split(mark, 1)[0]
    return redact_text(url)


def _text(value: str | None) -> str | None:
    return None if value is None else redact_text(value)


# --- Propagation --------------------------------------------------------------------


def _as_str(value: Any) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def parent_from(properties: Mapping[str, Any] | None) -> Context | None:
    """The trace context a producer put on the message: `traceparent` (W3C), else
    `Diagnostic-Id` (the Service Bus SDKs' name for the same value). None without one
    or when it is malformed: the handling span then continues the invocation's context."""
    if not properties:
        return None
    parent = _as_str(properties.get(TRACEPARENT)) or _as_str(properties.get(DIAGNOSTIC_ID))
    if not parent:
        return None
    from opentelemetry import trace

    carrier = {TRACEPARENT: parent}
    state = _as_str(properties.get(TRACESTATE))
    if state:
        carrier[TRACESTATE] = state
    context = _get().propagator.extract(carrier)
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    return context


def trace_headers(span: Span) -> dict[str, str]:
    """`traceparent` (and `tracestate`) of `span`, as an outgoing message carries them;
    empty if that fails (the event then goes out without them, never not at all)."""
    from opentelemetry import trace

    carrier: dict[str, str] = {}
    try:
        _get().propagator.inject(carrier, context=trace.set_span_in_context(span))
    except Exception:
        log.debug("injecting the trace context failed", exc_info=True)
        return {}
    return carrier


def name_message(span: Span, event_id: str) -> None:
    try:
        span.set_attribute(ATTR_MESSAGE_ID, event_id)
    except Exception:
        log.debug("naming the published message failed", exc_info=True)


# --- The handling span ---------------------------------------------------------------

_message_ids: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "jobupdate_ids", default=(None, None)
)


class HandlingTrace:
    """The handling span of one message and what ends up on it. Every method is guarded:
    a telemetry bug is logged at debug and never reaches the message's outcome."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def finish(
        self,
        *,
        outcome: str,
        job_id: str | None,
        account: str | None,
        attempts: int,
        error_code: str | None,
        http_status: int | None,
        duration_s: float,
    ) -> None:
        try:
            # One set_attributes call: the SDK takes its lock and builds a dict per call.
            attributes: dict[str, str | int] = {ATTR_OUTCOME: outcome, ATTR_ATTEMPTS: attempts}
            if job_id is not None:
                attributes[ATTR_JOB_ID] = job_id
                _message_ids.set((_message_ids.get()[0], job_id))  # reset when the span ends
            if account is not None:
                attributes[ATTR_ACCOUNT] = redact_text(account)
            if error_code is not None:
                attributes[ATTR_ERROR_CODE] = redact_text(error_code)
            if http_status is not None:
                attributes[ATTR_HTTP_STATUS] = http_status
            self.span.set_attributes(attributes)
            instruments = _get()
            labels = {ATTR_OUTCOME: outcome}
            instruments.messages.add(1, labels)
            instruments.duration.record(duration_s, labels)
        except Exception:
            log.debug("recording the handling span failed", exc_info=True)


@contextmanager
def handling_span(
    *,
    message_id: str,
    delivery_count: int,
    copy: int,
    queue: str,
    properties: Mapping[str, Any] | None,
) -> Iterator[HandlingTrace]:
    """The message's handling span, current for everything the handler does inside."""
    from opentelemetry import trace

    try:
        instruments = _get()
        parent = parent_from(properties)
        links = None
        if parent is not None:
            # The producer's trace wins; the invocation's own context (the host's span,
            # attached by the worker) stays reachable as a link.
            invocation = trace.get_current_span().get_span_context()
            if invocation.is_valid:
                links = [trace.Link(invocation)]
        safe_id = redact_text(message_id)
        span = instruments.tracer.start_span(
            SPAN_HANDLE,
            context=parent,
            links=links,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                ATTR_MESSAGING_SYSTEM: "servicebus",
                ATTR_MESSAGING_OPERATION: "process",
                ATTR_MESSAGING_DESTINATION: queue,
                ATTR_MESSAGE_ID: safe_id,
                ATTR_DELIVERY_COUNT: delivery_count,
                ATTR_COPY: copy,
            },
        )
    except Exception:
        log.debug("starting the handling span failed", exc_info=True)
        span = trace.INVALID_SPAN
        safe_id = None
    ids = _message_ids.set((safe_id, None))
    handling = HandlingTrace(span)
    try:
        with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
            yield handling
    finally:
        _message_ids.reset(ids)


@contextmanager
def publish_span(*, topic: str) -> Iterator[Span]:
    """The publish: a PRODUCER span whose context the outcome event carries out."""
    from opentelemetry import trace

    span = _get().tracer.start_span(
        SPAN_PUBLISH,
        kind=trace.SpanKind.PRODUCER,
        attributes={
            ATTR_MESSAGING_SYSTEM: "servicebus",
            ATTR_MESSAGING_OPERATION: "send",
            ATTR_MESSAGING_DESTINATION: topic,
        },
    )
    # Not made current (it has no children of ours): saves a context attach per message.
    try:
        yield span
    except BaseException as exc:
        # The handler wraps the publisher's error in RetryLater: name the cause.
        kind = type(exc.__cause__ or exc).__name__
        span.set_attribute(ATTR_ERROR_TYPE, kind)
        span.set_status(trace.StatusCode.ERROR)
        _get().publish_failures.add(1, {ATTR_ERROR_TYPE: kind})
        raise
    finally:
        span.end()


# --- Batch attempts, waits, token -------------------------------------------------------


@contextmanager
def attempt_span(method: str, url: str, headers: Mapping[str, str], attempt: int) -> Iterator[Span]:
    """One Batch attempt: an HTTP CLIENT span. The caller reports the reply with
    `attempt_reply` or the failure with `attempt_failed`."""
    from opentelemetry import trace

    try:
        instruments = _get()
        attributes: dict[str, str | int] = {
            ATTR_HTTP_METHOD: method,
            ATTR_URL: public_url(url),
            ATTR_ATTEMPT: attempt,
        }
        parsed = urlsplit(url)
        if parsed.hostname:
            attributes[ATTR_SERVER_ADDRESS] = parsed.hostname
        attributes[ATTR_SERVER_PORT] = parsed.port or 443
        if attempt > 1:
            attributes[ATTR_RESEND_COUNT] = attempt - 1
            instruments.retries.add(1)
        client_request_id = headers.get("client-request-id")
        if client_request_id:
            attributes[ATTR_CLIENT_REQUEST_ID] = redact_text(client_request_id)
        span = instruments.tracer.start_span(method, kind=trace.SpanKind.CLIENT, attributes=attributes)
    except Exception:  # a malformed URL or a telemetry bug: the attempt goes ahead untraced
        log.debug("starting a Batch attempt span failed", exc_info=True)
        span = trace.INVALID_SPAN
    # Not made current: a token fetched inside the attempt is the handling span's child.
    try:
        yield span
    finally:
        span.end()


def attempt_reply(span: Span, status: int, request_id: str | None, retry_after: float | None) -> None:
    try:
        from opentelemetry import trace

        attributes: dict[str, str | int | float] = {ATTR_HTTP_STATUS: status}
        if request_id:
            attributes[ATTR_REQUEST_ID] = redact_text(request_id)
        if retry_after is not None:
            attributes[ATTR_RETRY_AFTER] = retry_after
        if status >= 400:
            # HTTP semconv: error.type is the status code as a string for 4xx/5xx.
            attributes[ATTR_ERROR_TYPE] = str(status)
            span.set_status(trace.StatusCode.ERROR)
        span.set_attributes(attributes)
        _get().responses.add(1, {ATTR_HTTP_STATUS: status})
    except Exception:
        log.debug("recording a Batch reply failed", exc_info=True)


def attempt_failed(span: Span, failure: str) -> None:
    """A transport failure (no reply): its class name, never its text (it may echo a URL)."""
    try:
        from opentelemetry import trace

        kind = failure.split(":", 1)[0].strip() or "TransportError"
        span.set_attribute(ATTR_ERROR_TYPE, kind)
        span.set_status(trace.StatusCode.ERROR)
        _get().responses.add(1, {ATTR_ERROR_TYPE: kind})
    except Exception:
        log.debug("recording a Batch failure failed", exc_info=True)


def record_wait(seconds: float, reason: str) -> None:
    """A throttling wait that already happened (a Retry-After sleep)."""
    try:
        _get().throttle_wait.record(seconds, {ATTR_WAIT_REASON: reason})
    except Exception:
        log.debug("recording a wait failed", exc_info=True)


@contextmanager
def flow_wait_span() -> Iterator[None]:
    """Waiting for the account's gate (a slot or an account-wide pause)."""
    from opentelemetry import trace

    started = time.perf_counter()
    span = _get().tracer.start_span(SPAN_FLOW_WAIT, kind=trace.SpanKind.INTERNAL)
    try:
        yield
    finally:
        span.end()
        record_wait(time.perf_counter() - started, WAIT_FLOW_CONTROL)


@contextmanager
def token_span() -> Iterator[Span]:
    """A token fetch (cache miss or refresh). No token, scope secret or claim is recorded."""
    from opentelemetry import trace

    span = _get().tracer.start_span(SPAN_TOKEN, kind=trace.SpanKind.INTERNAL)
    with trace.use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        try:
            yield span
        except BaseException as exc:
            span.set_attribute(ATTR_ERROR_TYPE, type(exc).__name__)
            span.set_status(trace.StatusCode.ERROR)
            raise


# --- Logs: one JSON object per line (local runs) ---------------------------------------


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record with the ids that tie it to its trace and message.

    The message text is redacted again here (belt and braces: every caller already
    redacts what came from a message)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        message_id, job_id = _message_ids.get()
        if message_id is not None:
            entry["messageId"] = message_id
        if job_id is not None:
            entry["jobId"] = job_id
        if ENABLED:
            from opentelemetry import trace

            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                entry["traceId"] = format(context.trace_id, "032x")
                entry["spanId"] = format(context.span_id, "016x")
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_local_logging(level: int) -> None:
    """Local runs (host loop, `python -m localrun`, `dev.py serve`): JSON lines on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def setup_local() -> None:
    """Local runs: an SDK tracer and meter with no exporter, so the logs carry real
    trace and span ids and the code paths are the ones Azure runs.

    `OTEL_SDK_DISABLED=true` (OpenTelemetry's own switch) leaves telemetry off, for
    runs that measure the function's own cost."""
    import os

    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    enable(SdkTracerProvider(), SdkMeterProvider())
