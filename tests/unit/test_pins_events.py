"""Pins for outcome events (found by mutation testing: tests/mutation): every
envelope attribute, every optional field present exactly when it should be, and the
size limits (50 problems; changes reduced to names past 192 KiB) from both sides."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from handlers.errors import Problem
from handlers.events import (
    DATA_SCHEMA,
    EVENT_CONTENT_TYPE,
    MAX_EVENT_BYTES,
    MAX_PROBLEMS,
    account_of,
    build_event,
    event_data,
    event_id,
    event_type,
    outcome_json_schema,
)
from handlers.outcomes import Outcome, Result, Write
from handlers.wire import BatchError

ENDPOINT = "https://acct.westeurope.batch.azure.com"
NAMESPACE = uuid.UUID("3b7f4f0e-0a2c-4d9e-8c1a-6f5e2d4b9a17")  # docs: ids are stable UUIDv5s
NOW = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def envelope(result: Result, message_id: str = "m-1", **kw: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(build_event(result, message_id, now=NOW, **kw).body)
    return data


def test_ids_and_types() -> None:
    assert event_id("m-1", Outcome.applied) == str(uuid.uuid5(NAMESPACE, "m-1\napplied"))
    assert event_type(Outcome.given_up) == "dev.batchjobupdate.job.given-up"
    assert EVENT_CONTENT_TYPE == "application/cloudevents+json"


def test_the_envelope_of_a_job_event() -> None:
    event = build_event(Result(Outcome.applied, job_id="j1", endpoint=ENDPOINT), "m-1", now=NOW)
    body = json.loads(event.body)
    assert {k: v for k, v in body.items() if k != "data"} == {
        "id": event_id("m-1", Outcome.applied),
        "source": f"{ENDPOINT}/jobs/j1",
        "type": "dev.batchjobupdate.job.applied",
        "specversion": "1.0",
        "time": "2026-01-01T12:00:00.123456Z",
        "datacontenttype": "application/json",
        "dataschema": DATA_SCHEMA,
        "sourcemessageid": "m-1",
        "subject": "j1",
    }
    assert (event.id, event.outcome, event.source_message_id) == (body["id"], Outcome.applied, "m-1")
    assert (event.job_id, event.account, event.http_status, event.error_code) == ("j1", "acct", None, None)


def test_time_is_utc_whatever_the_clock_zone() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=2)))
    body = json.loads(build_event(Result(Outcome.rejected), "m", now=local).body)
    assert body["time"] == "2026-01-01T12:00:00.123456Z"
    fresh = json.loads(build_event(Result(Outcome.rejected), "m").body)["time"]
    assert fresh.endswith("Z") and "+" not in fresh


@pytest.mark.parametrize(
    ("job_id", "endpoint", "source"),
    [
        (None, None, "urn:batch-job-update"),
        ("j1", None, "urn:batch-job-update"),
        (None, ENDPOINT, "urn:batch-job-update"),
    ],
)
def test_source_needs_both_endpoint_and_job(job_id: str | None, endpoint: str | None, source: str) -> None:
    body = envelope(Result(Outcome.rejected, job_id=job_id, endpoint=endpoint))
    assert body["source"] == source
    assert ("subject" in body) is (job_id is not None)


def test_a_bare_result_has_only_the_required_fields() -> None:
    assert event_data(Result(Outcome.rejected)) == {
        "outcome": "rejected",
        "jobId": None,
        "attempts": 0,
        "durationMs": 0.0,
    }


def test_every_optional_field_appears_when_set() -> None:
    result = Result(
        Outcome.precondition_failed,
        job_id="j1",
        endpoint=ENDPOINT,
        mode="merge",
        http_status=412,
        error=BatchError(
            "ConditionNotMet", "not met: password=hunter2", {"RequestId": "r", "PropertyValue": "v"}
        ),
        request_id="r",
        client_request_id="c",
        etag="0x1",
        last_modified="Thu, 01 Jan 2026 12:00:00 GMT",
        attempts=3,
        write=Write.none,
        conditions_met=False,
        in_place=True,
    )
    assert event_data(result, 12.345) == {
        "outcome": "precondition-failed",
        "jobId": "j1",
        "endpoint": ENDPOINT,
        "mode": "merge",
        "httpStatus": 412,
        "requestId": "r",
        "clientRequestId": "c",
        "etag": "0x1",
        "lastModified": "Thu, 01 Jan 2026 12:00:00 GMT",
        "write": "none",
        "conditionsMet": False,
        "error": {
            "code": "ConditionNotMet",
            "message": "not met: password=***",
            "values": {"RequestId": "r", "PropertyValue": "<string>"},
        },
        "inPlace": True,
        "attempts": 3,
        "durationMs": 12.3,
    }
    event = build_event(result, "m")
    assert (event.http_status, event.error_code, event.account) == (412, "ConditionNotMet", "acct")
    assert event.application_properties() == {
        "outcome": "precondition-failed",
        "jobId": "j1",
        "account": "acct",
        "httpStatus": 412,
        "errorCode": "ConditionNotMet",
    }
    assert build_event(Result(Outcome.rejected), "m").application_properties() == {"outcome": "rejected"}


def test_conditions_met_true_and_in_place_false() -> None:
    data = event_data(Result(Outcome.applied, conditions_met=True, write=Write.this_delivery))
    assert data["conditionsMet"] is True and data["write"] == "this-delivery"
    assert "inPlace" not in data


def test_changes_only_when_there_are_some_or_a_dry_run() -> None:
    assert "changes" not in event_data(Result(Outcome.applied))
    assert event_data(Result(Outcome.dry_run))["changes"] == {}
    data = event_data(Result(Outcome.applied, changes={"metadata": {"to": [{"name": "n", "value": "s"}]}}))
    assert data["changes"] == {"metadata": {"to": [{"name": "n", "value": "<string>"}]}}


def test_problems_are_capped_at_50_with_truncated() -> None:
    assert MAX_PROBLEMS == 50
    fifty = tuple(Problem(f"$.p{i}", "c", "token=abc") for i in range(50))
    data = event_data(Result(Outcome.rejected, problems=fifty))
    assert len(data["problems"]) == 50 and "truncated" not in data
    assert data["problems"][0] == {"path": "$.p0", "code": "c", "message": "token=***"}
    data = event_data(Result(Outcome.rejected, problems=(*fifty, Problem("$.x", "c", "m"))))
    assert len(data["problems"]) == 50 and data["truncated"] is True
    assert "problems" not in event_data(Result(Outcome.rejected))


def _pool_change(size: int) -> dict[str, Any]:
    return {"poolInfo": {"to": {"autoPoolSpecification": {"pool": {f"k{i:06d}": 1 for i in range(size)}}}}}


def test_a_huge_change_is_reduced_to_names_and_a_fitting_one_is_not() -> None:
    assert MAX_EVENT_BYTES == 192 * 1024
    small = build_event(
        Result(Outcome.applied, job_id="j", endpoint=ENDPOINT, changes=_pool_change(100)), "m"
    )
    assert "truncated" not in json.loads(small.body)["data"]
    huge = build_event(
        Result(Outcome.applied, job_id="j", endpoint=ENDPOINT, changes=_pool_change(20_000)), "m"
    )
    data = json.loads(huge.body)["data"]
    assert data["changes"] == {"poolInfo": {"to": "<omitted>"}}
    assert data["truncated"] is True
    assert len(huge.body) <= MAX_EVENT_BYTES


def test_account_of() -> None:
    assert account_of(ENDPOINT) == "acct"
    assert account_of("https://localhost:8443") == "localhost:8443"
    assert account_of(None) is None
    assert account_of("") is None


def test_the_outcome_schema_names_every_outcome() -> None:
    schema = outcome_json_schema()
    assert schema["$id"] == DATA_SCHEMA
    assert set(schema["properties"]["outcome"]["enum"]) == {o.value for o in Outcome}


def test_events_and_results_are_frozen() -> None:
    import dataclasses

    from pydantic import ValidationError

    from handlers.events import EventError, OutcomeData

    event = build_event(Result(Outcome.rejected), "m")
    for record in (event, Result(Outcome.rejected), Problem("$", "c", "m")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.__setattr__(dataclasses.fields(record)[0].name, None)
    data = OutcomeData.model_validate(event_data(Result(Outcome.rejected)))
    with pytest.raises(ValidationError):
        data.attempts = 5
    with pytest.raises(ValidationError):
        EventError.model_validate({"code": "c", "message": "m", "extra": 1})
    with pytest.raises(ValidationError):
        EventError.model_validate({"code": 5, "message": "m"})  # strict: no coercion


def test_event_bodies_are_compact_json() -> None:
    event = build_event(
        Result(Outcome.applied, job_id="j", endpoint=ENDPOINT, changes={"priority": {"to": 1}}), "m"
    )
    assert event.body == json.dumps(json.loads(event.body), separators=(",", ":")).encode()
    huge = build_event(
        Result(Outcome.applied, job_id="j", endpoint=ENDPOINT, changes=_pool_change(20_000)), "m"
    )
    assert huge.body == json.dumps(json.loads(huge.body), separators=(",", ":")).encode()


def test_a_huge_event_without_changes_is_sent_as_it_is() -> None:
    result = Result(Outcome.failed, job_id="j", endpoint=ENDPOINT, error=BatchError("Big", "x" * 200_000))
    data = json.loads(build_event(result, "m").body)["data"]
    assert len(data["error"]["message"]) == 200_000 and "truncated" not in data


def test_the_event_size_limit_itself_is_allowed() -> None:
    def event(pad: int) -> bytes:
        changes = {"poolInfo": {"to": {"autoPoolSpecification": {"pool": {"k" * pad: 1}}}}}
        result = Result(Outcome.applied, job_id="j", endpoint=ENDPOINT, changes=changes)
        return build_event(result, "m", now=NOW).body

    base = len(event(1))
    exact = event(1 + MAX_EVENT_BYTES - base)
    assert len(exact) == MAX_EVENT_BYTES
    assert "truncated" not in json.loads(exact)["data"]
    over = json.loads(event(2 + MAX_EVENT_BYTES - base))["data"]
    assert over["truncated"] is True


def test_the_outcome_schema_uses_the_wire_names() -> None:
    properties = outcome_json_schema()["properties"]
    assert {"jobId", "httpStatus", "durationMs", "conditionsMet", "inPlace"} <= set(properties)
    assert "job_id" not in properties
