from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from handlers.errors import Problem
from handlers.events import OutcomeData, build_event, event_id
from handlers.outcomes import Outcome, Result
from handlers.redaction import REDACTED, redact, redact_text
from handlers.wire import BatchError

SECRETS = ["hunter2", "regpass", "c2FzLWtleQ==", "sv=2024&sig=abc", "cifs-pass", "TOPSECRET", "eyJ0eXAi"]

POOL = {
    "vmSize": "standard_d2s_v3",
    "userAccounts": [{"name": "ops", "password": "hunter2"}],
    "virtualMachineConfiguration": {
        "containerConfiguration": {
            "containerRegistries": [{"registryServer": "r.io", "username": "u", "password": "regpass"}]
        }
    },
    "mountConfiguration": [
        {
            "azureBlobFileSystemConfiguration": {
                "accountName": "s",
                "accountKey": "c2FzLWtleQ==",
                "sasKey": "sv=2024&sig=abc",
            }
        },
        {"cifsMountConfiguration": {"username": "u", "password": "cifs-pass", "source": "//h/s"}},
    ],
    "startTask": {
        "commandLine": "run",
        "environmentSettings": [{"name": "API_TOKEN", "value": "TOPSECRET"}],
        "resourceFiles": [{"httpUrl": "https://s.blob.core.windows.net/c/f?sv=2024&sig=eyJ0eXAi"}],
    },
}


def test_redact_removes_every_secret_and_keeps_the_rest() -> None:
    out = json.dumps(redact(POOL))
    for secret in SECRETS:
        assert secret not in out
    assert "standard_d2s_v3" in out and "https://s.blob.core.windows.net/c/f?***" in out
    assert redact(POOL)["userAccounts"][0] == {"name": "ops", "password": REDACTED}


def test_redact_text_strips_credentials() -> None:
    assert redact_text("Authorization: Bearer eyJabc.def") == f"Authorization: Bearer {REDACTED}"
    assert redact_text("SharedKey acct:sig==") == f"SharedKey {REDACTED}"


def test_event_shape_ids_and_redaction() -> None:
    result = Result(
        Outcome.failed,
        job_id="j1",
        endpoint="https://acct.westeurope.batch.azure.com",
        http_status=409,
        error=BatchError("JobCompleted", "The job is completed", {"Reason": "x"}),
        request_id="r1",
        client_request_id="c1",
        attempts=1,
        changes={"poolInfo": {"to": {"autoPoolSpecification": {"poolLifetimeOption": "job", "pool": POOL}}}},
    )
    event = build_event(result, "msg-1", now=datetime(2026, 1, 1, tzinfo=UTC))
    doc = json.loads(event.body)
    assert doc["specversion"] == "1.0"
    assert doc["id"] == event.id == event_id("msg-1", Outcome.failed)
    assert doc["type"] == "dev.batchjobupdate.job.failed"
    assert doc["source"] == "https://acct.westeurope.batch.azure.com/jobs/j1"
    assert doc["subject"] == "j1"
    assert doc["data"]["error"]["code"] == "JobCompleted"
    assert doc["data"]["httpStatus"] == 409
    OutcomeData.model_validate(doc["data"])  # the published schema describes it
    for secret in SECRETS:
        assert secret not in event.body.decode()
    assert event.application_properties() == {
        "outcome": "failed",
        "jobId": "j1",
        "account": "acct",
        "httpStatus": 409,
        "errorCode": "JobCompleted",
    }


def test_event_id_is_deterministic_per_message_and_outcome() -> None:
    assert event_id("m", Outcome.applied) == event_id("m", Outcome.applied)
    assert event_id("m", Outcome.applied) != event_id("m", Outcome.given_up)
    assert event_id("m", Outcome.applied) != event_id("n", Outcome.applied)


def test_rejected_event_carries_problems_and_no_source_url() -> None:
    result = Result(Outcome.rejected, problems=(Problem("$.update.priority", "int_type", "bad"),))
    doc = json.loads(build_event(result, "m2").body)
    assert doc["source"] == "urn:batch-job-update"
    assert doc["data"]["problems"] == [{"path": "$.update.priority", "code": "int_type", "message": "bad"}]
    assert "subject" not in doc


