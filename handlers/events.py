"""Outcome events: one CloudEvents 1.0 JSON event per message.

The event id is derived from the source message id and the outcome, so a
republished event (after a redelivery) is a duplicate that the topic's
duplicate detection drops, not a new event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from handlers.outcomes import Outcome, Result
from handlers.redaction import public_changes, public_error_values, redact_text

EVENT_TYPE_PREFIX = "dev.batchjobupdate.job."
EVENT_CONTENT_TYPE = "application/cloudevents+json"
DATA_SCHEMA = "https://schemas.batch-job-update.dev/outcome/1.0.json"
# An event must fit a Service Bus Standard message (256 KiB with its headers): at most
# this many problems are listed, and `changes` shrinks to names past this size.
MAX_PROBLEMS = 50
MAX_EVENT_BYTES = 192 * 1024
# Past MAX_EVENT_BYTES, each problem's path and text are cut to this many characters:
# they carry the message's own field names, which JSON writes at up to 12 bytes a
# character (an astral one as a \uXXXX\uXXXX pair), so 50 long names could otherwise
# outgrow a message. At worst 50 x 2 x 128 x 12 bytes: 150 KiB.
MAX_PROBLEM_TEXT = 128
_EVENT_NAMESPACE = uuid.UUID("3b7f4f0e-0a2c-4d9e-8c1a-6f5e2d4b9a17")
# What json.dumps(..., separators=(",", ":")) builds on every call, built once: the same
# output byte for byte, without an encoder object per event (docs/publish-profile.md).
_JSON = json.JSONEncoder(separators=(",", ":"))


def event_type(outcome: Outcome) -> str:
    return EVENT_TYPE_PREFIX + outcome.value


def event_id(message_id: str, outcome: Outcome) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{message_id}\n{outcome.value}"))


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    """A built event plus what the publisher needs to route and filter it."""

    id: str
    outcome: Outcome
    body: bytes  # the CloudEvent, structured JSON
    source_message_id: str
    job_id: str | None
    account: str | None
    http_status: int | None
    error_code: str | None
    # --- trace context (docs/telemetry.md): the publish span's W3C traceparent, or None
    traceparent: str | None = None

    def application_properties(self) -> dict[str, str | int]:
        """Properties subscriptions filter on with SQL rules (and, with a trace, the
        `Diagnostic-Id` the Service Bus SDKs continue a trace from)."""
        props: dict[str, str | int] = {"outcome": self.outcome.value}
        if self.traceparent is not None:
            props["Diagnostic-Id"] = self.traceparent
        if self.job_id is not None:
            props["jobId"] = self.job_id
        if self.account is not None:
            props["account"] = self.account
        if self.http_status is not None:
            props["httpStatus"] = self.http_status
        if self.error_code is not None:
            props["errorCode"] = self.error_code
        return props


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)


class EventError(_Strict):
    """Batch's error (code, text, key/value details), or ours: NoReply, InternalError."""

    code: str
    message: str
    values: dict[str, str] = Field(default_factory=dict)


class EventProblem(_Strict):
    path: str = Field(description="JSON path of the field in the message, e.g. $.update.priority")
    code: str
    message: str


class EventChange(_Strict):
    from_: Any = Field(None, alias="from", description="The job's value as read (merge, dry run)")
    to: Any = Field(description="The value written (or, in a dry run, that would be)")


class OutcomeData(_Strict):
    """The `data` of every outcome event (docs/outcome-events.md explains each field)."""

    model_config = ConfigDict(
        title="JobUpdateOutcome",
        json_schema_extra={"$id": "https://schemas.batch-job-update.dev/outcome/1.0.json"},
    )

    outcome: Literal["applied", "dry-run", "precondition-failed", "rejected", "failed", "given-up"]
    job_id: str | None = Field(alias="jobId", description="null when a rejected message named no valid job")
    endpoint: str | None = None
    mode: Literal["replace", "merge", "dry-run"] | None = None
    http_status: int | None = Field(None, alias="httpStatus")
    request_id: str | None = Field(None, alias="requestId")
    client_request_id: str | None = Field(None, alias="clientRequestId")
    etag: str | None = None
    last_modified: str | None = Field(None, alias="lastModified")
    write: Literal["this-delivery", "earlier-delivery", "none"] | None = Field(
        None,
        description="this-delivery: this delivery's PATCH got 200. earlier-delivery: the values are "
        "in place and this message's own earlier delivery or retried attempt can explain the 412 "
        "(Batch cannot say who wrote). none: this message wrote nothing",
    )
    conditions_met: bool | None = Field(
        None,
        alias="conditionsMet",
        description="Did the message's conditions hold? Absent when it had none or when it cannot "
        "be known; dry runs: would they hold now",
    )
    in_place: bool | None = Field(
        None, alias="inPlace", description="The job already held every requested value"
    )
    error: EventError | None = None
    problems: list[EventProblem] | None = None
    changes: dict[str, EventChange] | None = None
    truncated: bool | None = Field(
        None,
        description="true when problems were cut to the first 50 (or their texts shortened) or changes to "
        "their names (size)",
    )
    attempts: int = Field(ge=0)
    scheduled_copies: int | None = Field(
        None,
        alias="scheduledCopies",
        ge=1,
        description="Retries off the lock: how many scheduled copies of the message came before this outcome",
    )
    duration_ms: float = Field(alias="durationMs", ge=0)
    flow_wait_ms: float | None = Field(
        None,
        alias="flowWaitMs",
        ge=0,
        description="Milliseconds this delivery waited for its Batch account under flow control "
        "(for a slot, or an account-wide Retry-After pause); part of durationMs. Absent when flow "
        "control is off or no request was sent",
    )


