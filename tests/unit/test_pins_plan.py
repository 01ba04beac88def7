"""Pins for the plan (found by mutation testing: tests/mutation): the own-write check
from both sides (a first single-attempt delivery never verifies; a redelivery or a
retried write does), valid values followed into the request Batch receives, and
each field of the outcome taken from the exchange that decided it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.outcomes import Outcome, Write
from handlers.plan import (
    CopyPolicy,
    Done,
    Exchange,
    Inbound,
    Job,
    Policy,
    Purpose,
    Send,
    Settle,
    admit,
    identity_hint,
    next_step,
)
from handlers.wire import BatchReply, Sent

ENDPOINT = "https://acct.westeurope.batch.azure.com"
POLICY = Policy(frozenset({ENDPOINT}), ENDPOINT, "2025-06-01", merge_max_rounds=2, max_delivery_count=3)
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
GUID = "9c4d50ee-2d56-4cd3-8152-34347dc9f2b0"
SUBNET = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/sn"
JOB = {"id": "job-1", "priority": 1, "metadata": [{"name": "a", "value": "1"}]}


def message(**fields: Any) -> dict[str, Any]:
    return {"schemaVersion": "1.0", "jobId": "job-1", **fields}


def job_for(msg: dict[str, Any], *, delivery: int = 1, message_id: str = "m-1") -> Job:
    admitted = admit(Inbound(json.dumps(msg).encode(), message_id, delivery), POLICY, NOW)
    assert isinstance(admitted, Job), admitted
    return admitted


def reply(
    status: int, body: Any = None, *, etag: str | None = "0x2", attempts: int = 1, rid: str = "r"
) -> Sent:
    raw = json.dumps(body).encode() if body is not None else b""
    return Sent(BatchReply(status, etag, "Thu, 01 Jan 2026 12:00:00 GMT", rid, None, None, raw), attempts)


def step(job: Job, *replies: Sent) -> Send | Done:
    history: tuple[Exchange, ...] = ()
    for sent in replies:
        current = next_step(job, history)
        assert isinstance(current, Send), current
        history = (*history, Exchange(current, sent))
    return next_step(job, history)


def first_request(msg: dict[str, Any]) -> Send:
    current = next_step(job_for(msg))
    assert isinstance(current, Send)
    return current


# --- valid values followed into the request -----------------------------------------


def test_every_update_field_reaches_the_patch_body() -> None:
    update = {
        "priority": -1000,
        "allowTaskPreemption": False,
        "maxParallelTasks": -1,
        "constraints": {"maxWallClockTime": "01:00:00", "maxTaskRetryCount": -1},
        "poolInfo": {
            "autoPoolSpecification": {
                "autoPoolIdPrefix": "pre",
                "poolLifetimeOption": "JOB",
                "keepAlive": True,
                "pool": {"vmSize": "standard_d2s_v3", "nested": {"list": [1, 2.5, "x", False]}},
            }
        },
        "onAllTasksComplete": "TerminateJob",
        "metadata": [{"name": "n", "value": "v"}],
        "networkConfiguration": {"subnetId": SUBNET, "skipWithdrawFromVNet": True},
    }
    sent = first_request(message(update=update))
    assert sent.purpose is Purpose.write and sent.request.method == "PATCH"
    body = json.loads(sent.request.body or b"")
    assert body == {
        **update,
        "constraints": {"maxWallClockTime": "PT1H", "maxTaskRetryCount": -1},
        "poolInfo": {
            "autoPoolSpecification": {
                **update["poolInfo"]["autoPoolSpecification"],
                "poolLifetimeOption": "job",
            }
        },
        "onAllTasksComplete": "terminatejob",
    }
    assert b" " not in (sent.request.body or b"").replace(b"standard_d2s_v3", b"")  # compact JSON


def test_request_options_reach_the_headers_and_query() -> None:
    options = {
        "clientRequestId": GUID,
        "returnClientRequestId": True,
        "timeout": 7,
        "ocpDate": "2026-01-01T12:10:00Z",
    }
    sent = first_request(message(update={"poolInfo": {"poolId": "p" * 64}}, options=options))
    assert sent.request.url == f"{ENDPOINT}/jobs/job-1?api-version=2025-06-01&timeOut=7"
    assert sent.request.headers["client-request-id"] == GUID
    assert sent.request.headers["return-client-request-id"] == "true"
    assert sent.request.headers["ocp-date"] == "Thu, 01 Jan 2026 12:10:00 GMT"
    assert json.loads(sent.request.body or b"") == {"poolInfo": {"poolId": "p" * 64}}


def test_without_options_the_clock_and_the_derived_id_are_used() -> None:
    job = job_for(message(update={"priority": 1}))
    sent = next_step(job)
    assert isinstance(sent, Send)
    assert sent.request.headers["ocp-date"] == "Thu, 01 Jan 2026 12:00:00 GMT"
    assert sent.request.headers["client-request-id"] == job.client_request_id != GUID
    assert sent.request.headers["return-client-request-id"] == "false"
    assert "timeOut" not in sent.request.url


def test_a_message_without_an_id_derives_its_key_from_the_body() -> None:
    a = Inbound(b'{"x": 1}', "")
    assert (
        a.key.startswith("sha256:") and a.key == Inbound(b'{"x": 1}', "").key != Inbound(b'{"x": 2}', "").key
    )
    assert Inbound(b"{}", "m-9").key == "m-9"


# --- the own-write check -------------------------------------------------------------


@pytest.mark.parametrize(
    "conditions", [{"ifMatch": "0x1"}, {"ifUnmodifiedSince": "Thu, 01 Jan 2026 11:00:00 GMT"}]
)
def test_a_first_single_attempt_412_is_final_without_a_read(conditions: dict[str, str]) -> None:
    done = step(
        job_for(message(update={"priority": 5}, conditions=conditions)),
        reply(412, {"code": "ConditionNotMet"}),
    )
    assert isinstance(done, Done)
    assert done.result.outcome is Outcome.precondition_failed
    assert done.result.conditions_met is False
    assert done.result.write is Write.none
    assert done.result.http_status == 412


@pytest.mark.parametrize(
    "conditions", [{"ifMatch": "0x1"}, {"ifUnmodifiedSince": "Thu, 01 Jan 2026 11:00:00 GMT"}]
)
def test_a_redelivered_412_is_verified_with_one_read(conditions: dict[str, str]) -> None:
    job = job_for(message(update={"priority": 5}, conditions=conditions), delivery=2)
    verify = step(job, reply(412, {"code": "ConditionNotMet"}))
    assert isinstance(verify, Send) and verify.purpose is Purpose.verify and verify.request.method == "GET"
    assert verify.request.body is None
    done = step(job, reply(412, {"code": "ConditionNotMet"}), reply(200, {**JOB, "priority": 5}))
    assert isinstance(done, Done)
    assert (done.result.outcome, done.result.write, done.result.in_place) == (
        Outcome.applied,
        Write.earlier_delivery,
        True,
    )
    assert done.result.conditions_met is None


def test_a_retried_write_on_a_first_delivery_is_verified_too() -> None:
    job = job_for(message(update={"priority": 5}, conditions={"ifMatch": "0x1"}))
    verify = step(job, reply(412, {"code": "ConditionNotMet"}, attempts=2))
    assert isinstance(verify, Send) and verify.purpose is Purpose.verify


def test_if_none_match_never_verifies_even_on_a_redelivery() -> None:
    job = job_for(message(update={"priority": 5}, conditions={"ifNoneMatch": "0x1"}), delivery=3)
    done = step(job, reply(412, {"code": "ConditionNotMet"}, attempts=3))
    assert isinstance(done, Done) and done.result.outcome is Outcome.precondition_failed


def test_a_merge_without_if_match_reads_again_on_a_first_delivery_412() -> None:
    job = job_for(message(mode="merge", update={"priority": 5}))
    again = step(job, reply(200, JOB), reply(412, {"code": "ConditionNotMet"}))
    assert isinstance(again, Send) and again.purpose is Purpose.read


def test_a_merge_with_if_match_and_a_first_delivery_412_is_final() -> None:
    job = job_for(message(mode="merge", update={"priority": 5}, conditions={"ifMatch": "0x2"}))
    done = step(job, reply(200, JOB), reply(412, {"code": "ConditionNotMet"}))
    assert isinstance(done, Done) and done.result.outcome is Outcome.precondition_failed
    assert done.result.conditions_met is False
    redelivered = job_for(
        message(mode="merge", update={"priority": 5}, conditions={"ifMatch": "0x2"}), delivery=2
    )
    again = step(redelivered, reply(200, JOB), reply(412, {"code": "ConditionNotMet"}))
    assert isinstance(again, Send) and again.purpose is Purpose.read


def test_merge_rounds_stop_at_the_limit() -> None:
    job = job_for(message(mode="merge", update={"priority": 5}))
    lost = reply(412, {"code": "ConditionNotMet"})
    third = step(job, reply(200, JOB), lost)
    assert isinstance(third, Send) and third.purpose is Purpose.read
    done = step(job, reply(200, JOB), lost, reply(200, JOB), lost)
    assert isinstance(done, Done) and done.result.outcome is Outcome.precondition_failed
    assert done.result.conditions_met is None  # no condition of the message's own


# --- the outcome fields ---------------------------------------------------------------


def test_an_applied_replace_reports_the_patch_reply() -> None:
    job = job_for(message(update={"priority": 5, "metadata": []}))
    done = step(job, reply(200, None, etag="0x9", attempts=2, rid="r-9"))
    assert isinstance(done, Done)
    r = done.result
    assert (r.outcome, r.http_status, r.etag, r.request_id, r.attempts) == (
        Outcome.applied,
        200,
        "0x9",
        "r-9",
        2,
    )
    assert r.last_modified == "Thu, 01 Jan 2026 12:00:00 GMT"
    assert r.changes == {"priority": {"to": 5}, "metadata": {"to": []}}
    assert (r.write, r.conditions_met, r.error, r.mode) == (Write.this_delivery, None, None, "replace")


def test_a_refusal_reports_batchs_error_and_no_etag() -> None:
    job = job_for(message(update={"priority": 5}, conditions={"ifMatch": "0x1"}))
    done = step(job, reply(409, {"code": "JobCompleted", "message": {"value": "done"}}, etag="0x3"))
    assert isinstance(done, Done)
    r = done.result
    assert (r.outcome, r.http_status, r.etag, r.last_modified) == (Outcome.failed, 409, None, None)
    assert r.error is not None and (r.error.code, r.error.message) == ("JobCompleted", "done")
    assert (r.write, r.conditions_met) == (Write.none, None)


@pytest.mark.parametrize(
    ("delivery", "settle"), [(2, Settle.retry), (3, Settle.give_up), (4, Settle.give_up)]
)
def test_transient_failures_retry_until_the_last_delivery(delivery: int, settle: Settle) -> None:
    job = job_for(message(update={"priority": 5}), delivery=delivery)
    busy = Sent(BatchReply(503, body=b'{"code": "ServerBusy"}'), 4, "HTTP 503")
    done = step(job, busy)
    assert isinstance(done, Done)
    assert done.settle is settle
    assert done.result.outcome is Outcome.given_up
    assert done.result.error is not None and done.result.error.code == "ServerBusy"
    assert done.result.attempts == 4
    lost = step(job, Sent(None, 2, "ReadTimeout"))
    assert isinstance(lost, Done) and lost.result.error is not None
    assert (lost.result.error.code, lost.result.error.message) == ("NoReply", "ReadTimeout")


def test_a_dry_run_reads_and_reports_without_writing() -> None:
    job = job_for(message(update={"priority": 5}, options={"dryRun": True}, conditions={"ifMatch": "0x2"}))
    assert job.mode == "dry-run"
    done = step(job, reply(200, JOB))
    assert isinstance(done, Done)
    assert done.result.outcome is Outcome.dry_run
    assert done.result.changes == {"priority": {"from": 1, "to": 5}}
    assert done.result.conditions_met is True
    assert done.result.write is None


# --- rejections ------------------------------------------------------------------------


def test_a_rejected_message_names_its_job_and_listed_endpoint_only() -> None:
    bad = {"schemaVersion": "1.0", "jobId": "job-1", "endpoint": ENDPOINT, "update": {"priority": 5000}}
    done = admit(Inbound(json.dumps(bad).encode(), "m"), POLICY, NOW)
    assert isinstance(done, Done)
    assert (done.result.outcome, done.result.job_id, done.result.endpoint) == (
        Outcome.rejected,
        "job-1",
        ENDPOINT,
    )
    unlisted = {**bad, "endpoint": "https://other.westeurope.batch.azure.com"}
    done = admit(Inbound(json.dumps(unlisted).encode(), "m"), POLICY, NOW)
    assert isinstance(done, Done) and (done.result.job_id, done.result.endpoint) == ("job-1", None)
    nameless = {**bad, "jobId": "bad/id"}
    done = admit(Inbound(json.dumps(nameless).encode(), "m"), POLICY, NOW)
    assert isinstance(done, Done) and (done.result.job_id, done.result.endpoint) == (None, None)


def test_an_unlisted_endpoint_is_rejected_at_its_field() -> None:
    for msg, path in (
        (message(endpoint="https://other.westeurope.batch.azure.com", update={"priority": 1}), "$.endpoint"),
        (
            {
                "schemaVersion": "1.0",
                "jobUrl": "https://other.westeurope.batch.azure.com/jobs/j",
                "update": {"priority": 1},
            },
            "$.jobUrl",
        ),
    ):
        done = admit(Inbound(json.dumps(msg).encode(), "m"), POLICY, NOW)
        assert isinstance(done, Done)
        assert [(p.path, p.code) for p in done.result.problems] == [(path, "endpoint_not_allowed")]
        assert done.result.job_id is not None and done.result.endpoint is None


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        (b'\xef\xbb\xbf{"jobId": "j-1", "endpoint": "https://e"}', ("j-1", "https://e")),
        (b'{"jobId": "j/1", "endpoint": 5}', (None, None)),
        (b'{"jobId": 5}', (None, None)),
        (b"[1]", (None, None)),
        (b"{", (None, None)),
        (b"\xff", (None, None)),
    ],
)
def test_identity_hints(body: bytes, hint: tuple[str | None, str | None]) -> None:
    assert identity_hint(body) == hint


def test_the_plans_records_are_frozen() -> None:
    import dataclasses

    job = job_for(message(update={"priority": 1}))
    sent = next_step(job)
    assert isinstance(sent, Send)
    records: list[Any] = [
        job,
        job.inbound,
        job.policy,
        sent,
        Exchange(sent, reply(200)),
        Done(step(job, reply(200)).result),
    ]
    for record in records:
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.__setattr__(dataclasses.fields(record)[0].name, None)


def test_enum_values_and_defaults() -> None:
    assert [s.value for s in Settle] == ["complete", "retry", "reschedule", "give-up"]
    assert [p.value for p in Purpose] == ["write", "read", "verify"]
    assert Inbound(b"{}", "m").delivery_count == 1
    defaults = Policy(frozenset({ENDPOINT}), None, "2025-06-01")
    assert (defaults.merge_max_rounds, defaults.max_delivery_count, defaults.copies) == (5, 10, None)
    copies = CopyPolicy()
    assert (copies.budget_seconds, copies.max_copies) == (900.0, 50)
    assert (copies.first_backoff_seconds, copies.max_backoff_seconds) == (5.0, 300.0)
    assert Inbound(b"{}", "m").copy == 0


def test_a_redelivered_refusal_is_failed_without_a_read() -> None:
    job = job_for(message(update={"priority": 5}, conditions={"ifMatch": "0x1"}), delivery=2)
    done = step(job, reply(409, {"code": "JobCompleted"}))
    assert isinstance(done, Done) and done.result.outcome is Outcome.failed


def test_a_merge_read_that_is_refused_is_failed_with_batchs_error() -> None:
    job = job_for(message(mode="merge", update={"priority": 5}))
    done = step(job, reply(404, {"code": "JobNotFound"}, etag=None))
    assert isinstance(done, Done)
    assert (done.result.outcome, done.result.http_status) == (Outcome.failed, 404)
    assert done.result.error is not None and done.result.error.code == "JobNotFound"
    odd = step(job, reply(412, {"code": "ConditionNotMet"}))
    assert isinstance(odd, Done) and odd.result.outcome is Outcome.precondition_failed


def test_merge_failures_of_our_own_say_why_and_write_nothing() -> None:
    job = job_for(message(mode="merge", update={"priority": 5}))
    no_etag = step(job, reply(200, JOB, etag=None))
    assert isinstance(no_etag, Done) and no_etag.result.error is not None
    assert no_etag.result.error.code == "MissingETag" and "ETag" in no_etag.result.error.message
    assert no_etag.result.write is Write.none
    unreadable = step(job, reply(200, [1]))
    assert isinstance(unreadable, Done) and unreadable.result.error is not None
    assert (
        unreadable.result.error.code == "UnreadableJob" and "JSON object" in unreadable.result.error.message
    )
    assert unreadable.result.write is Write.none


def test_merge_exhausted_rounds_with_a_pinned_version_say_the_condition_failed() -> None:
    job = job_for(message(mode="merge", update={"priority": 5}, conditions={"ifMatch": "0x2"}), delivery=2)
    lost = reply(412, {"code": "ConditionNotMet"})
    done = step(job, reply(200, JOB), lost, reply(200, JOB), lost)
    assert isinstance(done, Done) and done.result.outcome is Outcome.precondition_failed
    assert done.result.conditions_met is False


@pytest.mark.parametrize(
    ("delivery", "read", "outcome", "write"),
    [
        (1, {**JOB, "priority": 5}, Outcome.precondition_failed, Write.none),  # in place, not ours
        (2, JOB, Outcome.precondition_failed, Write.none),  # ours could explain, but not in place
        (2, {**JOB, "priority": 5}, Outcome.applied, Write.earlier_delivery),
    ],
)
def test_a_stale_pinned_version_on_the_read(
    delivery: int, read: dict[str, Any], outcome: Outcome, write: Write
) -> None:
    job = job_for(
        message(mode="merge", update={"priority": 5}, conditions={"ifMatch": "0x1"}), delivery=delivery
    )
    done = step(job, reply(200, read, etag="0x2"))
    assert isinstance(done, Done)
    assert (done.result.outcome, done.result.write) == (outcome, write)


@pytest.mark.parametrize(("delivery", "write"), [(1, Write.none), (2, Write.earlier_delivery)])
def test_merge_with_nothing_to_change(delivery: int, write: Write) -> None:
    job = job_for(
        message(mode="merge", update={"priority": 1}, conditions={"ifMatch": "0x2"}), delivery=delivery
    )
    done = step(job, reply(200, JOB))
    assert isinstance(done, Done)
    assert (done.result.outcome, done.result.in_place, done.result.write) == (Outcome.applied, True, write)
    assert done.result.conditions_met is True


def test_merge_applied_with_a_pinned_version_met_it() -> None:
    job = job_for(message(mode="merge", update={"priority": 5}, conditions={"ifMatch": "0x2"}))
    done = step(job, reply(200, JOB), reply(200))
    assert isinstance(done, Done) and done.result.outcome is Outcome.applied
    assert (done.result.conditions_met, done.result.write) == (True, Write.this_delivery)
    assert done.result.changes == {"priority": {"from": 1, "to": 5}}


@pytest.mark.parametrize(
    ("etag", "if_match"),
    [('"0x2"', '"0x2"'), ("0x2", '"0x2"'), ('"', '"""'), ('a"', '"a""'), ('"a', '""a"')],
)
def test_the_read_etag_goes_back_quoted_once(etag: str, if_match: str) -> None:
    write = step(job_for(message(mode="merge", update={"priority": 5})), reply(200, JOB, etag=etag))
    assert isinstance(write, Send) and write.request.headers["If-Match"] == if_match
    assert json.loads(write.request.body or b"") == {"priority": 5}


