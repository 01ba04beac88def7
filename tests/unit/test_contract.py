"""Every validation rule of the message contract, one precise problem each."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.contract import (
    MAX_MESSAGE_BYTES,
    InvalidMessage,
    JobUpdateMessage,
    check_ocp_date,
    parse_message,
)


def msg(**fields: Any) -> bytes:
    base: dict[str, Any] = {"schemaVersion": "1.0", "jobId": "job-1"}
    base.update(fields)
    return json.dumps(base).encode()


def problems(body: bytes | str) -> list[tuple[str, str]]:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(body)
    return [(p.path, p.code) for p in caught.value.problems]


def test_minimal_update_is_valid_and_body_has_only_named_fields() -> None:
    message = parse_message(msg(update={"priority": 10}))
    assert message.update.body() == {"priority": 10}
    assert message.mode == "replace"
    assert message.conditions.headers() == {}


@pytest.mark.parametrize(
    ("update", "path", "code"),
    [
        ({"priority": 1001}, "$.update.priority", "less_than_equal"),
        ({"priority": -1001}, "$.update.priority", "greater_than_equal"),
        ({"priority": "100"}, "$.update.priority", "int_type"),
        ({"priority": 1.5}, "$.update.priority", "int_type"),
        ({"priority": True}, "$.update.priority", "int_type"),
        ({"allowTaskPreemption": "true"}, "$.update.allowTaskPreemption", "bool_type"),
        ({"maxParallelTasks": 0}, "$.update.maxParallelTasks", "invalid_max_parallel_tasks"),
        ({"maxParallelTasks": -2}, "$.update.maxParallelTasks", "greater_than_equal"),
        (
            {"constraints": {"maxTaskRetryCount": -2}},
            "$.update.constraints.maxTaskRetryCount",
            "greater_than_equal",
        ),
        (
            {"constraints": {"maxWallClockTime": "an hour"}},
            "$.update.constraints.maxWallClockTime",
            "invalid_duration",
        ),
        (
            {"constraints": {"maxWallClockTime": "P1Y"}},
            "$.update.constraints.maxWallClockTime",
            "invalid_duration",
        ),
        (
            {"constraints": {"maxWallClockTime": "25:00:00"}},
            "$.update.constraints.maxWallClockTime",
            "invalid_duration",
        ),
        ({"constraints": {"maxWallClock": "PT1H"}}, "$.update.constraints.maxWallClock", "extra_forbidden"),
        ({"poolInfo": {}}, "$.update.poolInfo", "pool_info_choice"),
        (
            {"poolInfo": {"poolId": "p", "autoPoolSpecification": {"poolLifetimeOption": "job"}}},
            "$.update.poolInfo",
            "pool_info_choice",
        ),
        ({"poolInfo": {"poolId": "bad/pool"}}, "$.update.poolInfo.poolId", "invalid_id"),
        (
            {
                "poolInfo": {
                    "autoPoolSpecification": {"poolLifetimeOption": "job", "autoPoolIdPrefix": "x" * 21}
                }
            },
            "$.update.poolInfo.autoPoolSpecification.autoPoolIdPrefix",
            "invalid_prefix",
        ),
        (
            {"poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "forever"}}},
            "$.update.poolInfo.autoPoolSpecification.poolLifetimeOption",
            "literal_error",
        ),
        (
            {"poolInfo": {"autoPoolSpecification": {"pool": {"vmSize": "d2", "x": float("nan")}}}},
            "$.update.poolInfo.autoPoolSpecification.pool",
            "number_not_finite",
        ),
        (
            {"poolInfo": {"autoPoolSpecification": {"pool": {"targetDedicatedNodes": 2**63}}}},
            "$.update.poolInfo.autoPoolSpecification.pool",
            "number_too_large",
        ),
        ({"onAllTasksComplete": "stop"}, "$.update.onAllTasksComplete", "literal_error"),
        ({"metadata": [{"name": "", "value": "v"}]}, "$.update.metadata[0].name", "string_too_short"),
        ({"metadata": [{"name": "a"}]}, "$.update.metadata[0].value", "missing"),
        (
            {"networkConfiguration": {"subnetId": "subnet-1"}},
            "$.update.networkConfiguration.subnetId",
            "invalid_subnet_id",
        ),
        (
            {"networkConfiguration": {"subnetId": "/subscriptions/s/resourceGroups/g/providers/P/subnets/x"}},
            "$.update.networkConfiguration.subnetId",
            "invalid_subnet_id",
        ),
        ({"priorty": 5}, "$.update.priorty", "extra_forbidden"),
        ({"priority": None}, "$.update.priority", "null_not_allowed"),
        ({"maxParallelTasks": 2**31}, "$.update.maxParallelTasks", "less_than_equal"),
        (
            {"constraints": {"maxTaskRetryCount": 2**31}},
            "$.update.constraints.maxTaskRetryCount",
            "less_than_equal",
        ),
        (
            {
                "poolInfo": {
                    "autoPoolSpecification": {
                        "poolLifetimeOption": "job",
                        "pool": {"vmSize": "s", "startTask": None},
                    }
                }
            },
            "$.update.poolInfo.autoPoolSpecification.pool",
            "null_not_allowed",
        ),
        (
            {"constraints": {"maxWallClockTime": None}},
            "$.update.constraints.maxWallClockTime",
            "null_not_allowed",
        ),
    ],
)
def test_update_rules(update: dict[str, Any], path: str, code: str) -> None:
    assert (path, code) in problems(msg(update=update))


def test_every_problem_is_reported_not_just_the_first() -> None:
    found = problems(msg(update={"priority": 5000, "maxParallelTasks": 0, "priorty": 1}))
    assert {p for p, _ in found} == {"$.update.priority", "$.update.maxParallelTasks", "$.update.priorty"}


def test_values_are_sent_in_wire_form() -> None:
    message = parse_message(
        msg(
            update={
                "constraints": {"maxWallClockTime": "1.02:03:04", "maxTaskRetryCount": -1},
                "onAllTasksComplete": "TerminateJob",
                "poolInfo": {
                    "autoPoolSpecification": {"poolLifetimeOption": "JobSchedule", "keepAlive": True}
                },
                "networkConfiguration": {
                    "subnetId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/"
                    "virtualNetworks/v/subnets/default",
                    "skipWithdrawFromVNet": True,
                },
            }
        )
    )
    body = message.update.body()
    assert body["constraints"] == {"maxWallClockTime": "P1DT2H3M4S", "maxTaskRetryCount": -1}
    assert body["onAllTasksComplete"] == "terminatejob"
    assert body["poolInfo"]["autoPoolSpecification"]["poolLifetimeOption"] == "jobschedule"
    assert body["networkConfiguration"]["skipWithdrawFromVNet"] is True


@pytest.mark.parametrize(
    "update",
    [
        # The current spec's *Update variants have no required fields.
        {"poolInfo": {"autoPoolSpecification": {"keepAlive": True}}},
        {"poolInfo": {"autoPoolSpecification": {"pool": {"targetDedicatedNodes": 2}}}},
        {"networkConfiguration": {"skipWithdrawFromVNet": True}},
        # Any provider segment, as the spec's text has it.
        {
            "networkConfiguration": {
                "subnetId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.ClassicNetwork/"
                "virtualNetworks/v/subnets/default"
            }
        },
    ],
)
def test_update_variants_of_the_current_spec_are_accepted_and_sent_as_given(update: dict[str, Any]) -> None:
    assert parse_message(msg(update=update)).update.body() == update


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("P10675199DT2H48M5.4775807S", "P10675199DT2H48M5.4775807S"),  # Int64 ticks: GET's "unlimited"
        ("10675199.02:48:05.4775807", "P10675199DT2H48M5.4775807S"),  # PowerShell's [TimeSpan]::MaxValue
        ("PT0.0000001S", "PT0.0000001S"),  # one tick
        ("PT1.5S", "PT1.5S"),
    ],
)
def test_durations_go_out_exact_to_the_tick(text: str, sent: str) -> None:
    body = parse_message(msg(update={"constraints": {"maxWallClockTime": text}})).update.body()
    assert body["constraints"]["maxWallClockTime"] == sent


@pytest.mark.parametrize(
    "text",
    [
        "P10675199DT2H48M5.477581S",  # one microsecond-rounding past Int64 ticks
        "P10675199DT2H48M5.4775808S",
        "P99999999999999999999D",
        "PT0.00000001S",  # finer than a tick
        "PT1H\n",
    ],
)
def test_durations_past_what_batch_holds_are_refused(text: str) -> None:
    update = {"constraints": {"maxWallClockTime": text}}
    assert ("$.update.constraints.maxWallClockTime", "invalid_duration") in problems(msg(update=update))


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"jobId": "abc\n"}, "$.jobId"),
        (
            {"options": {"clientRequestId": "9c4d50ee-2d56-4cd3-8152-34347dc9f2b0\n"}},
            "$.options.clientRequestId",
        ),
        ({"conditions": {"ifMatch": "0x8D1\n"}}, "$.conditions.ifMatch"),
        ({"update": {"poolInfo": {"poolId": "p\n"}}}, "$.update.poolInfo.poolId"),
    ],
)
def test_a_trailing_newline_is_not_part_of_an_id(fields: dict[str, Any], path: str) -> None:
    assert path in {p for p, _ in problems(msg(**fields))}


def test_repeated_metadata_names_are_sent_as_given() -> None:
    # The spec sets no rule; Batch assigns metadata no meaning. Merge mode upserts in order.
    items = [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]
    assert parse_message(msg(update={"metadata": items})).update.body() == {"metadata": items}


def test_empty_metadata_list_is_allowed_it_clears_metadata() -> None:
    assert parse_message(msg(update={"metadata": []})).update.body() == {"metadata": []}


@pytest.mark.parametrize(
    ("fields", "path", "code"),
    [
        ({"schemaVersion": "2.0"}, "$.schemaVersion", "literal_error"),
        ({"jobId": "../../pools/x"}, "$.jobId", "invalid_id"),
        ({"jobId": "j" * 65}, "$.jobId", "invalid_id"),
        ({"jobId": "job 1"}, "$.jobId", "invalid_id"),
        ({"jobId": "job%2F1"}, "$.jobId", "invalid_id"),
        ({"jobId": None}, "$", "missing_job"),
        ({"jobUrl": "https://a.b.batch.azure.com/jobs/x"}, "$", "job_identity"),
        ({"mode": "upsert"}, "$.mode", "literal_error"),
        ({"update": {}}, "$", "empty_update"),
        ({"extra": 1}, "$.extra", "extra_forbidden"),
        ({"options": {"timeout": 0}}, "$.options.timeout", "greater_than_equal"),
        ({"options": {"timeout": 31}}, "$.options.timeout", "less_than_equal"),
        (
            {"options": {"clientRequestId": "{9C4D50EE-2D56-4CD3-8152-34347DC9F2B0}"}},
            "$.options.clientRequestId",
            "invalid_client_request_id",
        ),
        ({"options": {"ocpDate": "yesterday"}}, "$.options.ocpDate", "invalid_date"),
        ({"options": {"dryRun": "yes"}}, "$.options.dryRun", "bool_type"),
    ],
)
def test_message_rules(fields: dict[str, Any], path: str, code: str) -> None:
    base = {"update": {"priority": 1}}
    base.update(fields)
    body = {"schemaVersion": "1.0", "jobId": "job-1", **base}
    if body.get("jobId") is None:
        body.pop("jobId")
    assert (path, code) in problems(json.dumps(body))


def test_job_url_names_job_and_endpoint() -> None:
    message = parse_message(
        json.dumps(
            {
                "schemaVersion": "1.0",
                "jobUrl": "https://acct.westeurope.batch.azure.com/jobs/j-1",
                "update": {"priority": 1},
            }
        )
    )
    assert message.target_job_id == "j-1"
    assert message.endpoint == "https://acct.westeurope.batch.azure.com"


def test_dry_run_may_have_an_empty_update() -> None:
    assert parse_message(msg(options={"dryRun": True})).options.dry_run


@pytest.mark.parametrize(
    "conditions",
    [
        {"ifMatch": "0x1"},
        {"ifNoneMatch": "*"},
        {"ifModifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"},
        {"ifUnmodifiedSince": "2025-02-17T00:00:00Z"},
        {"ifNoneMatch": "0x1", "ifModifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"},
        {"ifMatch": "0x1", "ifUnmodifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"},
    ],
)
def test_allowed_condition_combinations(conditions: dict[str, str]) -> None:
    headers = parse_message(msg(update={"priority": 1}, conditions=conditions)).conditions.headers()
    names = {
        "ifMatch": "If-Match",
        "ifNoneMatch": "If-None-Match",
        "ifModifiedSince": "If-Modified-Since",
        "ifUnmodifiedSince": "If-Unmodified-Since",
    }
    assert set(headers) == {names[c] for c in conditions}
    assert all(headers[names[c]] for c in conditions)


@pytest.mark.parametrize(
    "conditions",
    [
        {"ifMatch": "0x1", "ifNoneMatch": "0x2"},
        {"ifMatch": "0x1", "ifModifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"},
        {"ifNoneMatch": "0x1", "ifUnmodifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"},
        {
            "ifModifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT",
            "ifUnmodifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT",
        },
        {"ifMatch": "0x1", "ifNoneMatch": "0x2", "ifUnmodifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"},
    ],
)
def test_disallowed_condition_combinations(conditions: dict[str, str]) -> None:
    assert ("$.conditions", "condition_combination") in problems(
        msg(update={"priority": 1}, conditions=conditions)
    )


def test_condition_wire_forms() -> None:
    message = parse_message(
        msg(
            update={"priority": 1},
            conditions={"ifMatch": "0x8D4100FC49F0278", "ifUnmodifiedSince": "2025-02-17T01:00:00+01:00"},
        )
    )
    assert message.conditions.headers() == {
        "If-Match": '"0x8D4100FC49F0278"',
        "If-Unmodified-Since": "Mon, 17 Feb 2025 00:00:00 GMT",
    }


@pytest.mark.parametrize(
    ("conditions", "code"),
    [
        ({"ifMatch": 'W/"0x1"'}, "invalid_etag"),
        ({"ifMatch": 'a"b'}, "invalid_etag"),
        ({"ifModifiedSince": "2025-02-17T00:00:00"}, "invalid_date"),
        ({"ifModifiedSince": "17/02/2025"}, "invalid_date"),
    ],
)
def test_condition_value_rules(conditions: dict[str, str], code: str) -> None:
    found = problems(msg(update={"priority": 1}, conditions=conditions))
    assert found[0][1] == code


def test_merge_mode_allows_only_if_match() -> None:
    assert parse_message(msg(mode="merge", update={"priority": 1}, conditions={"ifMatch": "0x1"}))
    found = problems(
        msg(
            mode="MERGE",
            update={"priority": 1},
            conditions={"ifModifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"},
        )
    )
    assert ("$", "merge_conditions") in found


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "json_invalid"),
        (b'{"schemaVersion": "1.0", "jobId": "j\xff"}', "json_invalid"),
        (b"[1, 2]", "model_type"),
        (b'"text"', "model_type"),
        (b"", "json_invalid"),
    ],
)
def test_malformed_bodies_are_refused_cleanly(body: bytes, code: str) -> None:
    assert problems(body)[0] == ("$", code)


def test_oversized_body_is_refused_before_parsing() -> None:
    body = msg(update={"metadata": [{"name": "n", "value": "v" * 8000}] * 40})
    assert len(body) > MAX_MESSAGE_BYTES
    assert problems(body) == [("$", "too_large")]


def test_deep_nesting_is_refused() -> None:
    deep: Any = 1
    for _ in range(40):
        deep = {"a": deep}
    body = msg(
        update={
            "poolInfo": {
                "autoPoolSpecification": {"poolLifetimeOption": "job", "pool": {"vmSize": "s", "x": deep}}
            }
        }
    )
    assert ("$.update.poolInfo.autoPoolSpecification.pool", "too_deep") in problems(body)
    very_deep = b'{"schemaVersion":"1.0","jobId":"j","update":' + b'{"a":' * 5000 + b"1" + b"}" * 5001
    assert problems(very_deep)[0][1] == "json_invalid"


def test_ocp_date_skew_is_refused() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    message = parse_message(msg(update={"priority": 1}, options={"ocpDate": "Thu, 01 Jan 2026 00:10:00 GMT"}))
    check_ocp_date(message, now)  # 10 minutes: fine
    with pytest.raises(InvalidMessage) as caught:
        check_ocp_date(message, now + timedelta(minutes=26))
    assert caught.value.problems[0].path == "$.options.ocpDate"


def test_schema_is_strict() -> None:
    schema = JobUpdateMessage.model_json_schema(by_alias=True)
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["schemaVersion"]


def test_a_utf8_byte_order_mark_is_accepted() -> None:
    assert parse_message(b"\xef\xbb\xbf" + msg(update={"priority": 1})).update.body() == {"priority": 1}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (b'{"schemaVersion":"1.0","jobId":"j","update":{"priority":1,"priority":999}}', "$.update.priority"),
        (
            b'{"schemaVersion":"1.0","jobId":"j","update":{"priority":1},"options":{"dryRun":true,"dryRun":false}}',
            "$.options.dryRun",
        ),
        (b'{"schemaVersion":"1.0","jobId":"j","jobId":"k","update":{"priority":1}}', "$.jobId"),
        (
            b'{"schemaVersion":"1.0","jobId":"j","update":{"metadata":[{"name":"a","value":"1","value":"2"}]}}',
            "$.update.metadata[0].value",
        ),
        (
            b'{"schemaVersion":"1.0","jobId":"j","update":{"poolInfo":{"autoPoolSpecification":'
            b'{"pool":{"vmSize":"a","vmSize":"b"}}}}}',
            "$.update.poolInfo.autoPoolSpecification.pool.vmSize",
        ),
    ],
)
def test_a_name_given_twice_is_refused_with_its_path(body: bytes, path: str) -> None:
    # A JSON parser keeps the last one silently: {"dryRun": true, "dryRun": false} would write.
    assert (path, "duplicate_key") in problems(body)


def test_the_same_name_in_different_objects_is_fine() -> None:
    items = [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]
    assert parse_message(msg(update={"metadata": items})).update.body() == {"metadata": items}


def test_a_duplicate_is_reported_beside_the_other_problems() -> None:
    found = problems(b'{"schemaVersion":"1.0","jobId":"j","update":{"priority":1,"priority":5000}}')
    assert ("$.update.priority", "duplicate_key") in found
    assert ("$.update.priority", "less_than_equal") in found