def test_secrets_echoed_in_batch_error_values_and_text_are_redacted() -> None:
    echoed = json.dumps(
        {"autoPoolSpecification": {"pool": {"userAccounts": [{"name": "a", "password": "Hunter2"}]}}}
    )
    result = Result(
        Outcome.failed,
        job_id="j",
        error=BatchError(
            "InvalidPropertyValue",
            "Value password=Hunter2 is invalid; see https://s.blob.core.windows.net/c?sv=1&sig=sas-secret",
            {"PropertyName": "poolInfo", "PropertyValue": echoed},
        ),
    )
    body = build_event(result, "m").body.decode()
    assert "Hunter2" not in body
    assert "sas-secret" not in body
    assert "PropertyName" in body and "poolInfo" in body


def test_protected_settings_and_urls_inside_command_lines_are_redacted() -> None:
    pool = {
        "vmSize": "s",
        "virtualMachineConfiguration": {
            "extensions": [{"name": "e", "protectedSettings": {"commandToExecute": "x"}}]
        },
        "startTask": {"commandLine": "curl -o f 'https://s.blob.core.windows.net/c/f?sv=1&sig=abc' && run"},
    }
    out = redact(pool)
    assert out["virtualMachineConfiguration"]["extensions"][0]["protectedSettings"] == REDACTED
    assert "sig=abc" not in out["startTask"]["commandLine"]
    assert out["startTask"]["commandLine"].startswith("curl -o f 'https://s.blob.core.windows.net/c/f?***'")


@pytest.mark.parametrize(
    "result",
    [
        Result(Outcome.applied, job_id="j1", endpoint="https://acct.westeurope.batch.azure.com", attempts=1),
        Result(Outcome.rejected, problems=(Problem("$.jobId", "invalid_id", "bad ü"),)),
    ],
)
def test_events_are_cloudevents_the_sdk_reads_back(result: Result) -> None:
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    when = datetime(2026, 1, 1, 12, 30, 5, 123456, tzinfo=UTC)
    event = build_event(result, "msg-1", duration_ms=2.5, now=when)
    read = JSONFormat().read(CloudEvent, event.body)
    assert read.get_id() == event.id
    assert read.get_specversion() == "1.0"
    assert read.get_type() == f"dev.batchjobupdate.job.{result.outcome.value}"
    assert read.get_time() == when
    assert read.get_dataschema() == "https://schemas.batch-job-update.dev/outcome/1.0.json"
    assert read.get_extension("sourcemessageid") == "msg-1"
    assert read.get_data() == json.loads(event.body)["data"]
    assert (read.get_subject() is None) == (result.job_id is None)


def test_events_stay_small_enough_to_send_whatever_the_message() -> None:
    from handlers.events import MAX_EVENT_BYTES, MAX_PROBLEMS, OutcomeData
    from handlers.plan import Inbound, Policy, admit

    policy = Policy(
        frozenset({"https://a.westeurope.batch.azure.com"}),
        "https://a.westeurope.batch.azure.com",
        "2025-06-01",
    )
    many_unknown = {"schemaVersion": "1.0", "jobId": "j", "update": {f"u{i}": 0 for i in range(20_000)}}
    done = admit(Inbound(json.dumps(many_unknown).encode(), "m"), policy, datetime.now(UTC))
    assert not isinstance(done, type(None))
    rejected = build_event(done.result, "m")  # type: ignore[union-attr]
    data = json.loads(rejected.body)["data"]
    assert len(data["problems"]) == MAX_PROBLEMS and data["truncated"] is True
    assert len(rejected.body) < MAX_EVENT_BYTES
    OutcomeData.model_validate(data)

    pool = {"x": [0] * 120_000}
    changes = {"poolInfo": {"to": {"autoPoolSpecification": {"pool": pool}}}}
    dry = build_event(Result(Outcome.dry_run, job_id="j", changes=changes), "m")
    data = json.loads(dry.body)["data"]
    assert data["truncated"] is True and data["changes"] == {"poolInfo": {"to": "<omitted>"}}
    assert len(dry.body) < MAX_EVENT_BYTES
    OutcomeData.model_validate(data)