def test_dry_runs_compare_nested_objects_as_their_mode_would_write_them() -> None:
    stored = {**JOB, "constraints": {"maxWallClockTime": "PT1H", "maxTaskRetryCount": 3}}
    update = {"constraints": {"maxWallClockTime": "PT1H"}}
    replace = step(job_for(message(update=update, options={"dryRun": True})), reply(200, stored))
    assert isinstance(replace, Done) and set(replace.result.changes) == {"constraints"}
    merged = step(job_for(message(mode="merge", update=update, options={"dryRun": True})), reply(200, stored))
    assert isinstance(merged, Done) and merged.result.changes == {}


def test_a_failure_without_text_still_says_no_reply() -> None:
    done = step(job_for(message(update={"priority": 5})), Sent(None, 1, ""))
    assert isinstance(done, Done) and done.result.error is not None
    assert (done.result.error.code, done.result.error.message) == ("NoReply", "no reply")


def test_a_retried_read_is_not_a_retried_write() -> None:
    job = job_for(message(mode="merge", update={"priority": 5}, conditions={"ifMatch": "0x2"}))
    done = step(job, reply(200, JOB, attempts=3), reply(412, {"code": "ConditionNotMet"}))
    assert isinstance(done, Done) and done.result.outcome is Outcome.precondition_failed


