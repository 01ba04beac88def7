"""The Batch emulator, checked against an independent client and against the contract.

The official azure-batch 15.1 SDK is the oracle for "a real client can use it":
it must read and update jobs over HTTPS, authenticated by azure-identity's real
ManagedIdentityCredential (through the local TokenEndpoint) and by its own
Shared Key signer. Everything else is checked with plain httpx requests, so each
service rule (conditional headers, validation, state, faults, auth) is asserted
on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from azure.batch import BatchClient
from azure.batch import models as batch_models
from azure.batch.aio import BatchClient as AsyncBatchClient
from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.identity import ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential

from standins.batch import BatchEmulator, Fault
from standins.identity import BATCH_RESOURCE, TokenEndpoint, issue_token

SIGNING_KEY = b"batch-emulator-test-signing-key!"
API = "2025-06-01"
JOB = "Job-1"


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokens() -> Iterator[TokenEndpoint]:
    with TokenEndpoint(signing_key=SIGNING_KEY) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def emulator() -> Iterator[BatchEmulator]:
    with BatchEmulator(account_name="testaccount", token_signing_key=SIGNING_KEY) as emu:
        yield emu


@pytest.fixture
def emu(emulator: BatchEmulator) -> BatchEmulator:
    emulator.reset()
    emulator.add_job(
        {
            "id": JOB,
            "priority": 10,
            "constraints": {"maxWallClockTime": "PT2H", "maxTaskRetryCount": 3},
            "metadata": [{"name": "owner", "value": "alice"}],
            "poolInfo": {"poolId": "pool-a"},
        }
    )
    return emulator


@pytest.fixture
def managed_identity_env(tokens: TokenEndpoint, monkeypatch: pytest.MonkeyPatch) -> TokenEndpoint:
    for name, value in tokens.env.items():
        monkeypatch.setenv(name, value)
    for name in ("IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET"):
        monkeypatch.delenv(name, raising=False)
    tokens.reset_counts()
    return tokens


@pytest.fixture
def http(emulator: BatchEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.endpoint, verify=emulator.ssl_context()) as client:
        yield client


def bearer(audience: str = BATCH_RESOURCE, lifetime: int = 600, key: bytes = SIGNING_KEY) -> str:
    token, _ = issue_token(
        key, resource=audience, client_id="test-client", object_id="test-oid", lifetime_seconds=lifetime
    )
    return f"Bearer {token}"


def call(
    http: httpx.Client,
    method: str,
    job_id: str = JOB,
    *,
    body: Any = None,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    auth: str | None = None,
) -> httpx.Response:
    sent_headers = {"Authorization": auth or bearer()}
    content = raw
    if body is not None:
        content = json.dumps(body).encode()
    if content is not None:
        sent_headers["Content-Type"] = "application/json; odata=minimalmetadata"
    sent_headers.update(headers or {})
    query = {"api-version": API} if params is None else dict(params)
    return http.request(method, f"/jobs/{job_id}", params=query, headers=sent_headers, content=content)


def error_of(response: httpx.Response) -> tuple[str, dict[str, str]]:
    body = response.json()
    return body["code"], {item["key"]: item["value"] for item in body.get("values", [])}


def http_date(moment: dt.datetime) -> str:
    return format_datetime(moment.astimezone(dt.UTC), usegmt=True)


# --- the official SDK as an independent client --------------------------------------------


def test_sdk_with_managed_identity_reads_and_updates_job(
    emu: BatchEmulator, managed_identity_env: TokenEndpoint
) -> None:
    client = BatchClient(emu.endpoint, ManagedIdentityCredential(), connection_verify=emu.ca_path)
    job = client.get_job("job-1")  # case-insensitive lookup
    assert job.id == JOB  # case preserved
    assert job.priority == 10
    assert job.constraints is not None and job.constraints.max_task_retry_count == 3
    assert job.url == f"{emu.endpoint}/jobs/{JOB}"

    client.update_job(
        JOB,
        batch_models.BatchJobUpdateOptions(
            priority=500,
            constraints=batch_models.BatchJobConstraints(
                max_wall_clock_time=dt.timedelta(hours=1, minutes=30)
            ),
        ),
        etag=job.etag,
        match_condition=MatchConditions.IfNotModified,
    )
    client.get_job(JOB)

    stored = emu.job(JOB)
    assert stored is not None
    assert stored["priority"] == 500
    # The SDK sends "PT01H30M"; the service stores and returns the canonical form.
    # Top-level merge: constraints without maxTaskRetryCount reset it to 0.
    assert stored["constraints"] == {"maxWallClockTime": "PT1H30M", "maxTaskRetryCount": 0}
    assert stored["eTag"] != job.etag
    (patch,) = emu.patch_log(JOB)
    assert patch.body["priority"] == 500
    assert patch.etag_before == job.etag and patch.etag_after == stored["eTag"]
    assert managed_identity_env.requests == {BATCH_RESOURCE: 1}  # one token, reused
    assert [r.principal for r in emu.requests] == ["Bearer 11111111-1111-1111-1111-111111111111"] * 3
    assert all(r.headers["Authorization"] == "Bearer <redacted>" for r in emu.requests)


def test_sdk_stale_etag_gets_412_as_resource_modified(
    emu: BatchEmulator, managed_identity_env: TokenEndpoint
) -> None:
    client = BatchClient(emu.endpoint, ManagedIdentityCredential(), connection_verify=emu.ca_path)
    etag = client.get_job(JOB).etag
    emu.inject(Fault.concurrent_writer({"priority": 77}, method="PATCH", job_id=JOB))

    with pytest.raises(ResourceModifiedError) as raised:
        client.update_job(
            JOB,
            batch_models.BatchJobUpdateOptions(priority=1),
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )

    assert raised.value.status_code == 412
    assert raised.value.error is not None and raised.value.error.code == "ConditionNotMet"
    assert emu.job(JOB)["priority"] == 77  # type: ignore[index]
    assert emu.patch_log(JOB) == []
    assert emu.requests[-1].headers["If-Match"] == f'"{etag}"'  # the SDK quotes ETags


def test_sdk_maps_missing_and_completed_jobs(emu: BatchEmulator, managed_identity_env: TokenEndpoint) -> None:
    client = BatchClient(emu.endpoint, ManagedIdentityCredential(), connection_verify=emu.ca_path)
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_job("no-such-job")
    assert missing.value.error is not None and missing.value.error.code == "JobNotFound"

    emu.set_job_state(JOB, "completed")
    with pytest.raises(ResourceExistsError) as conflict:
        client.update_job(JOB, batch_models.BatchJobUpdateOptions(priority=1))
    assert conflict.value.status_code == 409
    assert conflict.value.error is not None and conflict.value.error.code == "JobCompleted"


def test_sdk_shared_key_accepted_where_documented_algorithm_agrees(emu: BatchEmulator) -> None:
    credential = AzureNamedKeyCredential(emu.account_name, emu.account_key)
    client = BatchClient(emu.endpoint, credential, connection_verify=emu.ca_path)
    etag = client.get_job(JOB).etag
    client.update_job(
        JOB,
        batch_models.BatchJobUpdateOptions(
            metadata=[batch_models.BatchMetadataItem(name="team", value="b")],
            all_tasks_complete_mode="terminatejob",
        ),
        etag=etag,
        match_condition=MatchConditions.IfNotModified,
    )
    stored = emu.job(JOB)
    assert stored is not None
    assert stored["metadata"] == [{"name": "team", "value": "b"}]  # replaced, not merged
    assert stored["onAllTasksComplete"] == "terminatejob"
    assert {r.principal for r in emu.requests} == {"SharedKey testaccount (documented)"}


def test_sdk_shared_key_with_timeout_needs_the_sdk_variant_flag(emu: BatchEmulator) -> None:
    credential = AzureNamedKeyCredential(emu.account_name, emu.account_key)
    client = BatchClient(emu.endpoint, credential, connection_verify=emu.ca_path)
    # The SDK signs "timeOut:10"; the documented algorithm lower-cases it.
    with pytest.raises(HttpResponseError) as refused:
        client.get_job(JOB, service_timeout=10)
    assert refused.value.status_code == 403
    assert refused.value.error is not None and refused.value.error.code == "AuthenticationFailed"

    with BatchEmulator(
        account_name="testaccount",
        account_key=emu.account_key,
        accept_sdk_shared_key_variant=True,
    ) as lenient:
        lenient.add_job({"id": JOB})
        lenient_client = BatchClient(lenient.endpoint, credential, connection_verify=lenient.ca_path)
        lenient_client.update_job(JOB, batch_models.BatchJobUpdateOptions(priority=3), service_timeout=10)
        assert lenient.job(JOB)["priority"] == 3  # type: ignore[index]
        assert lenient.requests[-1].principal == "SharedKey testaccount (azure-batch-sdk)"


async def test_async_sdk_and_async_credential_work_against_the_loop_thread(
    emu: BatchEmulator, managed_identity_env: TokenEndpoint
) -> None:
    async with (
        AsyncManagedIdentityCredential() as credential,
        AsyncBatchClient(emu.endpoint, credential, connection_verify=emu.ca_path) as client,
    ):
        jobs = await asyncio.gather(*(client.get_job(JOB) for _ in range(10)))
        await client.update_job(JOB, batch_models.BatchJobUpdateOptions(max_parallel_tasks=4))
    assert {job.id for job in jobs} == {JOB}
    assert emu.job(JOB)["maxParallelTasks"] == 4  # type: ignore[index]


# --- responses: headers and error shape ----------------------------------------------------


def test_patch_success_headers(emu: BatchEmulator, http: httpx.Client) -> None:
    client_request_id = str(uuid.uuid4())
    response = call(
        http,
        "PATCH",
        body={"priority": 1},
        headers={"client-request-id": client_request_id, "return-client-request-id": "true"},
    )
    assert response.status_code == 200
    assert response.content == b""
    stored = emu.job(JOB)
    assert stored is not None
    assert response.headers["ETag"] == stored["eTag"]  # bare, like the service
    assert response.headers["ETag"].startswith("0x8D")
    assert response.headers["DataServiceId"] == f"{emu.endpoint}/jobs/{JOB}"
    assert response.headers["client-request-id"] == client_request_id
    uuid.UUID(response.headers["request-id"])
    dt.datetime.strptime(response.headers["Last-Modified"], "%a, %d %b %Y %H:%M:%S GMT")


def test_client_request_id_is_echoed_only_when_asked(emu: BatchEmulator, http: httpx.Client) -> None:
    response = call(http, "GET", headers={"client-request-id": str(uuid.uuid4())})
    assert response.status_code == 200
    assert "client-request-id" not in response.headers
    bad = call(http, "GET", headers={"client-request-id": "{not-a-guid}"})
    assert bad.status_code == 400
    assert error_of(bad) == (
        "InvalidHeaderValue",
        {
            "HeaderName": "client-request-id",
            "HeaderValue": "{not-a-guid}",
            "Reason": "expected a GUID without braces",
        },
    )


def test_get_returns_job_resource_with_odata_metadata(emu: BatchEmulator, http: httpx.Client) -> None:
    response = call(http, "GET", job_id="JOB-1")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["odata.metadata"] == f"{emu.endpoint}/$metadata#jobs/@Element"
    assert body["id"] == JOB
    assert body["eTag"] == response.headers["ETag"]
    for name in (
        "url",
        "lastModified",
        "creationTime",
        "state",
        "priority",
        "allowTaskPreemption",
        "maxParallelTasks",
        "constraints",
        "poolInfo",
        "onAllTasksComplete",
        "metadata",
    ):
        assert name in body


def test_errors_are_batch_error_json(emu: BatchEmulator, http: httpx.Client) -> None:
    response = call(http, "GET", job_id="missing")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json;odata=minimalmetadata"
    body = response.json()
    assert body["code"] == "JobNotFound"
    assert body["odata.metadata"].endswith(
        "$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"
    )
    assert body["message"]["lang"] == "en-US"
    request_id = response.headers["request-id"]
    assert f"\nRequestId:{request_id}\nTime:" in body["message"]["value"]
    assert "values" not in body


# --- conditional headers --------------------------------------------------------------------


@pytest.mark.parametrize("quote", [True, False], ids=["quoted", "bare"])
def test_if_match_accepts_quoted_and_bare_etags(emu: BatchEmulator, http: httpx.Client, quote: bool) -> None:
    etag = emu.job(JOB)["eTag"]  # type: ignore[index]
    sent = f'"{etag}"' if quote else etag
    assert call(http, "PATCH", body={"priority": 2}, headers={"If-Match": sent}).status_code == 200
    assert call(http, "PATCH", body={"priority": 3}, headers={"If-Match": sent}).status_code == 412


def test_unmet_write_conditions_give_412_and_leave_job(emu: BatchEmulator, http: httpx.Client) -> None:
    before = emu.job(JOB)
    past = http_date(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    future = http_date(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    for headers in (
        {"If-Match": '"0x8D0000000000000"'},
        {"If-None-Match": "*"},
        {"If-None-Match": before["eTag"]},  # type: ignore[index]
        {"If-Unmodified-Since": past},
        {"If-Modified-Since": future},
    ):
        response = call(http, "PATCH", body={"priority": 9}, headers=headers)
        assert response.status_code == 412, headers
        assert error_of(response)[0] == "ConditionNotMet"
    assert emu.job(JOB) == before


def test_met_write_conditions_proceed(emu: BatchEmulator, http: httpx.Client) -> None:
    past = http_date(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    future = http_date(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    for headers in (
        {"If-Match": "*"},
        {"If-None-Match": '"0x8D0000000000000"'},
        {"If-Unmodified-Since": future},
        {"If-Modified-Since": past},
    ):
        assert call(http, "PATCH", body={"priority": 5}, headers=headers).status_code == 200, headers


def test_allowed_pairs_are_evaluated_on_the_etag_header(emu: BatchEmulator, http: httpx.Client) -> None:
    etag = emu.job(JOB)["eTag"]  # type: ignore[index]
    past = http_date(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    future = http_date(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    # The dates alone would fail; the ETag header decides.
    ok = call(http, "PATCH", body={"priority": 4}, headers={"If-Match": etag, "If-Unmodified-Since": past})
    assert ok.status_code == 200
    ok = call(
        http, "PATCH", body={"priority": 5}, headers={"If-None-Match": '"other"', "If-Modified-Since": future}
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "names",
    [
        ("If-Match", "If-None-Match"),
        ("If-Match", "If-Modified-Since"),
        ("If-None-Match", "If-Unmodified-Since"),
        ("If-Modified-Since", "If-Unmodified-Since"),
        ("If-Match", "If-Unmodified-Since", "If-Modified-Since"),
    ],
)
def test_other_combinations_are_refused(
    emu: BatchEmulator, http: httpx.Client, names: tuple[str, ...]
) -> None:
    values = {
        "If-Match": "*",
        "If-None-Match": '"x"',
        "If-Modified-Since": http_date(dt.datetime.now(dt.UTC)),
        "If-Unmodified-Since": http_date(dt.datetime.now(dt.UTC)),
    }
    response = call(http, "PATCH", body={"priority": 1}, headers={name: values[name] for name in names})
    assert response.status_code == 400
    assert error_of(response)[0] == "MultipleConditionHeadersNotSupported"


def test_read_conditions_give_304_or_412(emu: BatchEmulator, http: httpx.Client) -> None:
    etag = emu.job(JOB)["eTag"]  # type: ignore[index]
    not_modified = call(http, "GET", headers={"If-None-Match": f'"{etag}"'})
    assert not_modified.status_code == 304
    assert not_modified.headers["ETag"] == etag
    assert not_modified.content == b""
    future = http_date(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    past = http_date(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert call(http, "GET", headers={"If-Modified-Since": future}).status_code == 304
    assert call(http, "GET", headers={"If-Unmodified-Since": past}).status_code == 412
    assert call(http, "GET", headers={"If-Match": '"nope"'}).status_code == 412
    assert call(http, "GET", headers={"If-None-Match": '"nope"'}).status_code == 200


def test_malformed_date_condition_is_invalid_header(emu: BatchEmulator, http: httpx.Client) -> None:
    response = call(http, "PATCH", body={"priority": 1}, headers={"If-Unmodified-Since": "yesterday"})
    assert response.status_code == 400
    assert error_of(response)[1]["HeaderName"] == "If-Unmodified-Since"


# --- body validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "property_name"),
    [
        ({"priority": 1001}, "InvalidPropertyValue", "priority"),
        ({"priority": -1001}, "InvalidPropertyValue", "priority"),
        ({"priority": "5"}, "InvalidPropertyValue", "priority"),
        ({"priority": True}, "InvalidPropertyValue", "priority"),
        ({"maxParallelTasks": 0}, "InvalidPropertyValue", "maxParallelTasks"),
        ({"maxParallelTasks": -2}, "InvalidPropertyValue", "maxParallelTasks"),
        ({"constraints": {"maxTaskRetryCount": -2}}, "InvalidPropertyValue", "maxTaskRetryCount"),
        ({"constraints": {"maxWallClockTime": "01:00:00"}}, "InvalidPropertyValue", "maxWallClockTime"),
        ({"constraints": {"maxWallClockTime": "PT"}}, "InvalidPropertyValue", "maxWallClockTime"),
        ({"constraints": {"retries": 1}}, "UnsupportedProperty", "retries"),
        ({"onAllTasksComplete": "terminate"}, "InvalidPropertyValue", "onAllTasksComplete"),
        ({"allowTaskPreemption": "yes"}, "InvalidPropertyValue", "allowTaskPreemption"),
        ({"priority": None}, "InvalidPropertyValue", "priority"),
        ({"constraints": {"maxTaskRetryCount": None}}, "InvalidPropertyValue", "maxTaskRetryCount"),
        ({"id": "renamed"}, "UnsupportedProperty", "id"),
        ({"displayName": "x"}, "UnsupportedProperty", "displayName"),
        ({"poolInfo": {}}, "InvalidPropertyValue", "poolInfo"),
        (
            {"poolInfo": {"poolId": "p", "autoPoolSpecification": {"poolLifetimeOption": "job"}}},
            "InvalidPropertyValue",
            "poolInfo",
        ),
        (
            {"poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "forever"}}},
            "InvalidPropertyValue",
            "poolLifetimeOption",
        ),
        (
            {
                "poolInfo": {
                    "autoPoolSpecification": {"poolLifetimeOption": "job", "autoPoolIdPrefix": "x" * 21}
                }
            },
            "InvalidPropertyValue",
            "autoPoolIdPrefix",
        ),
        ({"metadata": [{"name": "", "value": "x"}]}, "EmptyMetadataKey", None),
        ({"metadata": [{"name": "a"}]}, "MissingRequiredProperty", "value"),
        ({"metadata": {"name": "a", "value": "b"}}, "InvalidPropertyValue", "metadata"),
        (
            {"networkConfiguration": {"subnetId": "subnet-1", "skipWithdrawFromVNet": False}},
            "InvalidPropertyValue",
            "subnetId",
        ),
        ({"networkConfiguration": {"subnetId": "x"}}, "InvalidPropertyValue", "subnetId"),
        (
            # no providers/{provider} segment
            {
                "networkConfiguration": {
                    "subnetId": "/subscriptions/s/resourceGroups/g/virtualNetworks/v/subnets/a"
                }
            },
            "InvalidPropertyValue",
            "subnetId",
        ),
        ({"networkConfiguration": {"vnetId": "x"}}, "UnsupportedProperty", "vnetId"),
        ({"poolInfo": {"autoPoolSpecification": {"keepalive": True}}}, "UnsupportedProperty", "keepalive"),
        (
            {"poolInfo": {"autoPoolSpecification": {"pool": {"vmSizes": "standard_d2_v3"}}}},
            "UnsupportedProperty",
            "vmSizes",
        ),
        # Durations: XmlConvert's grammar, Int32 components, Int64 ticks in all.
        (
            {"constraints": {"maxWallClockTime": "P10675199DT2H48M5.477581S"}},
            "InvalidPropertyValue",
            "maxWallClockTime",
        ),
        (
            {"constraints": {"maxWallClockTime": "P10675199DT2H48M5.4775808S"}},
            "InvalidPropertyValue",
            "maxWallClockTime",
        ),
        ({"constraints": {"maxWallClockTime": "PT2147483648S"}}, "InvalidPropertyValue", "maxWallClockTime"),
        ({"constraints": {"maxWallClockTime": "PT\u0661H"}}, "InvalidPropertyValue", "maxWallClockTime"),
        ({"constraints": {"maxWallClockTime": "-PT1H"}}, "InvalidPropertyValue", "maxWallClockTime"),
        ({"constraints": {"maxWallClockTime": "P1W"}}, "InvalidPropertyValue", "maxWallClockTime"),
        ({"constraints": {"maxWallClockTime": "P1DT"}}, "InvalidPropertyValue", "maxWallClockTime"),
        ([{"priority": 1}], "InvalidRequestBody", None),
    ],
)
def test_invalid_bodies_are_refused_and_job_untouched(
    emu: BatchEmulator, http: httpx.Client, body: Any, code: str, property_name: str | None
) -> None:
    before = emu.job(JOB)
    response = call(http, "PATCH", body=body)
    assert response.status_code == 400
    got_code, values = error_of(response)
    assert got_code == code
    if property_name is not None:
        assert values["PropertyName"] == property_name
    if code == "InvalidPropertyValue":
        assert {"PropertyName", "PropertyValue", "Reason"} <= values.keys()
    assert emu.job(JOB) == before


def test_invalid_json_is_invalid_request_body(emu: BatchEmulator, http: httpx.Client) -> None:
    response = call(http, "PATCH", raw=b'{"priority": 1,')
    assert response.status_code == 400
    assert error_of(response)[0] == "InvalidRequestBody"


def test_body_too_large_is_413(emu: BatchEmulator, http: httpx.Client) -> None:
    padding = "x" * (1024 * 1024)
    response = call(http, "PATCH", body={"metadata": [{"name": "big", "value": padding}]})
    assert response.status_code == 413
    assert error_of(response)[0] == "RequestBodyTooLarge"


def test_valid_values_at_the_edges_are_accepted(emu: BatchEmulator, http: httpx.Client) -> None:
    body = {
        "priority": -1000,
        "maxParallelTasks": -1,
        "allowTaskPreemption": True,
        "constraints": {"maxWallClockTime": "P1DT90M", "maxTaskRetryCount": -1},
        "onAllTasksComplete": "TerminateJob",  # enums are case-insensitive
        "networkConfiguration": {
            "subnetId": (
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/a"
            ),
            "skipWithdrawFromVNet": True,
        },
    }
    assert call(http, "PATCH", body=body).status_code == 200
    stored = emu.job(JOB)
    assert stored is not None
    assert stored["constraints"] == {"maxWallClockTime": "P1DT1H30M", "maxTaskRetryCount": -1}
    assert stored["onAllTasksComplete"] == "terminatejob"
    assert stored["priority"] == -1000 and stored["allowTaskPreemption"] is True


def test_merge_is_top_level(emu: BatchEmulator, http: httpx.Client) -> None:
    assert call(http, "PATCH", body={"constraints": {"maxTaskRetryCount": 5}}).status_code == 200
    stored = emu.job(JOB)
    assert stored is not None
    # maxWallClockTime was PT2H; omitting it in the nested object means "unlimited".
    assert stored["constraints"] == {"maxWallClockTime": "P10675199DT2H48M5.4775807S", "maxTaskRetryCount": 5}
    assert stored["priority"] == 10 and stored["metadata"] == [{"name": "owner", "value": "alice"}]

    assert call(http, "PATCH", body={"metadata": []}).status_code == 200
    assert "metadata" not in call(http, "GET").json()

    assert call(http, "PATCH", body={}).status_code == 200  # a write with no changes still moves the ETag
    assert len(emu.patch_log(JOB)) == 3


def test_terminatejob_cannot_go_back_to_noaction(emu: BatchEmulator, http: httpx.Client) -> None:
    assert call(http, "PATCH", body={"onAllTasksComplete": "terminatejob"}).status_code == 200
    response = call(http, "PATCH", body={"onAllTasksComplete": "noAction"})
    assert response.status_code == 400
    code, values = error_of(response)
    assert code == "InvalidPropertyValue"
    assert values["PropertyName"] == "onAllTasksComplete"
    assert values["PropertyValue"] == "noaction"
    assert "Reason" in values


# --- job state ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "code"),
    [("completed", "JobCompleted"), ("terminating", "JobBeingTerminated"), ("deleting", "JobBeingDeleted")],
)
def test_jobs_in_final_states_refuse_updates(
    emu: BatchEmulator, http: httpx.Client, state: str, code: str
) -> None:
    emu.set_job_state(JOB, state)
    response = call(http, "PATCH", body={"priority": 1})
    assert response.status_code == 409
    assert error_of(response)[0] == code
    assert call(http, "GET").json()["state"] == state


def test_missing_job_is_404(emu: BatchEmulator, http: httpx.Client) -> None:
    response = call(http, "PATCH", job_id="ghost", body={"priority": 1})
    assert response.status_code == 404
    assert error_of(response)[0] == "JobNotFound"


def test_pool_info_changes_only_while_disabled(emu: BatchEmulator, http: httpx.Client) -> None:
    move = {"poolInfo": {"poolId": "pool-b"}}
    refused = call(http, "PATCH", body=move)
    assert refused.status_code == 409
    assert error_of(refused)[0] == "OperationInvalidForCurrentState"

    emu.set_job_state(JOB, "disabled")
    assert call(http, "PATCH", body=move).status_code == 200
    assert emu.job(JOB)["poolInfo"] == {"poolId": "pool-b"}  # type: ignore[index]


def test_auto_pool_only_keep_alive_changes(emulator: BatchEmulator, http: httpx.Client) -> None:
    emulator.reset()
    spec = {"poolLifetimeOption": "job", "keepAlive": False, "pool": {"vmSize": "standard_d2_v3"}}
    emulator.add_job({"id": JOB, "state": "disabled", "poolInfo": {"autoPoolSpecification": spec}})
    keep_alive = {"poolInfo": {"autoPoolSpecification": {**spec, "keepAlive": True}}}
    assert call(http, "PATCH", body=keep_alive).status_code == 200
    other = {"poolInfo": {"autoPoolSpecification": {**spec, "pool": {"vmSize": "standard_d4_v3"}}}}
    assert call(http, "PATCH", body=other).status_code == 409


# --- the current spec's *Update models (2025-06-01 = 2026-10-01) --------------------------------
#
# These bodies go out raw through httpx: azure-batch 15.1's models predate the *Update
# variants and still type the create-time required fields (BatchAutoPoolSpecification's
# pool_lifetime_option, BatchPoolSpecification's vm_size, BatchJobNetworkConfiguration's
# subnet_id), so building them with the SDK would not type-check where the current spec
# makes them valid.

SUBNET = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/a"
AUTO_POOL = {
    "autoPoolIdPrefix": "auto",
    "poolLifetimeOption": "job",
    "keepAlive": False,
    "pool": {"vmSize": "standard_d2_v3", "targetDedicatedNodes": 1},
}


def seed_auto_pool_job(emulator: BatchEmulator, **spec: Any) -> None:
    emulator.reset()
    emulator.add_job(
        {"id": JOB, "state": "disabled", "poolInfo": {"autoPoolSpecification": {**AUTO_POOL, **spec}}}
    )


@pytest.mark.parametrize("api_version", ["2025-06-01", "2026-10-01"])
def test_keep_alive_alone_changes_an_auto_pool_in_both_versions(
    emulator: BatchEmulator, http: httpx.Client, api_version: str
) -> None:
    seed_auto_pool_job(emulator)
    body = {"poolInfo": {"autoPoolSpecification": {"keepAlive": True}}}
    response = call(http, "PATCH", body=body, params={"api-version": api_version, "timeOut": "10"})
    assert response.status_code == 200
    # Omitted properties cannot change, so they keep their stored values.
    assert emulator.job(JOB)["poolInfo"] == {"autoPoolSpecification": {**AUTO_POOL, "keepAlive": True}}  # type: ignore[index]
    (patch,) = emulator.patch_log(JOB)
    assert patch.applied["poolInfo"]["autoPoolSpecification"]["keepAlive"] is True


def test_auto_pool_restating_unchanged_properties_is_allowed_and_keep_alive_defaults(
    emulator: BatchEmulator, http: httpx.Client
) -> None:
    seed_auto_pool_job(emulator, keepAlive=True)
    same = {"autoPoolIdPrefix": "auto", "poolLifetimeOption": "Job", "pool": AUTO_POOL["pool"]}
    assert call(http, "PATCH", body={"poolInfo": {"autoPoolSpecification": same}}).status_code == 200
    # The nested object replaces the stored one, with defaults: keepAlive omitted is false.
    assert emulator.job(JOB)["poolInfo"]["autoPoolSpecification"] == AUTO_POOL  # type: ignore[index]


@pytest.mark.parametrize(
    "spec",
    [
        {"autoPoolIdPrefix": "other"},
        {"poolLifetimeOption": "jobschedule"},
        {"pool": {"targetDedicatedNodes": 1}},  # valid without vmSize, but a different pool
        {"keepAlive": True, "pool": {"vmSize": "standard_d4_v3", "targetDedicatedNodes": 1}},
    ],
)
def test_auto_pool_changes_other_than_keep_alive_are_409(
    emulator: BatchEmulator, http: httpx.Client, spec: dict[str, Any]
) -> None:
    seed_auto_pool_job(emulator)
    response = call(http, "PATCH", body={"poolInfo": {"autoPoolSpecification": spec}})
    assert response.status_code == 409
    assert error_of(response)[0] == "OperationInvalidForCurrentState"
    assert emulator.patch_log(JOB) == []


def test_keep_alive_needs_a_disabled_job_on_an_auto_pool_with_lifetime_job(
    emulator: BatchEmulator, http: httpx.Client
) -> None:
    keep_alive = {"poolInfo": {"autoPoolSpecification": {"keepAlive": True}}}
    seed_auto_pool_job(emulator, poolLifetimeOption="jobschedule")
    assert call(http, "PATCH", body=keep_alive).status_code == 409
    seed_auto_pool_job(emulator)
    emulator.set_job_state(JOB, "active")
    assert call(http, "PATCH", body=keep_alive).status_code == 409
    emulator.reset()
    emulator.add_job({"id": JOB, "state": "disabled", "poolInfo": {"poolId": "pool-a"}})
    assert call(http, "PATCH", body=keep_alive).status_code == 409  # no auto pool to change


def test_network_configuration_without_subnet_keeps_the_jobs_subnet(
    emulator: BatchEmulator, http: httpx.Client
) -> None:
    emulator.reset()
    emulator.add_job({"id": JOB, "networkConfiguration": {"subnetId": SUBNET, "skipWithdrawFromVNet": False}})
    body = {"networkConfiguration": {"skipWithdrawFromVNet": True}}
    assert call(http, "PATCH", body=body).status_code == 200
    assert emulator.job(JOB)["networkConfiguration"] == {"subnetId": SUBNET, "skipWithdrawFromVNet": True}  # type: ignore[index]
    # skipWithdrawFromVNet "Defaults to false" when the replacing object omits it.
    assert call(http, "PATCH", body={"networkConfiguration": {"subnetId": SUBNET}}).status_code == 200
    assert emulator.job(JOB)["networkConfiguration"] == {"subnetId": SUBNET, "skipWithdrawFromVNet": False}  # type: ignore[index]


def test_network_configuration_without_subnet_on_a_job_without_one_is_400(
    emu: BatchEmulator, http: httpx.Client
) -> None:
    response = call(http, "PATCH", body={"networkConfiguration": {"skipWithdrawFromVNet": True}})
    assert response.status_code == 400
    assert error_of(response) == ("MissingRequiredProperty", {"PropertyName": "subnetId"})
    assert "networkConfiguration" not in emu.job(JOB)  # type: ignore[operator]


def test_subnet_id_provider_segment_is_not_fixed(emu: BatchEmulator, http: httpx.Client) -> None:
    subnet = (
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.ClassicNetwork/virtualNetworks/v/subnets/a"
    )
    assert call(http, "PATCH", body={"networkConfiguration": {"subnetId": subnet}}).status_code == 200
    assert emu.job(JOB)["networkConfiguration"]["subnetId"] == subnet  # type: ignore[index]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("P10675199DT2H48M5.4775807S", "P10675199DT2H48M5.4775807S"),  # Int64.MaxValue ticks, exactly
        ("P10675199DT2H48M5.4775806S", "P10675199DT2H48M5.4775806S"),
        ("PT0.0000001S", "PT0.0000001S"),  # one tick
        ("PT1.99999999999S", "PT1.9999999S"),  # digits past the 7th are truncated, not rounded
        ("PT0.00000009S", "PT0S"),
        ("P13M", "P395D"),  # 12 months are a 365-day year, the rest 30 days each
        ("P1Y1M", "P395D"),
        (" PT1H ", "PT1H"),  # XsdDuration trims
        ("PT.5S", "PT0.5S"),
        ("PT1.S", "PT1S"),
        ("PT2147483647S", "P24855DT3H14M7S"),  # Int32.MaxValue seconds
    ],
)
def test_durations_are_stored_at_tick_precision(
    emu: BatchEmulator, http: httpx.Client, sent: str, stored: str
) -> None:
    assert call(http, "PATCH", body={"constraints": {"maxWallClockTime": sent}}).status_code == 200
    assert call(http, "GET").json()["constraints"]["maxWallClockTime"] == stored


def test_duplicate_metadata_names_are_stored_as_sent(emu: BatchEmulator, http: httpx.Client) -> None:
    # The spec sets no rule and the service's answer is undocumented: keep both, in order.
    items = [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}, {"name": "A", "value": "3"}]
    assert call(http, "PATCH", body={"metadata": items}).status_code == 200
    assert call(http, "GET").json()["metadata"] == items


# --- query parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({}, 400, "MissingRequiredQueryParameter"),
        ({"api-version": "2023-05-01.17.0"}, 400, "UnsupportedRequestVersion"),
        ({"api-version": API, "timeOut": "soon"}, 400, "InvalidQueryParameterValue"),
        ({"api-version": API, "timeOut": "0"}, 400, "OutOfRangeQueryParameterValue"),
        ({"api-version": API, "timeout": "30"}, 400, "UnsupportedQueryParameter"),
        ({"api-version": "2024-07-01.20.0", "timeOut": "30"}, 400, "UnsupportedQueryParameter"),
        ({"api-version": API, "timeOut": "90"}, 200, None),
        ({"api-version": "2024-07-01.20.0", "timeout": "30"}, 200, None),
        ({"api-version": "2026-10-01", "timeOut": "5"}, 200, None),
        ({"api-version": "2026-10-01", "timeout": "5"}, 400, "UnsupportedQueryParameter"),
    ],
)
def test_query_parameters(
    emu: BatchEmulator, http: httpx.Client, params: dict[str, str], status: int, code: str | None
) -> None:
    response = call(http, "GET", params=params)
    assert response.status_code == status
    if code is not None:
        assert error_of(response)[0] == code


def test_unimplemented_operations_say_so(emu: BatchEmulator, http: httpx.Client) -> None:
    response = call(http, "DELETE")
    assert response.status_code == 501
    assert error_of(response)[0] == "NotImplementedByEmulator"


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "status", "detail"),
    [
        (bearer(audience="https://batch.core.windows.net"), 403, "wrong audience"),
        (bearer(audience="https://servicebus.azure.net"), 403, "wrong audience"),
        (bearer(key=b"someone-elses-signing-key-32byte"), 403, "invalid"),
        ("Basic dXNlcjpwdw==", 400, None),
        ("SharedKey testaccount:AAAA", 403, "MAC signature"),
        ("SharedKey otheraccount:AAAA", 403, "not this Batch account"),
    ],
    ids=["aud-no-slash", "aud-servicebus", "foreign-key", "basic", "bad-signature", "wrong-account"],
)
def test_bad_credentials_are_refused(
    emu: BatchEmulator, http: httpx.Client, auth: str, status: int, detail: str | None
) -> None:
    headers = {"ocp-date": http_date(dt.datetime.now(dt.UTC))}
    response = call(http, "PATCH", body={"priority": 1}, auth=auth, headers=headers)
    assert response.status_code == status
    code, values = error_of(response)
    assert code == ("AuthenticationFailed" if status == 403 else "InvalidAuthenticationInfo")
    if detail:
        assert detail in values["AuthenticationErrorDetail"]
    assert emu.patch_log(JOB) == []


def test_missing_authorization_is_refused(emu: BatchEmulator, http: httpx.Client) -> None:
    response = http.get(f"/jobs/{JOB}", params={"api-version": API})
    assert response.status_code == 403
    assert error_of(response)[0] == "AuthenticationFailed"


def test_expired_token_is_refused_beyond_leeway(emu: BatchEmulator, http: httpx.Client) -> None:
    token, _ = issue_token(
        SIGNING_KEY,
        resource=BATCH_RESOURCE,
        client_id="c",
        object_id="o",
        lifetime_seconds=60,
        now=time.time() - 3600,
    )
    response = call(http, "GET", auth=f"Bearer {token}")
    assert response.status_code == 403
    assert "expiry" in error_of(response)[1]["AuthenticationErrorDetail"]


def test_ocp_date_skew_and_format(emu: BatchEmulator, http: httpx.Client) -> None:
    stale = http_date(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20))
    response = call(http, "GET", headers={"ocp-date": stale})
    assert response.status_code == 403
    assert error_of(response)[0] == "AuthenticationFailed"
    fresh = http_date(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    assert call(http, "GET", headers={"ocp-date": fresh}).status_code == 200
    assert call(http, "GET", headers={"ocp-date": "2025-02-17T00:00:00Z"}).status_code == 400


def test_shared_key_signed_per_documented_algorithm_is_accepted(
    emu: BatchEmulator, http: httpx.Client
) -> None:
    """Signed here by hand from the documented StringToSign, independent of the emulator's code."""
    date = http_date(dt.datetime.now(dt.UTC))
    body = b'{"priority": 42}'
    content_type = "application/json"
    string_to_sign = (
        "\n".join(["PATCH", "", "", str(len(body)), "", content_type, "", "", "", "", "", ""])
        + f"\nocp-date:{date}\n/testaccount/jobs/{JOB}\napi-version:{API}\ntimeout:20"
    )
    digest = hmac.new(base64.b64decode(emu.account_key), string_to_sign.encode(), hashlib.sha256).digest()
    response = http.patch(
        f"/jobs/{JOB}",
        params={"api-version": API, "timeOut": "20"},
        content=body,
        headers={
            "Content-Type": content_type,
            "ocp-date": date,
            "Authorization": f"SharedKey testaccount:{base64.b64encode(digest).decode()}",
        },
    )
    assert response.status_code == 200, response.text
    assert emu.job(JOB)["priority"] == 42  # type: ignore[index]


