"""The pure plan, table-driven: admit a message, then walk next_step with hand-made replies.

No sockets and no event loop: every reply is a `Sent(BatchReply(...))` built here, so
each test pins the exact requests the plan asks for and the exact `Result` it ends with.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.errors import Problem
from handlers.outcomes import Outcome, Result, Write
from handlers.plan import (
    Done,
    Exchange,
    Inbound,
    Job,
    Policy,
    Purpose,
    Send,
    Settle,
    admit,
    internal_error,
    next_step,
)
from handlers.wire import CONTENT_TYPE, USER_AGENT, BatchError, BatchReply, BatchRequest, Sent, build_request

ENDPOINT = "https://acct.westeurope.batch.azure.com"
OTHER = "https://other.westeurope.batch.azure.com"
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
OCP_DATE = "Thu, 01 Jan 2026 12:00:00 GMT"
MAX_DELIVERIES = 5
POLICY = Policy(
    allowed_endpoints=frozenset({ENDPOINT, OTHER}),
    default_endpoint=ENDPOINT,
    api_version="2025-06-01",
    merge_max_rounds=3,
    max_delivery_count=MAX_DELIVERIES,
)
JOB_URL = f"{ENDPOINT}/jobs/job-1"
QUERY = "?api-version=2025-06-01"
# Independent of handlers.wire: the namespace the docs promise ids are derived in.
CRID_NAMESPACE = uuid.UUID("8f0d7c1e-4b6a-4c8e-9a35-2f1b5d6e7a90")
CRID = str(uuid.uuid5(CRID_NAMESPACE, "m-1"))
UNLIMITED = "P10675199DT2H48M5.4775807S"
LM_OLD = "Wed, 31 Dec 2025 08:00:00 GMT"  # before ENQUEUED
ENQUEUED = datetime(2026, 1, 1, 11, 59, 0, 500000, tzinfo=UTC)
LM_NEW = "Thu, 01 Jan 2026 11:59:30 GMT"  # after ENQUEUED
JOB = {
    "id": "job-1",
    "priority": 10,
    "constraints": {"maxWallClockTime": UNLIMITED, "maxTaskRetryCount": 3},
    "metadata": [{"name": "owner", "value": "a"}],
    "onAllTasksComplete": "noaction",
    "poolInfo": {"poolId": "p1"},
}
COND_412 = BatchError(
    "ConditionNotMet",
    "The condition specified using HTTP conditional header(s) is not met.",
    {"RequestId": "r-412"},
)


# --- builders -----------------------------------------------------------------------


def message(**fields: Any) -> dict[str, Any]:
    return {"schemaVersion": "1.0", "jobId": "job-1", **fields}


def inbound(
    msg: dict[str, Any] | bytes,
    message_id: str = "m-1",
    delivery: int = 1,
    enqueued_at: datetime | None = None,
) -> Inbound:
    body = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
    return Inbound(body, message_id, delivery, enqueued_at)


def job_for(msg: dict[str, Any], *, delivery: int = 1, enqueued_at: datetime | None = None) -> Job:
    admitted = admit(inbound(msg, delivery=delivery, enqueued_at=enqueued_at), POLICY, NOW)
    assert isinstance(admitted, Job), admitted
    return admitted


def error_body(code: str, text: str, values: dict[str, str] | None = None) -> bytes:
    return json.dumps(
        {
            "odata.metadata": f"{ENDPOINT}/$metadata#errors",
            "code": code,
            "message": {"lang": "en-US", "value": text},
            "values": [{"key": k, "value": v} for k, v in (values or {}).items()],
        }
    ).encode()


def got(
    job: dict[str, Any] | None = None,
    *,
    etag: str = "0x8DD0000000000A1",
    lm: str = LM_NEW,
    rid: str = "r-get",
    attempts: int = 1,
) -> Sent:
    body = json.dumps(job if job is not None else JOB).encode()
    return Sent(BatchReply(200, etag, lm, rid, None, None, body), attempts)


def patched(*, etag: str = "0x8DD0000000000B2", rid: str = "r-patch", attempts: int = 1) -> Sent:
    return Sent(BatchReply(200, etag, "Thu, 01 Jan 2026 12:00:01 GMT", rid, None, None, b""), attempts)


def failed_412(*, rid: str = "r-412", attempts: int = 1) -> Sent:
    body = error_body("ConditionNotMet", COND_412.message, {"RequestId": "r-412"})
    return Sent(BatchReply(412, None, None, rid, None, None, body), attempts)


REFUSALS = {
    400: ("InvalidPropertyValue", "The value provided for one of the properties is invalid."),
    404: ("JobNotFound", "The specified job does not exist."),
    409: ("JobCompleted", "The specified job is already in a completed state."),
}


def refused(status: int, *, rid: str = "r-refused") -> Sent:
    code, text = REFUSALS[status]
    return Sent(BatchReply(status, None, None, rid, None, None, error_body(code, text)), 1)


def throttled(status: int, *, attempts: int = 6, rid: str = "r-busy") -> Sent:
    code = {429: "TooManyRequests", 503: "ServerBusy"}[status]
    body = error_body(code, "Please retry.")
    return Sent(BatchReply(status, None, None, rid, None, 0.0, body), attempts, f"HTTP {status}")


def no_reply(*, attempts: int = 3) -> Sent:
    return Sent(None, attempts, "ConnectError: connection refused")


@dataclass
class Walk:
    steps: list[Send]
    done: Done

    @property
    def result(self) -> Result:
        return self.done.result

    @property
    def methods(self) -> list[str]:
        return [s.request.method for s in self.steps]

    @property
    def purposes(self) -> list[Purpose]:
        return [s.purpose for s in self.steps]


def walk(job: Job, replies: Sequence[Sent]) -> Walk:
    """Drive the plan: each Send gets the next reply; the plan must end exactly when they run out."""
    history: tuple[Exchange, ...] = ()
    steps: list[Send] = []
    for sent in replies:
        step = next_step(job, history)
        assert isinstance(step, Send), f"plan ended after {len(steps)} of {len(replies)} replies: {step}"
        steps.append(step)
        history = (*history, Exchange(step, sent))
    done = next_step(job, history)
    assert isinstance(done, Done), f"plan wants more than {len(replies)} replies: {done}"
    return Walk(steps, done)


def expected(mode: str, outcome: Outcome, **fields: Any) -> Result:
    base: dict[str, Any] = {
        "job_id": "job-1",
        "endpoint": ENDPOINT,
        "mode": mode,
        "client_request_id": CRID,
        "attempts": 1,
    }
    return Result(outcome, **{**base, **fields})


def headers(**extra: str) -> dict[str, str]:
    return {
        "User-Agent": USER_AGENT,
        "client-request-id": CRID,
        "return-client-request-id": "false",
        "ocp-date": OCP_DATE,
        **extra,
    }


PRIORITY = {"update": {"priority": 500}}


# --- requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "url", "hdrs", "body"),
    [
        pytest.param(
            message(**PRIORITY),
            JOB_URL + QUERY,
            headers(**{"Content-Type": CONTENT_TYPE}),
            b'{"priority":500}',
            id="plain",
        ),
        pytest.param(
            message(**PRIORITY, options={"timeout": 20, "returnClientRequestId": True}),
            JOB_URL + QUERY + "&timeOut=20",
            {**headers(**{"Content-Type": CONTENT_TYPE}), "return-client-request-id": "true"},
            b'{"priority":500}',
            id="timeout-and-return-id",
        ),
        pytest.param(
            message(**PRIORITY, conditions={"ifMatch": "0x8D1"}),
            JOB_URL + QUERY,
            headers(**{"If-Match": '"0x8D1"', "Content-Type": CONTENT_TYPE}),
            b'{"priority":500}',
            id="if-match-bare-is-quoted",
        ),
        pytest.param(
            message(
                **PRIORITY,
                conditions={"ifMatch": '"0x8D1"', "ifUnmodifiedSince": "2025-12-31T23:00:00+01:00"},
            ),
            JOB_URL + QUERY,
            headers(
                **{
                    "If-Match": '"0x8D1"',
                    "If-Unmodified-Since": "Wed, 31 Dec 2025 22:00:00 GMT",
                    "Content-Type": CONTENT_TYPE,
                }
            ),
            b'{"priority":500}',
            id="if-match-quoted-and-unmodified-since",
        ),
        pytest.param(
            message(**PRIORITY, conditions={"ifMatch": "*"}),
            JOB_URL + QUERY,
            headers(**{"If-Match": "*", "Content-Type": CONTENT_TYPE}),
            b'{"priority":500}',
            id="if-match-star",
        ),
        pytest.param(
            message(
                **PRIORITY,
                conditions={"ifNoneMatch": "0x8D1", "ifModifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"},
            ),
            JOB_URL + QUERY,
            headers(
                **{
                    "If-None-Match": '"0x8D1"',
                    "If-Modified-Since": "Mon, 17 Feb 2025 00:00:00 GMT",
                    "Content-Type": CONTENT_TYPE,
                }
            ),
            b'{"priority":500}',
            id="if-none-match-and-modified-since",
        ),
        pytest.param(
            message(
                **PRIORITY,
                options={
                    "ocpDate": "2026-01-01T11:55:00Z",
                    "clientRequestId": "9C4D50EE-2D56-4CD3-8152-34347DC9F2B0",
                },
            ),
            JOB_URL + QUERY,
            {
                "User-Agent": USER_AGENT,
                "client-request-id": "9C4D50EE-2D56-4CD3-8152-34347DC9F2B0",
                "return-client-request-id": "false",
                "ocp-date": "Thu, 01 Jan 2026 11:55:00 GMT",
                "Content-Type": CONTENT_TYPE,
            },
            b'{"priority":500}',
            id="explicit-ocp-date-and-client-request-id",
        ),
        pytest.param(
            message(
                update={
                    "metadata": [{"name": "a", "value": "b"}],
                    "onAllTasksComplete": "TerminateJob",
                    "constraints": {"maxWallClockTime": "01:30:00"},
                    "priority": -1,
                }
            ),
            JOB_URL + QUERY,
            headers(**{"Content-Type": CONTENT_TYPE}),
            b'{"priority":-1,"constraints":{"maxWallClockTime":"PT1H30M"},'
            b'"onAllTasksComplete":"terminatejob","metadata":[{"name":"a","value":"b"}]}',
            id="body-canonical-compact-in-field-order",
        ),
        pytest.param(
            {"schemaVersion": "1.0", "jobUrl": f"{OTHER}/jobs/Job_B-2/", "update": {"priority": 1}},
            f"{OTHER}/jobs/Job_B-2" + QUERY,
            headers(**{"Content-Type": CONTENT_TYPE}),
            b'{"priority":1}',
            id="job-url",
        ),
    ],
)
def test_replace_sends_one_exact_patch(
    msg: dict[str, Any], url: str, hdrs: dict[str, str], body: bytes
) -> None:
    step = next_step(job_for(msg))
    assert isinstance(step, Send)
    assert step.purpose is Purpose.write
    assert (step.request.method, step.request.url) == ("PATCH", url)
    assert dict(step.request.headers) == hdrs
    assert step.request.body == body


def test_job_id_is_percent_encoded_in_the_url() -> None:
    # The contract only admits [A-Za-z0-9_-] ids; the builder still encodes anything else.
    request = build_request(
        "GET", ENDPOINT, "a b/c?d", api_version="2025-06-01", client_request_id="c", ocp_date=NOW
    )
    assert request.url == f"{ENDPOINT}/jobs/a%20b%2Fc%3Fd?api-version=2025-06-01"


def test_timeout_parameter_is_lower_case_before_2025_06_01() -> None:
    policy = Policy(frozenset({ENDPOINT}), ENDPOINT, "2024-07-01.20.0")
    job = admit(inbound(message(**PRIORITY, options={"timeout": 5})), policy, NOW)
    assert isinstance(job, Job)
    step = next_step(job)
    assert isinstance(step, Send)
    assert step.request.url == JOB_URL + "?api-version=2024-07-01.20.0&timeout=5"


@pytest.mark.parametrize(
    ("msg", "url"),
    [
        pytest.param(
            message(mode="merge", **PRIORITY, conditions={"ifMatch": "0x8D1"}),
            JOB_URL + QUERY,
            id="merge-read",
        ),
        pytest.param(
            message(**PRIORITY, conditions={"ifMatch": "0x8D1"}, options={"dryRun": True, "timeout": 7}),
            JOB_URL + QUERY + "&timeOut=7",
            id="dry-run-read",
        ),
    ],
)
def test_reads_carry_no_conditions_and_no_content_type(msg: dict[str, Any], url: str) -> None:
    step = next_step(job_for(msg))
    assert isinstance(step, Send)
    assert step.purpose is Purpose.read
    assert step.request.method == "GET"
    assert step.request.url == url
    assert dict(step.request.headers) == headers()
    assert step.request.body is None


# --- replace: one PATCH per reply class -----------------------------------------------

_COND = {"conditions": {"ifMatch": "0x8D1"}}


@pytest.mark.parametrize(
    ("extra", "replies", "delivery", "want", "settle"),
    [
        pytest.param(
            {},
            [patched()],
            1,
            expected(
                "replace",
                Outcome.applied,
                http_status=200,
                request_id="r-patch",
                etag="0x8DD0000000000B2",
                last_modified="Thu, 01 Jan 2026 12:00:01 GMT",
                changes={"priority": {"to": 500}},
                write=Write.this_delivery,
            ),
            Settle.complete,
            id="2xx",
        ),
        pytest.param(
            _COND,
            [patched(attempts=3)],
            1,
            expected(
                "replace",
                Outcome.applied,
                http_status=200,
                request_id="r-patch",
                etag="0x8DD0000000000B2",
                last_modified="Thu, 01 Jan 2026 12:00:01 GMT",
                changes={"priority": {"to": 500}},
                write=Write.this_delivery,
                conditions_met=True,
                attempts=3,
            ),
            Settle.complete,
            id="2xx-conditioned-after-retries",
        ),
        pytest.param(
            _COND,
            [failed_412()],
            1,
            expected(
                "replace",
                Outcome.precondition_failed,
                http_status=412,
                error=COND_412,
                request_id="r-412",
                write=Write.none,
                conditions_met=False,
            ),
            Settle.complete,
            id="412-first-delivery-no-verify",
        ),
        *[
            pytest.param(
                {},
                [refused(status)],
                1,
                expected(
                    "replace",
                    Outcome.failed,
                    http_status=status,
                    error=BatchError(*REFUSALS[status]),
                    request_id="r-refused",
                    write=Write.none,
                ),
                Settle.complete,
                id=f"{status}-refused",
            )
            for status in REFUSALS
        ],
        *[
            pytest.param(
                {},
                [throttled(status)],
                delivery,
                expected(
                    "replace",
                    Outcome.given_up,
                    http_status=status,
                    error=BatchError({429: "TooManyRequests", 503: "ServerBusy"}[status], "Please retry."),
                    request_id="r-busy",
                    attempts=6,
                ),
                settle,
                id=f"{status}-exhausted-delivery-{delivery}",
            )
            for status in (429, 503)
            for delivery, settle in ((1, Settle.retry), (4, Settle.retry), (5, Settle.give_up))
        ],
        *[
            pytest.param(
                {},
                [no_reply()],
                delivery,
                expected(
                    "replace",
                    Outcome.given_up,
                    error=BatchError("NoReply", "ConnectError: connection refused"),
                    attempts=3,
                ),
                settle,
                id=f"no-reply-delivery-{delivery}",
            )
            for delivery, settle in ((1, Settle.retry), (5, Settle.give_up), (9, Settle.give_up))
        ],
    ],
)
def test_replace_outcomes(
    extra: dict[str, Any], replies: list[Sent], delivery: int, want: Result, settle: Settle
) -> None:
    w = walk(job_for(message(**PRIORITY, **extra), delivery=delivery), replies)
    assert w.methods == ["PATCH"]
    assert w.result == want
    assert w.done.settle is settle


# --- replace: a 412 our own earlier write could explain -----------------------------


@pytest.mark.parametrize(
    ("conditions", "delivery", "attempts"),
    [
        pytest.param({"ifMatch": "0x8D1"}, 2, 1, id="if-match-redelivery"),
        pytest.param({"ifMatch": "0x8D1"}, 1, 2, id="if-match-retried-patch"),
        pytest.param({"ifUnmodifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"}, 2, 1, id="unmodified-since"),
        pytest.param(
            {"ifMatch": "0x8D1", "ifUnmodifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"}, 1, 2, id="both"
        ),
    ],
)
def test_replace_412_that_our_write_may_explain_is_verified_with_one_get(
    conditions: dict[str, str], delivery: int, attempts: int
) -> None:
    job = job_for(message(**PRIORITY, conditions=conditions), delivery=delivery)
    patch = next_step(job)
    assert isinstance(patch, Send)
    verify = next_step(job, (Exchange(patch, failed_412(attempts=attempts)),))
    assert isinstance(verify, Send)
    assert verify.purpose is Purpose.verify
    assert (verify.request.method, verify.request.url) == ("GET", JOB_URL + QUERY)
    assert dict(verify.request.headers) == headers()  # a plain read: no conditions, no body
    assert verify.request.body is None


@pytest.mark.parametrize(
    "conditions",
    [
        pytest.param({"ifNoneMatch": "0x8D1"}, id="if-none-match"),
        pytest.param({"ifModifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"}, id="if-modified-since"),
        pytest.param(
            {"ifNoneMatch": "*", "ifModifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"}, id="both-none-match"
        ),
    ],
)
@pytest.mark.parametrize(("delivery", "attempts"), [(2, 1), (1, 4), (3, 2)])
def test_if_none_match_and_if_modified_since_412s_never_verify(
    conditions: dict[str, str], delivery: int, attempts: int
) -> None:
    w = walk(
        job_for(message(**PRIORITY, conditions=conditions), delivery=delivery),
        [failed_412(attempts=attempts)],
    )
    assert w.methods == ["PATCH"]
    assert w.result == expected(
        "replace",
        Outcome.precondition_failed,
        http_status=412,
        error=COND_412,
        request_id="r-412",
        write=Write.none,
        conditions_met=False,
        attempts=attempts,
    )


def _verify(
    job_json: dict[str, Any], *, lm: str, enqueued_at: datetime | None, update: dict[str, Any] | None = None
) -> Walk:
    msg = message(update=update or {"priority": 10, "metadata": [{"name": "owner", "value": "a"}]}, **_COND)
    job = job_for(msg, delivery=2, enqueued_at=enqueued_at)
    return walk(job, [failed_412(attempts=2), got(job_json, lm=lm, attempts=2)])


@pytest.mark.parametrize(
    ("lm", "enqueued_at"),
    [
        pytest.param(LM_NEW, ENQUEUED, id="written-after-enqueue"),
        pytest.param(LM_OLD, None, id="no-enqueued-time"),
        # Last-Modified has whole seconds: the same second as the enqueue is not "before".
        pytest.param("Thu, 01 Jan 2026 11:59:00 GMT", ENQUEUED, id="same-second-as-enqueue"),
    ],
)
def test_replace_verify_values_in_place_is_applied_by_an_earlier_delivery(
    lm: str, enqueued_at: datetime | None
) -> None:
    w = _verify(JOB, lm=lm, enqueued_at=enqueued_at)
    assert w.purposes == [Purpose.write, Purpose.verify]
    assert w.result == expected(
        "replace",
        Outcome.applied,
        http_status=200,
        request_id="r-get",  # the deciding reply: the read, not the 412
        etag="0x8DD0000000000A1",
        last_modified=lm,
        attempts=4,
        write=Write.earlier_delivery,
        conditions_met=None,
        in_place=True,
    )
    assert w.done.settle is Settle.complete


def test_replace_verify_in_place_but_written_before_the_message_is_precondition_failed() -> None:
    w = _verify(JOB, lm=LM_OLD, enqueued_at=ENQUEUED)
    assert w.result == expected(
        "replace",
        Outcome.precondition_failed,
        http_status=412,
        error=COND_412,
        request_id="r-412",
        attempts=4,
        write=Write.none,
        conditions_met=False,
        in_place=True,
    )


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(got({**JOB, "priority": 11}), id="values-not-in-place"),
        pytest.param(refused(404, rid="r-get-404"), id="job-gone"),
    ],
)
def test_replace_verify_not_in_place_reports_the_patch_412(second: Sent) -> None:
    job = job_for(message(update={"priority": 10}, **_COND), delivery=2)
    w = walk(job, [failed_412(), second])
    assert w.result == expected(
        "replace",
        Outcome.precondition_failed,
        http_status=412,
        error=COND_412,
        request_id="r-412",
        attempts=2,
        write=Write.none,
        conditions_met=False,
    )


@pytest.mark.parametrize(("delivery", "settle"), [(2, Settle.retry), (MAX_DELIVERIES, Settle.give_up)])
def test_replace_verify_read_that_fails_transiently_gives_up_or_retries(
    delivery: int, settle: Settle
) -> None:
    job = job_for(message(update={"priority": 10}, **_COND), delivery=delivery)
    w = walk(job, [failed_412(), throttled(503, attempts=2)])
    assert w.result == expected(
        "replace",
        Outcome.given_up,
        http_status=503,
        error=BatchError("ServerBusy", "Please retry."),
        request_id="r-busy",
        attempts=3,
    )
    assert w.done.settle is settle


def test_replace_verify_nested_object_must_equal_whole() -> None:
    # Our replace PATCH of constraints {maxTaskRetryCount: 3} resets maxWallClockTime to
    # unlimited; a job still holding PT1H was not written by us.
    job_json = {**JOB, "constraints": {"maxWallClockTime": "PT1H", "maxTaskRetryCount": 3}}
    w = _verify(job_json, lm=LM_NEW, enqueued_at=ENQUEUED, update={"constraints": {"maxTaskRetryCount": 3}})
    assert w.result.outcome is Outcome.precondition_failed


def test_naive_enqueued_time_is_taken_as_utc() -> None:
    w = _verify(JOB, lm=LM_OLD, enqueued_at=datetime(2026, 1, 1, 11, 59))
    assert w.result.outcome is Outcome.precondition_failed


# --- merge ----------------------------------------------------------------------------

MERGE_UPDATE = {
    "priority": 10,  # unchanged: not sent
    "constraints": {"maxTaskRetryCount": 5},
    "metadata": [{"name": "team", "value": "y"}],
}
MERGED_CONSTRAINTS = {"maxWallClockTime": UNLIMITED, "maxTaskRetryCount": 5}
MERGED_METADATA = [{"name": "owner", "value": "a"}, {"name": "team", "value": "y"}]
MERGE_BODY = json.dumps(
    {"constraints": MERGED_CONSTRAINTS, "metadata": MERGED_METADATA}, separators=(",", ":")
).encode()
MERGE_CHANGES = {
    "constraints": {"from": JOB["constraints"], "to": MERGED_CONSTRAINTS},
    "metadata": {"from": JOB["metadata"], "to": MERGED_METADATA},
}


def merge_job(delivery: int = 1, **extra: Any) -> Job:
    return job_for(message(mode="merge", update=MERGE_UPDATE, **extra), delivery=delivery)


def test_merge_reads_then_patches_only_changed_properties_guarded_by_the_read_etag() -> None:
    job = merge_job()
    read = next_step(job)
    assert isinstance(read, Send)
    write = next_step(job, (Exchange(read, got(etag="0x8DD0000000000A1")),))
    assert isinstance(write, Send)
    assert write.purpose is Purpose.write
    assert (write.request.method, write.request.url) == ("PATCH", JOB_URL + QUERY)
    assert dict(write.request.headers) == headers(
        **{"If-Match": '"0x8DD0000000000A1"', "Content-Type": CONTENT_TYPE}
    )
    assert write.request.body == MERGE_BODY
    assert dict(write.changes) == MERGE_CHANGES


def test_merge_keeps_a_quoted_read_etag_quoted_once() -> None:
    job = merge_job()
    read = next_step(job)
    assert isinstance(read, Send)
    write = next_step(job, (Exchange(read, got(etag='"0x8DD0000000000A1"')),))
    assert isinstance(write, Send)
    assert write.request.headers["If-Match"] == '"0x8DD0000000000A1"'


@pytest.mark.parametrize(
    ("extra", "conditions_met"),
    [({}, None), ({"conditions": {"ifMatch": "0x8DD0000000000A1"}}, True)],
)
def test_merge_applied(extra: dict[str, Any], conditions_met: bool | None) -> None:
    w = walk(merge_job(**extra), [got(), patched(attempts=2)])
    assert w.methods == ["GET", "PATCH"]
    assert w.result == expected(
        "merge",
        Outcome.applied,
        http_status=200,
        request_id="r-patch",
        etag="0x8DD0000000000B2",
        last_modified="Thu, 01 Jan 2026 12:00:01 GMT",
        attempts=3,
        changes=MERGE_CHANGES,
        write=Write.this_delivery,
        conditions_met=conditions_met,
    )
    assert w.done.settle is Settle.complete


def test_merge_412_reads_again_and_the_applied_result_carries_nothing_of_the_412() -> None:
    job = merge_job()
    moved = {**JOB, "priority": 99, "metadata": [{"name": "owner", "value": "b"}]}
    w = walk(
        job,
        [
            got(etag="0x1", rid="r-get-1"),
            failed_412(rid="r-412"),
            got(moved, etag="0x2", rid="r-get-2"),
            patched(rid="r-patch-2"),
        ],
    )
    assert w.methods == ["GET", "PATCH", "GET", "PATCH"]
    assert w.steps[1].request.headers["If-Match"] == '"0x1"'
    assert w.steps[3].request.headers["If-Match"] == '"0x2"'
    # Re-merged onto what the second read saw (priority 10 differs from 99 now).
    assert json.loads(w.steps[3].request.body or b"") == {
        "priority": 10,
        "constraints": MERGED_CONSTRAINTS,
        "metadata": [{"name": "owner", "value": "b"}, {"name": "team", "value": "y"}],
    }
    assert w.result.error is None
    assert w.result.request_id == "r-patch-2"
    assert w.result.http_status == 200
    assert w.result.attempts == 4
    assert w.result.outcome is Outcome.applied
    assert set(w.result.changes) == {"priority", "constraints", "metadata"}


def test_merge_is_bounded_by_merge_max_rounds() -> None:
    replies: list[Sent] = []
    for n in range(POLICY.merge_max_rounds):
        replies += [got(etag=f"0x{n}", rid=f"r-get-{n}"), failed_412(rid=f"r-412-{n}")]
    w = walk(merge_job(), replies)
    assert w.methods == ["GET", "PATCH"] * POLICY.merge_max_rounds
    assert w.methods.count("GET") == 3
    assert w.result == expected(
        "merge",
        Outcome.precondition_failed,
        http_status=412,
        error=COND_412,
        request_id="r-412-2",
        attempts=6,
        write=Write.none,
        conditions_met=None,
    )


def test_merge_if_match_not_matching_the_read_sends_no_patch() -> None:
    w = walk(merge_job(conditions={"ifMatch": "0xSTALE"}), [got(etag="0x8DD0000000000A1")])
    assert w.methods == ["GET"]
    assert w.result == expected(
        "merge",
        Outcome.precondition_failed,
        http_status=None,
        error=BatchError("ConditionNotMet", "ifMatch does not match the job's ETag (read)"),
        request_id="r-get",
        etag="0x8DD0000000000A1",
        last_modified=LM_NEW,
        write=Write.none,
        conditions_met=False,
    )


@pytest.mark.parametrize(
    ("delivery", "write"), [(1, Write.none), (2, Write.earlier_delivery), (5, Write.earlier_delivery)]
)
def test_merge_with_nothing_to_change_is_applied_in_place(delivery: int, write: Write) -> None:
    in_place = {**JOB, "constraints": MERGED_CONSTRAINTS, "metadata": MERGED_METADATA}
    w = walk(merge_job(delivery), [got(in_place)])
    assert w.methods == ["GET"]
    assert w.result == expected(
        "merge",
        Outcome.applied,
        http_status=200,
        request_id="r-get",
        etag="0x8DD0000000000A1",
        last_modified=LM_NEW,
        write=write,
        in_place=True,
    )


def test_merge_retried_patch_that_landed_is_recognised_on_the_next_read() -> None:
    in_place = {**JOB, "constraints": MERGED_CONSTRAINTS, "metadata": MERGED_METADATA}
    w = walk(merge_job(), [got(etag="0x1"), failed_412(attempts=2), got(in_place, etag="0x2", rid="r-get-2")])
    assert w.result == expected(
        "merge",
        Outcome.applied,
        http_status=200,
        request_id="r-get-2",
        etag="0x2",
        last_modified=LM_NEW,
        attempts=4,
        write=Write.earlier_delivery,
        in_place=True,
    )


def test_merge_if_match_redelivery_values_in_place_is_applied_by_an_earlier_delivery() -> None:
    in_place = {**JOB, "constraints": MERGED_CONSTRAINTS, "metadata": MERGED_METADATA}
    job = job_for(
        message(mode="merge", update=MERGE_UPDATE, conditions={"ifMatch": "0xOLD"}),
        delivery=2,
        enqueued_at=ENQUEUED,
    )
    w = walk(job, [got(in_place, etag="0xNEW", lm=LM_NEW)])
    assert w.result == expected(
        "merge",
        Outcome.applied,
        http_status=200,
        request_id="r-get",
        etag="0xNEW",
        last_modified=LM_NEW,
        write=Write.earlier_delivery,
        in_place=True,
    )


def test_merge_if_match_in_place_before_the_message_reports_condition_not_met() -> None:
    in_place = {**JOB, "constraints": MERGED_CONSTRAINTS, "metadata": MERGED_METADATA}
    job = job_for(
        message(mode="merge", update=MERGE_UPDATE, conditions={"ifMatch": "0xOLD"}),
        delivery=2,
        enqueued_at=ENQUEUED,
    )
    w = walk(job, [got(in_place, etag="0xNEW", lm=LM_OLD)])
    assert w.result.outcome is Outcome.precondition_failed
    assert (w.result.http_status, w.result.error) == (
        None,
        BatchError("ConditionNotMet", "ifMatch does not match the job's ETag (read)"),
    )


def test_merge_if_match_412_on_a_first_single_attempt_is_final() -> None:
    job = merge_job(conditions={"ifMatch": "0x8DD0000000000A1"})
    w = walk(job, [got(), failed_412()])
    assert w.methods == ["GET", "PATCH"]
    assert w.result.http_status == 412


@pytest.mark.parametrize("status", sorted(REFUSALS))
def test_merge_refused_read_or_write_is_failed(status: int) -> None:
    code, text = REFUSALS[status]
    on_read = walk(merge_job(), [refused(status)])
    on_write = walk(merge_job(), [got(), refused(status)])
    assert on_read.methods == ["GET"]
    assert on_write.methods == ["GET", "PATCH"]
    for w, attempts in ((on_read, 1), (on_write, 2)):
        assert w.result == expected(
            "merge",
            Outcome.failed,
            http_status=status,
            error=BatchError(code, text),
            request_id="r-refused",
            attempts=attempts,
            write=Write.none,
        )
        assert w.done.settle is Settle.complete


@pytest.mark.parametrize(("delivery", "settle"), [(1, Settle.retry), (MAX_DELIVERIES, Settle.give_up)])
@pytest.mark.parametrize("where", ["read", "write"])
@pytest.mark.parametrize("kind", ["429", "503", "no-reply"])
def test_merge_transient_exhausted(delivery: int, settle: Settle, where: str, kind: str) -> None:
    last = no_reply(attempts=2) if kind == "no-reply" else throttled(int(kind), attempts=2)
    replies = [last] if where == "read" else [got(), last]
    w = walk(merge_job(delivery), replies)
    fields: dict[str, Any] = (
        {"error": BatchError("NoReply", "ConnectError: connection refused")}
        if kind == "no-reply"
        else {
            "http_status": int(kind),
            "request_id": "r-busy",
            "error": BatchError({"429": "TooManyRequests", "503": "ServerBusy"}[kind], "Please retry."),
        }
    )
    assert w.result == expected("merge", Outcome.given_up, attempts=len(replies) + 1, **fields)
    assert w.done.settle is settle


# --- dry run --------------------------------------------------------------------------

DRY_UPDATE = {"priority": 20, "constraints": {"maxTaskRetryCount": 2}, "onAllTasksComplete": "NoAction"}


@pytest.mark.parametrize(
    ("mode", "changes"),
    [
        pytest.param(
            "replace",
            {
                "priority": {"from": 10, "to": 20},
                "constraints": {"from": JOB["constraints"], "to": {"maxTaskRetryCount": 2}},
            },
            id="replace-semantics",
        ),
        pytest.param(
            "merge",
            {
                "priority": {"from": 10, "to": 20},
                "constraints": {
                    "from": JOB["constraints"],
                    "to": {"maxWallClockTime": UNLIMITED, "maxTaskRetryCount": 2},
                },
            },
            id="merge-semantics",
        ),
    ],
)
def test_dry_run_reads_once_and_reports_changes(mode: str, changes: dict[str, Any]) -> None:
    job = job_for(message(mode=mode, update=DRY_UPDATE, options={"dryRun": True}))
    assert job.mode == "dry-run"
    w = walk(job, [got()])
    assert w.methods == ["GET"]
    assert w.result == expected(
        "dry-run",
        Outcome.dry_run,
        http_status=200,
        request_id="r-get",
        etag="0x8DD0000000000A1",
        last_modified=LM_NEW,
        changes=changes,
        write=None,
        conditions_met=None,  # the message has no conditions
    )
    assert w.done.settle is Settle.complete


def test_dry_run_replace_counts_batch_reset_values_as_unchanged() -> None:
    # A replace PATCH of {"maxTaskRetryCount": 3} leaves maxWallClockTime unlimited,
    # which is what JOB holds already: nothing would change.
    update = {"constraints": {"maxTaskRetryCount": 3}}
    job = job_for(message(update=update, options={"dryRun": True}))
    assert walk(job, [got()]).result.changes == {}


def test_dry_run_replace_nested_equal_whole_is_unchanged() -> None:
    update = {"constraints": {"maxWallClockTime": "10675199.02:48:05.4775807", "maxTaskRetryCount": 3}}
    w = walk(job_for(message(update=update, options={"dryRun": True})), [got()])
    assert w.result.changes == {}


@pytest.mark.parametrize(
    ("conditions", "met"),
    [
        ({"ifMatch": "0x8DD0000000000A1"}, True),
        ({"ifMatch": '"0x8DD0000000000A1"'}, True),
        ({"ifMatch": "0x8DD0000000000A0"}, False),
        ({"ifMatch": "*"}, True),
        ({"ifNoneMatch": "0x8DD0000000000A1"}, False),
        ({"ifNoneMatch": "0xOTHER"}, True),
        ({"ifModifiedSince": "Thu, 01 Jan 2026 11:00:00 GMT"}, True),
        ({"ifModifiedSince": LM_NEW}, False),
        ({"ifUnmodifiedSince": LM_NEW}, True),
        ({"ifUnmodifiedSince": "Thu, 01 Jan 2026 11:00:00 GMT"}, False),
    ],
)
def test_dry_run_conditions_met_from_the_read(conditions: dict[str, str], met: bool) -> None:
    job = job_for(message(update={"priority": 10}, conditions=conditions, options={"dryRun": True}))
    w = walk(job, [got()])
    assert w.steps[0].request.headers == headers()  # the read itself is unconditional
    assert w.result.conditions_met is met
    assert w.result.changes == {}


@pytest.mark.parametrize(
    "conditions",
    [
        {"ifMatch": "0x8DD0000000000A1", "ifUnmodifiedSince": "Thu, 01 Jan 2026 11:00:00 GMT"},
        {"ifNoneMatch": "0xOTHER", "ifModifiedSince": LM_NEW},
    ],
)
def test_dry_run_evaluates_both_conditions_of_a_pair(conditions: dict[str, str]) -> None:
    job = job_for(message(update={"priority": 10}, conditions=conditions, options={"dryRun": True}))
    assert walk(job, [got()]).result.conditions_met is False


@pytest.mark.parametrize(
    ("reply", "want", "settle"),
    [
        *[
            pytest.param(
                refused(status),
                expected(
                    "dry-run",
                    Outcome.failed,
                    http_status=status,
                    error=BatchError(*REFUSALS[status]),
                    request_id="r-refused",
                    write=Write.none,
                ),
                Settle.complete,
                id=f"{status}",
            )
            for status in REFUSALS
        ],
        pytest.param(
            failed_412(),
            expected(
                "dry-run",
                Outcome.precondition_failed,
                http_status=412,
                error=COND_412,
                request_id="r-412",
                write=Write.none,
                conditions_met=None,
            ),
            Settle.complete,
            id="412",
        ),
        pytest.param(
            throttled(429, attempts=4),
            expected(
                "dry-run",
                Outcome.given_up,
                http_status=429,
                error=BatchError("TooManyRequests", "Please retry."),
                request_id="r-busy",
                attempts=4,
            ),
            Settle.retry,
            id="429-exhausted",
        ),
        pytest.param(
            no_reply(attempts=2),
            expected(
                "dry-run",
                Outcome.given_up,
                error=BatchError("NoReply", "ConnectError: connection refused"),
                attempts=2,
            ),
            Settle.retry,
            id="no-reply",
        ),
    ],
)
def test_dry_run_read_that_is_not_ok(reply: Sent, want: Result, settle: Settle) -> None:
    w = walk(job_for(message(**PRIORITY, options={"dryRun": True})), [reply])
    assert w.methods == ["GET"]
    assert w.result == want
    assert w.done.settle is settle


# --- admit ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "job_id", "endpoint", "problems"),
    [
        pytest.param(
            message(update={"priorty": 1}),
            "job-1",
            ENDPOINT,
            [("$.update.priorty", "extra_forbidden")],
            id="unknown-field",
        ),
        pytest.param(
            message(update={"priority": "100", "maxParallelTasks": 0}),
            "job-1",
            ENDPOINT,
            [("$.update.priority", "int_type"), ("$.update.maxParallelTasks", "invalid_max_parallel_tasks")],
            id="every-problem",
        ),
        pytest.param(
            message(endpoint=OTHER, update={"metadata": [{"name": "", "value": "v"}]}),
            "job-1",
            OTHER,
            [("$.update.metadata[0].name", "string_too_short")],
            id="json-path-with-index",
        ),
        pytest.param(
            message(endpoint="https://evil.example.com", update={"priority": 1, "x": 1}),
            "job-1",
            None,
            [("$.update.x", "extra_forbidden")],
            id="unlisted-endpoint-hint-dropped",
        ),
        pytest.param(b"{not json", None, None, [("$", "json_invalid")], id="not-json"),
        pytest.param(
            {"schemaVersion": "1.0", "jobId": "bad id", "update": {"priority": 1}},
            None,
            None,
            [("$.jobId", "invalid_id")],
            id="bad-job-id",
        ),
        pytest.param(
            message(**PRIORITY, options={"ocpDate": "Thu, 01 Jan 2026 11:44:59 GMT"}),
            "job-1",
            ENDPOINT,
            [("$.options.ocpDate", "ocp_date_skew")],
            id="ocp-date-skew",
        ),
        pytest.param(message(), "job-1", ENDPOINT, [("$", "empty_update")], id="empty-update"),
    ],
)
def test_admit_rejects_with_json_paths(
    body: dict[str, Any] | bytes, job_id: str | None, endpoint: str | None, problems: list[tuple[str, str]]
) -> None:
    done = admit(inbound(body), POLICY, NOW)
    assert isinstance(done, Done)
    assert done.settle is Settle.complete
    result = done.result
    assert [(p.path, p.code) for p in result.problems] == problems
    assert (result.outcome, result.job_id, result.endpoint) == (Outcome.rejected, job_id, endpoint)
    assert (result.attempts, result.write, result.http_status, result.mode) == (0, None, None, None)


def test_admit_ocp_date_inside_15_minutes_is_accepted() -> None:
    job = job_for(message(**PRIORITY, options={"ocpDate": "Thu, 01 Jan 2026 12:15:00 GMT"}))
    step = next_step(job)
    assert isinstance(step, Send)
    assert step.request.headers["ocp-date"] == "Thu, 01 Jan 2026 12:15:00 GMT"


@pytest.mark.parametrize(
    ("msg", "path", "text"),
    [
        pytest.param(
            message(endpoint="https://third.westeurope.batch.azure.com", **PRIORITY),
            "$.endpoint",
            "endpoint https://third.westeurope.batch.azure.com is not in the allow-list "
            "(BATCH_ALLOWED_ENDPOINTS)",
            id="endpoint",
        ),
        pytest.param(
            {
                "schemaVersion": "1.0",
                "jobUrl": "https://third.westeurope.batch.azure.com/jobs/job-1",
                **PRIORITY,
            },
            "$.jobUrl",
            "endpoint https://third.westeurope.batch.azure.com is not in the allow-list "
            "(BATCH_ALLOWED_ENDPOINTS)",
            id="job-url",
        ),
    ],
)
def test_admit_endpoint_not_allowed(msg: dict[str, Any], path: str, text: str) -> None:
    done = admit(inbound(msg), POLICY, NOW)
    assert done == Done(
        Result(Outcome.rejected, job_id="job-1", problems=(Problem(path, "endpoint_not_allowed", text),))
    )


def test_admit_no_endpoint_and_no_default_is_rejected() -> None:
    policy = Policy(frozenset({ENDPOINT, OTHER}), None, "2025-06-01")
    done = admit(inbound(message(**PRIORITY)), policy, NOW)
    assert isinstance(done, Done)
    assert done.result.outcome is Outcome.rejected
    assert done.result.problems == (
        Problem(
            "$.endpoint",
            "endpoint_not_allowed",
            "message names no endpoint and no default is configured (BATCH_DEFAULT_ENDPOINT)",
        ),
    )


def test_admit_normalises_a_listed_endpoint() -> None:
    job = job_for(message(endpoint="https://ACCT.westeurope.batch.azure.com:443/", **PRIORITY))
    assert job.endpoint == ENDPOINT


def test_client_request_id_without_a_message_id_is_derived_from_the_body() -> None:
    a = json.dumps(message(update={"priority": 1})).encode()
    b = json.dumps(message(update={"priority": 2})).encode()

    def crid(body: bytes) -> str:
        admitted = admit(Inbound(body, ""), POLICY, NOW)
        assert isinstance(admitted, Job)
        return admitted.client_request_id

    assert crid(a) == crid(a)
    assert crid(a) != crid(b)
    assert crid(a) == str(uuid.uuid5(CRID_NAMESPACE, "sha256:" + hashlib.sha256(a).hexdigest()))
    assert Inbound(a, "").key == "sha256:" + hashlib.sha256(a).hexdigest()
    # A message id, when there is one, wins over the body.
    assert job_for(message(update={"priority": 1})).client_request_id == CRID


def test_explicit_client_request_id_wins() -> None:
    explicit = "9C4D50EE-2D56-4CD3-8152-34347DC9F2B0"
    job = job_for(message(**PRIORITY, options={"clientRequestId": explicit}))
    assert job.client_request_id == explicit
    w = walk(job, [patched()])
    assert w.steps[0].request.headers["client-request-id"] == explicit
    assert w.result.client_request_id == explicit


def test_echoed_client_request_id_is_reported() -> None:
    job = job_for(message(**PRIORITY, options={"returnClientRequestId": True}))
    echoed = Sent(BatchReply(200, "0x2", LM_NEW, "r-patch", "ECHOED", None, b""), 1)
    assert walk(job, [echoed]).result.client_request_id == "ECHOED"


# --- internal errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("delivery", "settle"),
    [(1, Settle.retry), (MAX_DELIVERIES - 1, Settle.retry), (MAX_DELIVERIES, Settle.give_up)],
)
def test_internal_error_takes_the_transient_road(delivery: int, settle: Settle) -> None:
    done = internal_error(inbound(message(**PRIORITY), delivery=delivery), POLICY, ValueError("boom"), NOW)
    assert done == Done(
        Result(
            Outcome.given_up,
            job_id="job-1",
            error=BatchError("InternalError", "ValueError in the job-update function"),
        ),
        settle,
    )


def test_internal_error_for_an_unreadable_body_names_no_job() -> None:
    done = internal_error(inbound(b"\xff\xfe"), POLICY, KeyError("k"), NOW)
    assert done.result.job_id is None
    assert done.result.error == BatchError("InternalError", "KeyError in the job-update function")


def test_merge_without_a_read_etag_does_not_write_unguarded() -> None:
    job = job_for(message(mode="merge", update={"priority": 20}))
    w = walk(job, [got(etag="")])
    assert w.methods == ["GET"]
    assert w.result.outcome is Outcome.failed
    assert w.result.error is not None and w.result.error.code == "MissingETag"
    assert w.result.write is Write.none


def test_merge_sends_the_read_etag_back_as_read_only_quoted() -> None:
    job = job_for(message(mode="merge", update={"priority": 20}))
    step = next_step(job, (Exchange(Send(BatchRequest("GET", "u", {}), Purpose.read), got(etag='"0x8D1"')),))
    assert isinstance(step, Send)
    assert step.request.headers["If-Match"] == '"0x8D1"'  # not quoted twice


# --- review findings ------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"<html>", b"", b"[]"])
@pytest.mark.parametrize("mode", ["merge", "dry-run"])
def test_an_unreadable_read_is_failed_never_a_blind_write(body: bytes, mode: str) -> None:
    fields: dict[str, Any] = {"mode": "merge"} if mode == "merge" else {"options": {"dryRun": True}}
    job = job_for(message(update={"metadata": [{"name": "a", "value": "1"}]}, **fields))
    w = walk(job, [Sent(BatchReply(200, "0x1", LM_NEW, "r", None, None, body), 1)])
    assert w.methods == ["GET"]  # no PATCH that would replace the whole list
    assert w.result.outcome is Outcome.failed
    assert w.result.error is not None and w.result.error.code == "UnreadableJob"


def test_merge_checks_for_the_read_etag_before_the_condition() -> None:
    job = job_for(message(mode="merge", update={"priority": 20}, conditions={"ifMatch": "0x1"}))
    w = walk(job, [got(etag="")])
    assert (w.result.outcome, w.result.error and w.result.error.code) == (Outcome.failed, "MissingETag")


def test_values_read_from_the_job_and_echoed_by_batch_are_taken_out() -> None:
    secret = "ghp_R3alT0kenValue9"
    read = {**JOB, "metadata": [{"name": "token", "value": secret}]}
    job = job_for(message(mode="merge", update={"metadata": [{"name": "new", "value": "1"}]}))
    body = error_body("InvalidPropertyValue", f"bad value {secret}", {"Reason": f"has {secret}"})
    w = walk(job, [got(read), Sent(BatchReply(400, None, None, "r", None, None, body), 1)])
    assert w.result.error is not None
    assert secret not in w.result.error.message and secret not in str(w.result.error.values)


@pytest.mark.parametrize("last_modified", ["Tue, 4 Nov 2026 14:23:21 GMT", "yesterday", None])
def test_a_dry_run_with_an_odd_last_modified_says_unknown(last_modified: str | None) -> None:
    job = job_for(
        message(update={"priority": 1}, options={"dryRun": True}, conditions={"ifModifiedSince": LM_NEW})
    )
    reply = BatchReply(200, "0x1", last_modified, "r", None, None, json.dumps(JOB).encode())
    w = walk(job, [Sent(reply, 1)])
    assert w.result.outcome is Outcome.dry_run
    assert w.result.conditions_met is None


def test_a_dry_run_with_only_an_etag_condition_ignores_last_modified() -> None:
    job = job_for(message(update={"priority": 1}, options={"dryRun": True}, conditions={"ifMatch": "0x1"}))
    reply = BatchReply(200, "0x1", "not a date", "r", None, None, json.dumps(JOB).encode())
    assert walk(job, [Sent(reply, 1)]).result.conditions_met is True


def test_a_huge_echo_is_cut_before_it_is_scrubbed() -> None:
    pool = {f"k{i}": f"value-{i:06d}" for i in range(8_000)}  # within the 256 KiB message
    job = job_for(message(update={"poolInfo": {"autoPoolSpecification": {"pool": pool}}}))
    echoed = json.dumps(pool) * 4
    body = error_body("InvalidPropertyValue", echoed, {"PropertyValue": echoed})
    w = walk(job, [Sent(BatchReply(400, None, None, "r", None, None, body), 1)])
    assert w.result.error is not None
    assert len(w.result.error.message) <= 1024
    assert "value-000001" not in w.result.error.message
    assert all(len(v) <= 1024 for v in w.result.error.values.values())