@pytest.mark.parametrize("last_modified", [None, "not a date"])
def test_a_verify_read_without_a_usable_date_is_taken_as_ours(last_modified: str | None) -> None:
    msg = json.dumps(message(update={"priority": 5}, conditions={"ifMatch": "0x1"})).encode()
    admitted = admit(Inbound(msg, "m-1", 2, datetime(2026, 1, 1, 11, 0, tzinfo=UTC)), POLICY, NOW)
    assert isinstance(admitted, Job)
    read = Sent(
        BatchReply(200, "0x3", last_modified, "r", None, None, json.dumps({**JOB, "priority": 5}).encode()), 1
    )
    done = step(admitted, reply(412, {"code": "ConditionNotMet"}), read)
    assert isinstance(done, Done)
    assert (done.result.outcome, done.result.write) == (Outcome.applied, Write.earlier_delivery)


def test_an_echo_is_scrubbed_whole_before_the_event_text_is_cut() -> None:
    secret = "S" * 2048
    update = {"poolInfo": {"autoPoolSpecification": {"pool": {"secret": secret}}}}
    job = job_for(message(update=update))
    tail = "T" * (15 * 1024)  # past the 16 KiB cut: the last 2047 characters may hold a split string
    done = step(job, reply(400, {"code": "Bad", "message": {"value": secret + tail}}))
    assert isinstance(done, Done) and done.result.error is not None
    assert done.result.error.message == "<request value>" + "T" * (1024 - len("<request value>"))
    assert "S" not in done.result.error.message