def test_shared_key_can_be_disabled_for_the_account() -> None:
    with BatchEmulator(allow_shared_key=False) as emu:
        emu.add_job({"id": JOB})
        client = BatchClient(
            emu.endpoint,
            AzureNamedKeyCredential(emu.account_name, emu.account_key),
            connection_verify=emu.ca_path,
        )
        with pytest.raises(HttpResponseError) as refused:
            client.get_job(JOB)
    assert refused.value.status_code == 403


# --- faults -------------------------------------------------------------------------------------------


def test_throttling_faults_fire_in_order_with_retry_after(emu: BatchEmulator, http: httpx.Client) -> None:
    emu.inject(Fault.throttled(retry_after=2, method="PATCH", times=2))
    emu.inject(Fault.server_busy(method="PATCH"))
    emu.inject(Fault.error(500, method="PATCH"))

    assert call(http, "GET").status_code == 200  # method filter: GET is not affected
    responses = [call(http, "PATCH", body={"priority": 1}) for _ in range(5)]
    assert [r.status_code for r in responses] == [429, 429, 503, 500, 200]
    assert [r.headers.get("Retry-After") for r in responses] == ["2", "2", "1", None, None]
    assert [error_of(r)[0] for r in responses[:4]] == [
        "TooManyRequests",
        "TooManyRequests",
        "ServerBusy",
        "InternalError",
    ]
    assert len(emu.patch_log(JOB)) == 1
    assert emu.pending_faults == []
    assert [r.fault for r in emu.requests][1:] == ["429 TooManyRequests"] * 2 + [
        "503 ServerBusy",
        "500 InternalError",
        None,
    ]


