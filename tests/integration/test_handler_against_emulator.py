"""Every outcome kind over real HTTPS against the Batch emulator."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from handlers.events import OutcomeData
from handlers.handler import Inbound, JobUpdateHandler, RetryLater
from handlers.outcomes import Outcome, Write
from standins.batch import BatchEmulator, Fault
from standins.identity import BATCH_RESOURCE, TokenEndpoint
from tests.integration.conftest import ACCOUNT_KEY, RecordingPublisher

Factory = Callable[..., tuple[JobUpdateHandler, RecordingPublisher]]


def inbound(message: dict[str, Any], message_id: str = "m-1", delivery: int = 1) -> Inbound:
    base = {"schemaVersion": "1.0"}
    return Inbound(json.dumps({**base, **message}).encode(), message_id, delivery)


def hdr(request: Any, name: str) -> str | None:
    return {k.lower(): v for k, v in request.headers.items()}.get(name)


def data(publisher: RecordingPublisher, index: int = -1) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(publisher.events[index].body)
    OutcomeData.model_validate(doc["data"])  # every event matches the published schema
    return doc["data"]


async def test_applied_replace_sends_the_patch_and_reports_the_new_etag(
    emu: BatchEmulator, tokens: TokenEndpoint, make_handler: Factory
) -> None:
    emu.add_job({"id": "job-1", "priority": 10, "constraints": {"maxTaskRetryCount": 3}})
    handler, publisher = make_handler()
    result = await handler.handle(
        inbound(
            {
                "jobId": "job-1",
                "update": {"priority": 500, "constraints": {"maxWallClockTime": "01:00:00"}},
                "options": {"returnClientRequestId": True, "timeout": 20},
            }
        )
    )
    assert result.outcome is Outcome.applied
    job = emu.job("job-1")
    assert job is not None
    assert job["priority"] == 500
    # Replace semantics: the nested object replaced the stored one (retry count back to 0).
    assert job["constraints"] == {"maxWallClockTime": "PT1H", "maxTaskRetryCount": 0}
    (patch,) = [r for r in emu.requests if r.method == "PATCH"]
    assert patch.query == {"api-version": "2025-06-01", "timeOut": "20"}
    assert (hdr(patch, "authorization") or "").startswith("Bearer")  # recorded with the token cut off
    assert hdr(patch, "content-type") == "application/json; odata=minimalmetadata"
    event = data(publisher)
    assert event["etag"] == job["eTag"]
    assert event["httpStatus"] == 200
    assert event["clientRequestId"] == hdr(patch, "client-request-id")
    assert event["requestId"] == patch.request_id
    assert event["changes"]["priority"] == {"to": 500}
    assert publisher.events[0].application_properties()["outcome"] == "applied"


async def test_tokens_are_cached_across_messages(
    emu: BatchEmulator, tokens: TokenEndpoint, make_handler: Factory
) -> None:
    emu.add_job({"id": "job-1"})
    handler, _ = make_handler()
    for n in range(5):
        await handler.handle(inbound({"jobId": "job-1", "update": {"priority": n}}, f"m-{n}"))
    assert tokens.requests[BATCH_RESOURCE] == 1
    assert len([r for r in emu.requests if r.method == "PATCH"]) == 5


async def test_dry_run_reads_and_reports_without_writing(emu: BatchEmulator, make_handler: Factory) -> None:
    job = emu.add_job({"id": "job-1", "priority": 10})
    handler, publisher = make_handler()
    result = await handler.handle(
        inbound(
            {
                "jobId": "job-1",
                "update": {"priority": 10, "maxParallelTasks": 4},
                "conditions": {"ifMatch": job["eTag"]},
                "options": {"dryRun": True},
            }
        )
    )
    assert result.outcome is Outcome.dry_run
    assert [r.method for r in emu.requests] == ["GET"]
    event = data(publisher)
    assert event["changes"] == {"maxParallelTasks": {"from": -1, "to": 4}}
    assert event["conditionsMet"] is True
    assert emu.job("job-1")["eTag"] == job["eTag"]  # type: ignore[index]


async def test_stale_etag_is_precondition_failed(emu: BatchEmulator, make_handler: Factory) -> None:
    emu.add_job({"id": "etl"})
    handler, publisher = make_handler()
    result = await handler.handle(
        inbound({"jobId": "etl", "update": {"priority": 1}, "conditions": {"ifMatch": "0x8D0000000000000"}})
    )
    assert result.outcome is Outcome.precondition_failed
    assert data(publisher)["error"]["code"] == "ConditionNotMet"
    assert data(publisher)["httpStatus"] == 412


async def test_invalid_message_sends_nothing_and_gets_every_problem(
    emu: BatchEmulator, tokens: TokenEndpoint, make_handler: Factory
) -> None:
    handler, publisher = make_handler()
    result = await handler.handle(
        inbound({"jobId": "job-1", "update": {"priorty": 1, "maxParallelTasks": 0}})
    )
    assert result.outcome is Outcome.rejected
    assert emu.requests == []
    assert tokens.requests[BATCH_RESOURCE] == 0
    paths = {p["path"] for p in data(publisher)["problems"]}
    assert paths == {"$.update.priorty", "$.update.maxParallelTasks"}
    assert data(publisher)["jobId"] == "job-1"


async def test_not_json_is_rejected(emu: BatchEmulator, make_handler: Factory) -> None:
    handler, publisher = make_handler()
    result = await handler.handle(Inbound(b"\xff\xfe not json", "m-x"))
    assert result.outcome is Outcome.rejected
    assert data(publisher)["problems"][0]["code"] == "json_invalid"


@pytest.mark.parametrize(
    "endpoint",
    ["https://evil.example", "https://localhost:1", "http://localhost", "https://127.0.0.1"],
)
async def test_endpoint_outside_the_allow_list_is_refused_before_any_credential(
    emu: BatchEmulator, tokens: TokenEndpoint, make_handler: Factory, endpoint: str
) -> None:
    handler, publisher = make_handler()
    result = await handler.handle(
        inbound({"jobId": "job-1", "endpoint": endpoint, "update": {"priority": 1}})
    )
    assert result.outcome is Outcome.rejected
    assert data(publisher)["problems"][0]["path"] == "$.endpoint"
    assert emu.requests == []
    assert tokens.requests[BATCH_RESOURCE] == 0


@pytest.mark.parametrize(
    ("setup", "update", "status", "code"),
    [
        ({"id": "done", "state": "completed"}, {"priority": 1}, 409, "JobCompleted"),
        ({"id": "done", "state": "terminating"}, {"priority": 1}, 409, "JobBeingTerminated"),
        (None, {"priority": 1}, 404, "JobNotFound"),
        (
            {"id": "done", "onAllTasksComplete": "terminatejob"},
            {"onAllTasksComplete": "noaction"},
            400,
            "InvalidPropertyValue",
        ),
        ({"id": "done"}, {"poolInfo": {"poolId": "other"}}, 409, "OperationInvalidForCurrentState"),
    ],
)
async def test_batch_refusals_are_failed_with_batch_error_details(
    emu: BatchEmulator,
    make_handler: Factory,
    setup: dict[str, Any] | None,
    update: dict[str, Any],
    status: int,
    code: str,
) -> None:
    if setup is not None:
        state = setup.pop("state", None)
        emu.add_job(setup)
        if state:
            emu.set_job_state("done", state)
    handler, publisher = make_handler()
    result = await handler.handle(inbound({"jobId": "done", "update": update}))
    assert result.outcome is Outcome.failed
    event = data(publisher)
    assert (event["httpStatus"], event["error"]["code"]) == (status, code)
    assert event["error"]["message"]
    assert event["attempts"] == 1
    assert publisher.events[0].application_properties()["errorCode"] == code


async def test_throttling_is_retried_honouring_retry_after(emu: BatchEmulator, make_handler: Factory) -> None:
    emu.add_job({"id": "busy-job"})
    emu.inject(Fault.throttled(retry_after=1, method="PATCH", times=2))
    handler, publisher = make_handler()
    started = time.monotonic()
    result = await handler.handle(inbound({"jobId": "busy-job", "update": {"priority": 10}}))
    assert time.monotonic() - started >= 2.0  # two Retry-After: 1 waits
    assert result.outcome is Outcome.applied
    assert [r.status for r in emu.requests] == [429, 429, 200]
    assert data(publisher)["attempts"] == 3


async def test_connection_reset_and_500_are_retried(emu: BatchEmulator, make_handler: Factory) -> None:
    emu.add_job({"id": "j"})
    emu.inject(Fault.connection_reset(method="PATCH"))
    emu.inject(Fault.error(500, method="PATCH"))
    handler, publisher = make_handler()
    result = await handler.handle(inbound({"jobId": "j", "update": {"priority": 3}}))
    assert result.outcome is Outcome.applied
    assert result.attempts == 3
    assert emu.job("j")["priority"] == 3  # type: ignore[index]
    assert data(publisher)["attempts"] == 3


async def test_transient_failure_raises_for_redelivery_without_an_event(
    emu: BatchEmulator, make_handler: Factory
) -> None:
    emu.add_job({"id": "j"})
    emu.inject(Fault.server_busy(retry_after=0, method="PATCH", times=50))
    handler, publisher = make_handler(BATCH_MAX_ATTEMPTS=2)
    with pytest.raises(RetryLater):
        await handler.handle(inbound({"jobId": "j", "update": {"priority": 3}}, delivery=1))
    assert publisher.events == []


async def test_last_delivery_publishes_given_up_then_raises(
    emu: BatchEmulator, make_handler: Factory
) -> None:
    emu.add_job({"id": "j"})
    emu.inject(Fault.server_busy(retry_after=0, method="PATCH", times=50))
    handler, publisher = make_handler(BATCH_MAX_ATTEMPTS=2, JOB_UPDATES_MAX_DELIVERY_COUNT=3)
    with pytest.raises(RetryLater, match="gave up"):
        await handler.handle(inbound({"jobId": "j", "update": {"priority": 3}}, delivery=3))
    event = data(publisher)
    assert event["outcome"] == "given-up"
    assert event["httpStatus"] == 503
    assert event["error"]["code"] == "ServerBusy"
    assert event["attempts"] == 2


async def test_slow_batch_is_bounded_by_the_time_budget(emu: BatchEmulator, make_handler: Factory) -> None:
    emu.add_job({"id": "j"})
    emu.inject(Fault.delay(5, method="PATCH", times=5))
    handler, publisher = make_handler(BATCH_RETRY_BUDGET_SECONDS=1.5)
    started = time.monotonic()
    with pytest.raises(RetryLater):
        await handler.handle(inbound({"jobId": "j", "update": {"priority": 3}}, delivery=1))
    # The budget bounds the whole message: no attempt or wait runs past it.
    assert time.monotonic() - started <= 1.5 + 0.5
    assert publisher.events == []


async def test_redelivery_after_success_is_applied_already(emu: BatchEmulator, make_handler: Factory) -> None:
    job = emu.add_job({"id": "j", "priority": 1})
    message = {"jobId": "j", "update": {"priority": 42}, "conditions": {"ifMatch": job["eTag"]}}
    handler, publisher = make_handler()
    first = await handler.handle(inbound(message, "m-1", delivery=1))
    assert first.outcome is Outcome.applied
    # The host lost our completion; Service Bus delivers the same message again.
    again = await handler.handle(inbound(message, "m-1", delivery=2))
    assert again.outcome is Outcome.applied
    assert again.in_place
    assert again.write is Write.earlier_delivery
    assert again.conditions_met is None  # the 412 says the condition fails now; who wrote is unknown
    assert data(publisher)["inPlace"] is True
    assert data(publisher)["write"] == "earlier-delivery"
    assert "conditionsMet" not in data(publisher)
    assert data(publisher, 0)["write"] == "this-delivery"
    assert data(publisher, 0)["conditionsMet"] is True
    assert publisher.events[0].id == publisher.events[1].id  # same message, same outcome: a duplicate


async def test_redelivery_with_a_real_conflict_stays_precondition_failed(
    emu: BatchEmulator, make_handler: Factory
) -> None:
    job = emu.add_job({"id": "j", "priority": 1})
    emu.change_job("j", {"priority": 7})  # someone else wrote
    handler, publisher = make_handler()
    result = await handler.handle(
        inbound(
            {"jobId": "j", "update": {"priority": 42}, "conditions": {"ifMatch": job["eTag"]}}, delivery=2
        )
    )
    assert result.outcome is Outcome.precondition_failed
    assert data(publisher)["httpStatus"] == 412


async def test_merge_changes_one_nested_field_and_keeps_the_rest(
    emu: BatchEmulator, make_handler: Factory
) -> None:
    emu.add_job(
        {
            "id": "etl",
            "constraints": {"maxWallClockTime": "PT8H", "maxTaskRetryCount": 4},
            "metadata": [{"name": "owner", "value": "a"}, {"name": "team", "value": "x"}],
        }
    )
    handler, publisher = make_handler()
    result = await handler.handle(
        inbound(
            {
                "jobId": "etl",
                "mode": "merge",
                "update": {
                    "constraints": {"maxWallClockTime": "02:00:00"},
                    "metadata": [{"name": "team", "value": "y"}],
                },
            }
        )
    )
    assert result.outcome is Outcome.applied
    job = emu.job("etl")
    assert job is not None
    assert job["constraints"] == {"maxWallClockTime": "PT2H", "maxTaskRetryCount": 4}
    assert job["metadata"] == [{"name": "owner", "value": "a"}, {"name": "team", "value": "y"}]
    (patch,) = [r for r in emu.requests if r.method == "PATCH"]
    assert hdr(patch, "if-match")
    assert set(data(publisher)["changes"]) == {"constraints", "metadata"}


async def test_merge_rereads_and_retries_under_a_concurrent_writer(
    emu: BatchEmulator, make_handler: Factory
) -> None:
    emu.add_job(
        {"id": "etl", "priority": 1, "constraints": {"maxWallClockTime": "PT8H", "maxTaskRetryCount": 4}}
    )
    # Another writer changes the job between our GET and our PATCH, once.
    emu.inject(
        Fault.concurrent_writer(
            {"constraints": {"maxWallClockTime": "PT8H", "maxTaskRetryCount": 9}},
            method="PATCH",
            job_id="etl",
        )
    )
    handler, _ = make_handler()
    result = await handler.handle(
        inbound({"jobId": "etl", "mode": "merge", "update": {"constraints": {"maxWallClockTime": "PT1H"}}})
    )
    assert result.outcome is Outcome.applied
    assert [(r.method, r.status) for r in emu.requests] == [
        ("GET", 200),
        ("PATCH", 412),
        ("GET", 200),
        ("PATCH", 200),
    ]
    job = emu.job("etl")
    assert job is not None
    # Both writes survive: the other writer's retry count and our wall-clock time.
    assert job["constraints"] == {"maxWallClockTime": "PT1H", "maxTaskRetryCount": 9}


async def test_merge_with_nothing_to_change_sends_no_patch(emu: BatchEmulator, make_handler: Factory) -> None:
    emu.add_job({"id": "etl", "priority": 5})
    handler, publisher = make_handler()
    result = await handler.handle(inbound({"jobId": "etl", "mode": "merge", "update": {"priority": 5}}))
    assert result.outcome is Outcome.applied
    assert result.in_place
    assert result.write is Write.none  # a first delivery: nothing of ours can be in place
    assert [r.method for r in emu.requests] == ["GET"]
    assert data(publisher)["inPlace"] is True
    assert data(publisher)["write"] == "none"


async def test_merge_gives_up_after_bounded_rounds(emu: BatchEmulator, make_handler: Factory) -> None:
    emu.add_job({"id": "etl", "priority": 1})
    for n in range(3):
        emu.inject(Fault.concurrent_writer({"maxParallelTasks": 10 + n}, method="PATCH", job_id="etl"))
    handler, _ = make_handler(BATCH_MERGE_MAX_ROUNDS=3)
    result = await handler.handle(inbound({"jobId": "etl", "mode": "merge", "update": {"priority": 2}}))
    assert result.outcome is Outcome.precondition_failed
    assert [r.method for r in emu.requests].count("PATCH") == 3


async def test_shared_key_authentication(
    emu: BatchEmulator, tokens: TokenEndpoint, make_handler: Factory
) -> None:
    emu.add_job({"id": "j"})
    handler, _ = make_handler(
        BATCH_AUTH_MODE="sharedkey", BATCH_ACCOUNT_NAME="localbatch", BATCH_ACCOUNT_KEY=ACCOUNT_KEY
    )
    result = await handler.handle(
        inbound({"jobId": "j", "update": {"priority": 9}, "options": {"timeout": 10}})
    )
    assert result.outcome is Outcome.applied
    assert (hdr(emu.requests[0], "authorization") or "").startswith("SharedKey")
    assert tokens.requests[BATCH_RESOURCE] == 0


async def test_wrong_shared_key_is_failed_403(emu: BatchEmulator, make_handler: Factory) -> None:
    emu.add_job({"id": "j"})
    handler, publisher = make_handler(
        BATCH_AUTH_MODE="sharedkey", BATCH_ACCOUNT_NAME="localbatch", BATCH_ACCOUNT_KEY="d3Jvbmcta2V5"
    )
    result = await handler.handle(inbound({"jobId": "j", "update": {"priority": 9}}))
    assert result.outcome is Outcome.failed
    assert data(publisher)["error"]["code"] == "AuthenticationFailed"


async def test_secrets_never_reach_events_or_logs(
    emu: BatchEmulator, make_handler: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    secret_pool = {
        "vmSize": "standard_d2s_v3",
        "userAccounts": [{"name": "ops", "password": "Hunter2-secret"}],
        "startTask": {
            "commandLine": "x",
            "environmentSettings": [{"name": "TOKEN", "value": "env-secret"}],
            "resourceFiles": [{"httpUrl": "https://s.blob.core.windows.net/c/f?sv=1&sig=sas-secret"}],
        },
    }
    spec = {"poolLifetimeOption": "job", "keepAlive": False, "pool": secret_pool}
    emu.add_job({"id": "autopool-job", "poolInfo": {"autoPoolSpecification": spec}})
    emu.set_job_state("autopool-job", "disabled")  # poolInfo may change only while disabled
    handler, publisher = make_handler()
    with caplog.at_level(logging.DEBUG):
        result = await handler.handle(
            inbound(
                {
                    "jobId": "autopool-job",
                    "update": {"poolInfo": {"autoPoolSpecification": {**spec, "keepAlive": True}}},
                }
            )
        )
    assert result.outcome is Outcome.applied  # the pool (with its secrets) is in the event's changes
    assert data(publisher)["changes"]["poolInfo"]["to"]["autoPoolSpecification"]["keepAlive"] is True
    text = b"".join(e.body for e in publisher.events).decode() + caplog.text
    for secret in ("Hunter2-secret", "env-secret", "sas-secret", "eyJ"):
        assert secret not in text
    assert "job-update outcome=applied" in caplog.text


async def test_lost_reply_then_412_on_the_retry_is_our_own_write(
    emu: BatchEmulator, make_handler: Factory
) -> None:
    job = emu.add_job({"id": "j", "priority": 1})
    # Our PATCH lands, then the connection drops before the reply: the retry meets a moved ETag.
    emu.inject(Fault(concurrent_change={"priority": 42}, reset=True, method="PATCH", job_id="j"))
    handler, publisher = make_handler()
    result = await handler.handle(
        inbound(
            {"jobId": "j", "update": {"priority": 42}, "conditions": {"ifMatch": job["eTag"]}}, delivery=1
        )
    )
    assert result.outcome is Outcome.applied
    assert result.in_place
    assert result.write is Write.earlier_delivery
    assert [(r.method, r.status) for r in emu.requests] == [("PATCH", None), ("PATCH", 412), ("GET", 200)]
    assert data(publisher)["inPlace"] is True


async def test_attempts_are_bounded_by_the_http_timeout(emu: BatchEmulator, make_handler: Factory) -> None:
    emu.add_job({"id": "j"})
    emu.inject(Fault.delay(3, method="PATCH"))
    handler, publisher = make_handler(BATCH_HTTP_TIMEOUT_SECONDS=1)
    started = time.monotonic()
    result = await handler.handle(inbound({"jobId": "j", "update": {"priority": 3}}))
    assert result.outcome is Outcome.applied
    assert result.attempts == 2  # the slow one timed out after 1 s and was retried
    assert time.monotonic() - started < 3
    assert data(publisher)["attempts"] == 2


async def test_dry_run_in_replace_mode_counts_a_nested_replacement(
    emu: BatchEmulator, make_handler: Factory
) -> None:
    emu.add_job({"id": "j", "constraints": {"maxWallClockTime": "PT1H", "maxTaskRetryCount": 3}})
    handler, publisher = make_handler()
    await handler.handle(
        inbound(
            {
                "jobId": "j",
                "update": {"constraints": {"maxWallClockTime": "PT1H"}},
                "options": {"dryRun": True},
            }
        )
    )
    # A replace would reset maxTaskRetryCount to 0: that is a change.
    assert set(data(publisher)["changes"]) == {"constraints"}
    await handler.handle(
        inbound(
            {
                "jobId": "j",
                "mode": "merge",
                "update": {"constraints": {"maxWallClockTime": "PT1H"}},
                "options": {"dryRun": True},
            },
            "m-2",
        )
    )
    assert data(publisher)["changes"] == {}


async def test_merge_can_switch_from_auto_pool_to_a_pool_id(
    emu: BatchEmulator, make_handler: Factory
) -> None:
    emu.add_job(
        {
            "id": "j",
            "poolInfo": {
                "autoPoolSpecification": {"poolLifetimeOption": "job", "pool": {"vmSize": "standard_d2s_v3"}}
            },
        }
    )
    emu.set_job_state("j", "disabled")
    handler, _ = make_handler()
    result = await handler.handle(
        inbound({"jobId": "j", "mode": "merge", "update": {"poolInfo": {"poolId": "p2"}}})
    )
    assert result.outcome is Outcome.applied
    assert emu.job("j")["poolInfo"] == {"poolId": "p2"}  # type: ignore[index]


async def test_unexpected_error_takes_the_transient_road(emu: BatchEmulator, make_handler: Factory) -> None:
    handler, publisher = make_handler(JOB_UPDATES_MAX_DELIVERY_COUNT=2)

    async def broken(_: Inbound) -> Any:
        raise RuntimeError("bug")

    handler._run = broken  # type: ignore[method-assign]
    body = {"jobId": "j", "update": {"priority": 1}}
    with pytest.raises(RetryLater):
        await handler.handle(inbound(body, delivery=1))
    assert publisher.events == []
    with pytest.raises(RetryLater, match="gave up"):
        await handler.handle(inbound(body, delivery=2))
    event = data(publisher)
    assert (event["outcome"], event["error"]["code"], event["jobId"]) == ("given-up", "InternalError", "j")


async def test_merge_with_a_stale_if_match_sends_no_write(emu: BatchEmulator, make_handler: Factory) -> None:
    emu.add_job({"id": "etl", "priority": 1})
    handler, publisher = make_handler()
    result = await handler.handle(
        inbound(
            {"jobId": "etl", "mode": "merge", "update": {"priority": 2}, "conditions": {"ifMatch": "0x8D01"}}
        )
    )
    assert result.outcome is Outcome.precondition_failed
    assert [r.method for r in emu.requests] == ["GET"]
    event = data(publisher)
    assert event["error"]["code"] == "ConditionNotMet"
    assert "httpStatus" not in event