def test_after_a_cut_a_split_request_string_leaves_no_prefix() -> None:
    secret = "S" * 4096
    update = {"poolInfo": {"autoPoolSpecification": {"pool": {"secret": secret}}}}
    job = job_for(message(update=update))
    echo = "T" * (16 * 1024 - 100) + secret  # the cut splits the secret: 100 characters of it remain
    done = step(job, reply(400, {"code": "Bad", "message": {"value": echo}}))
    assert isinstance(done, Done) and done.result.error is not None
    assert "S" not in done.result.error.message
    assert done.result.error.code == "Bad"


def test_a_non_finite_number_read_from_batch_is_never_sent() -> None:
    job = job_for(message(mode="merge", update={"constraints": {"maxTaskRetryCount": 1}}))
    bodies = (b'{"constraints": {"x": NaN}}', b'{"constraints": {"x": 1e400}}', b'{"priority": -Infinity}')
    for body in bodies:
        odd = Sent(BatchReply(200, "0x2", None, "r", None, None, body), 1)
        done = step(job, odd)  # a failure with no write, not an exception on the way to the PATCH
        assert isinstance(done, Done) and done.result.outcome is Outcome.failed, body
        assert done.result.error is not None and done.result.error.code == "UnreadableJob"


def test_a_two_character_quoted_read_etag_is_kept() -> None:
    write = step(job_for(message(mode="merge", update={"priority": 5})), reply(200, JOB, etag='""'))
    assert isinstance(write, Send) and write.request.headers["If-Match"] == '""'