@pytest.mark.parametrize("status", [408, 502, 504])
def test_gateway_style_statuses(emu: BatchEmulator, http: httpx.Client, status: int) -> None:
    emu.inject(Fault.error(status, job_id="job-1"))
    other = emu.add_job({"id": "other"})
    assert call(http, "GET", job_id=other["id"]).status_code == 200  # job filter
    assert call(http, "GET").status_code == status
    assert call(http, "GET").status_code == 200


def test_delay_fault_delays_then_answers(emu: BatchEmulator, http: httpx.Client) -> None:
    emu.inject(Fault.delay(0.3))
    started = time.monotonic()
    response = call(http, "GET")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_delay_beyond_server_timeout_is_operation_timed_out(emu: BatchEmulator, http: httpx.Client) -> None:
    emu.inject(Fault.delay(5))
    started = time.monotonic()
    response = call(http, "GET", params={"api-version": API, "timeOut": "1"})
    assert response.status_code == 500
    assert error_of(response)[0] == "OperationTimedOut"
    assert 1 <= time.monotonic() - started < 4


def test_connection_reset_gives_a_transport_error(emu: BatchEmulator, http: httpx.Client) -> None:
    emu.inject(Fault.connection_reset(method="PATCH"))
    with pytest.raises(httpx.TransportError):
        call(http, "PATCH", body={"priority": 1})
    assert emu.patch_log(JOB) == []
    assert emu.requests[-1].status is None
    assert emu.requests[-1].fault == "connection-reset"
    assert call(http, "PATCH", body={"priority": 1}).status_code == 200