def outcome_json_schema() -> dict[str, Any]:
    return OutcomeData.model_json_schema(by_alias=True, mode="validation")


def event_data(result: Result, duration_ms: float = 0.0) -> dict[str, Any]:
    """The `data` of an outcome event (schema: `OutcomeData`, docs/outcome.schema.json).
    Redacted: never carries a secret."""
    data: dict[str, Any] = {"outcome": result.outcome.value, "jobId": result.job_id}
    optional: dict[str, Any] = {
        "endpoint": result.endpoint,
        "mode": result.mode,
        "httpStatus": result.http_status,
        "requestId": result.request_id,
        "clientRequestId": result.client_request_id,
        "etag": result.etag,
        "lastModified": result.last_modified,
        "write": result.write.value if result.write is not None else None,
        "conditionsMet": result.conditions_met,
    }
    data.update({k: v for k, v in optional.items() if v is not None})
    # Only these can carry message or service text: each goes through an allow-list
    # (redaction.py), with credential shapes scrubbed from free text behind it.
    if result.error is not None:
        data["error"] = {
            "code": result.error.code,
            "message": redact_text(result.error.message),
            "values": public_error_values(dict(result.error.values)),
        }
    if result.problems:
        shown = result.problems[:MAX_PROBLEMS]
        data["problems"] = [{**p.as_dict(), "message": redact_text(p.message)} for p in shown]
        if len(result.problems) > MAX_PROBLEMS:
            data["truncated"] = True
    if result.changes or result.outcome is Outcome.dry_run:  # a dry run says so even when nothing would
        data["changes"] = public_changes(dict(result.changes))
    if result.in_place:
        data["inPlace"] = True
    data["attempts"] = result.attempts
    if result.scheduled_copies:
        data["scheduledCopies"] = result.scheduled_copies
    data["durationMs"] = round(duration_ms, 1)
    if result.flow_wait_ms is not None:
        data["flowWaitMs"] = round(result.flow_wait_ms, 1)
    return data


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM_TEXT else text[: MAX_PROBLEM_TEXT - 1] + "…"


def account_of(endpoint: str | None) -> str | None:
    """`https://acct.region.batch.azure.com` -> `acct` (the emulator's `localhost:port` as is)."""
    if not endpoint:
        return None
    host = endpoint.removeprefix("https://")
    return host.split(".", 1)[0] if "." in host else host


def build_event(
    result: Result,
    message_id: str,
    *,
    duration_ms: float = 0.0,
    now: datetime | None = None,
    trace_context: Mapping[str, str] | None = None,
) -> OutcomeEvent:
    """`trace_context`: `traceparent` (and `tracestate`) to carry as the CloudEvents
    distributed-tracing extension (top-level attributes)."""
    source = (
        f"{result.endpoint}/jobs/{result.job_id}"
        if result.endpoint and result.job_id
        else "urn:batch-job-update"
    )
    attributes: dict[str, Any] = {
        "id": event_id(message_id, result.outcome),
        "source": source,
        "type": event_type(result.outcome),
        "specversion": "1.0",
        # RFC 3339 in UTC, as the CloudEvents JSON format writes it.
        "time": (now or datetime.now(UTC)).astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "dataschema": DATA_SCHEMA,
        "sourcemessageid": message_id,
    }
    if result.job_id:
        attributes["subject"] = result.job_id
    traceparent = trace_context.get("traceparent") if trace_context else None
    if traceparent:  # --- trace context
        attributes["traceparent"] = traceparent
        if trace_context and trace_context.get("tracestate"):
            attributes["tracestate"] = trace_context["tracestate"]
    # Structured-mode JSON written directly: every attribute is ours and well-formed
    # by construction, so the cloudevents SDK's per-event validation (half the cost of
    # an event, docs/performance.md) buys nothing here; tests read it back with the SDK.
    attributes["data"] = data = event_data(result, duration_ms)
    body = _JSON.encode(attributes).encode()
    if len(body) > MAX_EVENT_BYTES and "changes" in data:
        # A huge pool specification: its shape alone could outgrow a Service Bus message,
        # and an event that cannot be sent would leave the message with no outcome.
        data["changes"] = {name: {"to": "<omitted>"} for name in data["changes"]}
        data["truncated"] = True
        body = _JSON.encode(attributes).encode()
    if len(body) > MAX_EVENT_BYTES and "problems" in data:
        data["problems"] = [{k: _cut(v) for k, v in p.items()} for p in data["problems"]]
        data["truncated"] = True
        body = _JSON.encode(attributes).encode()
    return OutcomeEvent(
        id=attributes["id"],
        outcome=result.outcome,
        body=body,
        source_message_id=message_id,
        job_id=result.job_id,
        account=account_of(result.endpoint),
        http_status=result.http_status,
        error_code=result.error.code if result.error else None,
        traceparent=traceparent,
    )