def test_concurrent_writer_moves_the_etag_before_the_request(emu: BatchEmulator, http: httpx.Client) -> None:
    etag = call(http, "GET").headers["ETag"]
    emu.inject(Fault.concurrent_writer({"metadata": [{"name": "by", "value": "other"}]}, method="PATCH"))
    response = call(http, "PATCH", body={"priority": 2}, headers={"If-Match": etag})
    assert response.status_code == 412
    stored = emu.job(JOB)
    assert stored is not None
    assert stored["metadata"] == [{"name": "by", "value": "other"}]
    assert stored["priority"] == 10


async def test_async_clients_are_served_concurrently(emu: BatchEmulator) -> None:
    emu.inject(Fault.delay(0.5, method="GET", times=5))
    async with httpx.AsyncClient(base_url=emu.endpoint, verify=emu.ssl_context()) as client:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(
                client.get(f"/jobs/{JOB}", params={"api-version": API}, headers={"Authorization": bearer()})
                for _ in range(5)
            )
        )
    assert [r.status_code for r in responses] == [200] * 5
    assert time.monotonic() - started < 2  # the five delays overlap


# --- seeding and inspection ---------------------------------------------------------------------------


def test_seed_from_file_and_reset(emulator: BatchEmulator, tmp_path: Any) -> None:
    emulator.reset()
    seed = tmp_path / "jobs.json"
    seed.write_text(json.dumps({"jobs": [{"id": "a"}, {"id": "B", "state": "disabled"}]}))
    added = emulator.seed(seed)
    assert [job["id"] for job in added] == ["a", "B"]
    assert emulator.job("b")["state"] == "disabled"  # type: ignore[index]
    assert emulator.job("a")["constraints"]["maxTaskRetryCount"] == 0  # type: ignore[index]
    with pytest.raises(ValueError, match="already exists"):
        emulator.add_job({"id": "A"})
    with pytest.raises(ValueError, match="job id"):
        emulator.add_job({"id": "bad id!"})
    emulator.reset()
    assert emulator.job("a") is None
    assert emulator.requests == []


def test_cli_serves_seeded_jobs_until_sigterm(tmp_path: Any) -> None:
    seed = tmp_path / "jobs.json"
    seed.write_text(json.dumps([{"id": "cli-job", "priority": 7}]))
    process = subprocess.Popen(
        [sys.executable, "-m", "standins.batch", "--seed", str(seed), "--token-signing-key", "cli-key"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        token, _ = issue_token(
            b"cli-key", resource=BATCH_RESOURCE, client_id="c", object_id="o", lifetime_seconds=60
        )
        response = httpx.get(
            f"{info['endpoint']}/jobs/cli-job",
            params={"api-version": API},
            headers={"Authorization": f"Bearer {token}"},
            verify=ssl.create_default_context(cafile=info["ca_path"]),
        )
        assert response.status_code == 200
        assert response.json()["priority"] == 7
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
