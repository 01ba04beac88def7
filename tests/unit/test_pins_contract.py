"""Pins for the message contract: every limit from both sides (its own value accepted,
one past it refused, with the exact problem code and path), and every valid value
followed into the body Batch receives (found by mutation testing: tests/mutation)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.contract import (
    INT32_MAX,
    INT64_MAX,
    INT64_MIN,
    MAX_CLOCK_SKEW,
    MAX_MESSAGE_BYTES,
    MAX_POOL_DEPTH,
    JobUpdateMessage,
    check_ocp_date,
    duplicate_keys,
    is_job_id,
    json_path,
    json_schema,
    parse_message,
)
from handlers.errors import InvalidMessage

GUID = "9c4d50ee-2d56-4cd3-8152-34347dc9f2b0"
SUBNET = "/subscriptions/s1/resourceGroups/g1/providers/Microsoft.Network/virtualNetworks/v1/subnets/sn1"


def body(**fields: Any) -> bytes:
    return json.dumps({"schemaVersion": "1.0", "jobId": "job-1", **fields}).encode()


def update(**fields: Any) -> bytes:
    return body(update=fields)


def accepted(raw: bytes | str) -> JobUpdateMessage:
    return parse_message(raw)


def refused(raw: bytes | str) -> list[tuple[str, str]]:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(raw)
    for p in caught.value.problems:
        assert p.message.strip(), p  # every problem explains itself
    return [(p.path, p.code) for p in caught.value.problems]


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def pool(spec: Any) -> bytes:
    return update(poolInfo={"autoPoolSpecification": {"pool": spec}})


# --- ids ---------------------------------------------------------------------------


def test_a_64_character_job_id_is_accepted_and_65_is_not() -> None:
    assert accepted(body(jobId="j" * 64, update={"priority": 1})).target_job_id == "j" * 64
    assert refused(body(jobId="j" * 65, update={"priority": 1})) == [("$.jobId", "invalid_id")]
    assert refused(body(jobId="", update={"priority": 1})) == [("$.jobId", "invalid_id")]
    assert accepted(body(jobId="a", update={"priority": 1})).target_job_id == "a"
    assert accepted(body(jobId="A-z_0-9", update={"priority": 1})).target_job_id == "A-z_0-9"
    assert refused(body(jobId="a/b", update={"priority": 1})) == [("$.jobId", "invalid_id")]
    assert refused(body(jobId="job\n", update={"priority": 1})) == [("$.jobId", "invalid_id")]
    assert is_job_id("j" * 64) and not is_job_id("j" * 65) and not is_job_id("a.b")


def test_pool_id_follows_the_id_rules_and_goes_into_the_body() -> None:
    ok = accepted(update(poolInfo={"poolId": "p" * 64}))
    assert ok.update.body() == {"poolInfo": {"poolId": "p" * 64}}
    assert refused(update(poolInfo={"poolId": "p" * 65})) == [("$.update.poolInfo.poolId", "invalid_id")]


def test_pool_info_needs_exactly_one_choice() -> None:
    assert refused(update(poolInfo={})) == [("$.update.poolInfo", "pool_info_choice")]
    both = {"poolId": "p", "autoPoolSpecification": {"keepAlive": True}}
    assert refused(update(poolInfo=both)) == [("$.update.poolInfo", "pool_info_choice")]


def test_auto_pool_fields_go_into_the_body_as_given() -> None:
    spec = {
        "autoPoolIdPrefix": "x" * 20,
        "poolLifetimeOption": "JobSchedule",
        "keepAlive": False,
        "pool": {"vmSize": "standard_d2s_v3", "targetDedicatedNodes": 2, "taskSlotsPerNode": 1},
    }
    got = accepted(update(poolInfo={"autoPoolSpecification": spec})).update.body()
    assert got == {"poolInfo": {"autoPoolSpecification": {**spec, "poolLifetimeOption": "jobschedule"}}}
    assert refused(update(poolInfo={"autoPoolSpecification": {"autoPoolIdPrefix": "x" * 21}})) == [
        ("$.update.poolInfo.autoPoolSpecification.autoPoolIdPrefix", "invalid_prefix")
    ]
    assert refused(update(poolInfo={"autoPoolSpecification": {"autoPoolIdPrefix": "a b"}})) == [
        ("$.update.poolInfo.autoPoolSpecification.autoPoolIdPrefix", "invalid_prefix")
    ]


def test_keep_alive_alone_is_a_valid_auto_pool_update() -> None:
    got = accepted(update(poolInfo={"autoPoolSpecification": {"keepAlive": True}})).update.body()
    assert got == {"poolInfo": {"autoPoolSpecification": {"keepAlive": True}}}


def test_subnet_ids_go_into_the_body_in_any_case_and_with_any_provider() -> None:
    for subnet in (SUBNET, SUBNET.upper(), SUBNET.replace("Microsoft.Network", "Other.Provider")):
        net = {"subnetId": subnet, "skipWithdrawFromVNet": True}
        assert accepted(update(networkConfiguration=net)).update.body() == {"networkConfiguration": net}
    for bad in (
        SUBNET + "/",
        SUBNET.replace("/subnets/", "/nets/"),
        "subnets/sn1",
        SUBNET + "\n",
        SUBNET.replace("g1", "g 1"),
    ):
        assert refused(update(networkConfiguration={"subnetId": bad})) == [
            ("$.update.networkConfiguration.subnetId", "invalid_subnet_id")
        ]


# --- numbers -----------------------------------------------------------------------


@pytest.mark.parametrize("priority", [-1000, -999, 0, 999, 1000])
def test_priority_limits_are_accepted(priority: int) -> None:
    assert accepted(update(priority=priority)).update.body() == {"priority": priority}


@pytest.mark.parametrize(("priority", "code"), [(-1001, "greater_than_equal"), (1001, "less_than_equal")])
def test_priority_one_past_is_refused(priority: int, code: str) -> None:
    assert refused(update(priority=priority)) == [("$.update.priority", code)]


@pytest.mark.parametrize("tasks", [-1, 1, 2, INT32_MAX])
def test_max_parallel_tasks_accepted(tasks: int) -> None:
    assert accepted(update(maxParallelTasks=tasks)).update.body() == {"maxParallelTasks": tasks}


@pytest.mark.parametrize(
    ("tasks", "code"),
    [
        (0, "invalid_max_parallel_tasks"),
        (-2, "greater_than_equal"),
        (INT32_MAX + 1, "less_than_equal"),
    ],
)
def test_max_parallel_tasks_refused(tasks: int, code: str) -> None:
    assert refused(update(maxParallelTasks=tasks)) == [("$.update.maxParallelTasks", code)]


@pytest.mark.parametrize("count", [-1, 0, 1, INT32_MAX])
def test_max_task_retry_count_accepted(count: int) -> None:
    got = accepted(update(constraints={"maxTaskRetryCount": count})).update.body()
    assert got == {"constraints": {"maxTaskRetryCount": count}}


@pytest.mark.parametrize(("count", "code"), [(-2, "greater_than_equal"), (INT32_MAX + 1, "less_than_equal")])
def test_max_task_retry_count_refused(count: int, code: str) -> None:
    assert refused(update(constraints={"maxTaskRetryCount": count})) == [
        ("$.update.constraints.maxTaskRetryCount", code)
    ]


def test_durations_go_out_canonical() -> None:
    got = accepted(update(constraints={"maxWallClockTime": "1.02:03:04"})).update.body()
    assert got == {"constraints": {"maxWallClockTime": "P1DT2H3M4S"}}


@pytest.mark.parametrize("value", ["noaction", "NoAction", "TERMINATEJOB", "terminatejob"])
def test_on_all_tasks_complete_any_case_lower_out(value: str) -> None:
    assert accepted(update(onAllTasksComplete=value)).update.body() == {"onAllTasksComplete": value.lower()}


def test_an_enum_outside_its_values_is_refused() -> None:
    assert refused(update(onAllTasksComplete="stop")) == [("$.update.onAllTasksComplete", "literal_error")]


# --- metadata ----------------------------------------------------------------------


def test_metadata_lengths_from_both_sides() -> None:
    edge = [{"name": "n" * 1024, "value": "v" * 8192}, {"name": "x", "value": ""}]
    assert accepted(update(metadata=edge)).update.body() == {"metadata": edge}
    assert refused(update(metadata=[{"name": "n" * 1025, "value": ""}])) == [
        ("$.update.metadata[0].name", "string_too_long")
    ]
    assert refused(update(metadata=[{"name": "", "value": "v"}])) == [
        ("$.update.metadata[0].name", "string_too_short")
    ]
    assert refused(update(metadata=[{"name": "a", "value": "v"}, {"name": "b", "value": "v" * 8193}])) == [
        ("$.update.metadata[1].value", "string_too_long")
    ]


def test_metadata_count_from_both_sides_and_empty_clears() -> None:
    items = [{"name": f"n{i}", "value": ""} for i in range(1000)]
    assert len(accepted(update(metadata=items)).update.body()["metadata"]) == 1000
    assert refused(update(metadata=[*items, {"name": "x", "value": ""}])) == [
        ("$.update.metadata", "too_long")
    ]
    assert accepted(update(metadata=[])).update.body() == {"metadata": []}


def test_any_string_is_bounded_at_64_kib() -> None:
    host = "https://" + "a" * (64 * 1024 - len("https://"))
    assert accepted(body(endpoint=host, update={"priority": 1})).target_endpoint == host
    assert refused(body(endpoint=host + "a", update={"priority": 1})) == [("$.endpoint", "string_too_long")]


# --- size, depth, shape ------------------------------------------------------------


def test_exactly_256_kib_is_accepted_and_one_byte_more_is_not() -> None:
    raw = update(priority=5)
    padded = raw[:-1] + b" " * (MAX_MESSAGE_BYTES - len(raw)) + b"}"
    assert len(padded) == MAX_MESSAGE_BYTES == 256 * 1024
    assert accepted(padded).update.body() == {"priority": 5}
    over = raw[:-1] + b" " * (MAX_MESSAGE_BYTES - len(raw) + 1) + b"}"
    assert refused(over) == [("$", "too_large")]
    assert refused(over.decode()) == [("$", "too_large")]


def test_a_byte_order_mark_is_ignored() -> None:
    assert accepted(b"\xef\xbb\xbf" + update(priority=3)).update.body() == {"priority": 3}


def test_pool_depth_32_is_accepted_and_33_is_not() -> None:
    assert MAX_POOL_DEPTH == 32
    spec = accepted(pool(nested(32))).update.body()["poolInfo"]["autoPoolSpecification"]["pool"]
    assert spec == nested(32)
    assert refused(pool(nested(33))) == [("$.update.poolInfo.autoPoolSpecification.pool", "too_deep")]
    in_lists: Any = "leaf"
    for _ in range(32):
        in_lists = [in_lists]
    assert refused(pool({"a": in_lists})) == [("$.update.poolInfo.autoPoolSpecification.pool", "too_deep")]
    assert accepted(pool({"a": in_lists[0]}))


@pytest.mark.parametrize("value", [INT64_MAX, INT64_MIN, 1.5, -0.5, 0, "s", True, False, [], {}])
def test_pool_values_within_range_are_passed_through(value: Any) -> None:
    spec = accepted(pool({"k": value, "l": [value]})).update.body()["poolInfo"]["autoPoolSpecification"]
    assert spec["pool"] == {"k": value, "l": [value]}


@pytest.mark.parametrize(
    ("raw_value", "code"),
    [
        (str(INT64_MAX + 1), "number_too_large"),
        (str(INT64_MIN - 1), "number_too_large"),
        ("1e300", "number_too_large"),
        ("NaN", "number_not_finite"),
        ("Infinity", "number_not_finite"),
        ("null", "null_not_allowed"),
        ("[1, null]", "null_not_allowed"),
        ('{"deep": {"x": null}}', "null_not_allowed"),
    ],
)
def test_pool_values_out_of_range_are_refused(raw_value: str, code: str) -> None:
    raw = pool({"k": "PLACEHOLDER"}).replace(b'"PLACEHOLDER"', raw_value.encode())
    assert refused(raw) == [("$.update.poolInfo.autoPoolSpecification.pool", code)]


def test_null_is_one_problem_wherever_it_is() -> None:
    assert refused(update(priority=None)) == [("$.update.priority", "null_not_allowed")]
    assert refused(body(update={"priority": 1}, options={"timeout": None})) == [
        ("$.options.timeout", "null_not_allowed")
    ]


def test_type_errors_say_what_they_got_and_unknown_fields_say_so() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(update(priority="100", priorty=1))
    by_path = {p.path: p for p in caught.value.problems}
    assert by_path["$.update.priority"].code == "int_type"
    assert by_path["$.update.priority"].message.endswith("(got string)")
    assert by_path["$.update.priorty"].code == "extra_forbidden"
    assert by_path["$.update.priorty"].message.startswith("unknown field")
    with pytest.raises(InvalidMessage) as caught:
        parse_message(update(allowTaskPreemption=[1]))
    assert caught.value.problems[0].message.endswith("(got array)")


def test_a_model_type_error_has_no_got_suffix() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(body(update=[1]))
    (problem,) = caught.value.problems
    assert (problem.path, problem.code) == ("$.update", "model_type")
    assert "(got" not in problem.message


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b'{"schemaVersion": "1.0", "jobId": "j", "update": {"priority": 1}, "jobId": "k"}', "$.jobId"),
        (
            b'{"schemaVersion": "1.0", "jobId": "j", "update": {"metadata": [{"name": "a", "name": "b", '
            b'"value": ""}]}}',
            "$.update.metadata[0].name",
        ),
        (
            b'{"schemaVersion": "1.0", "jobId": "j", "update": {"priority": 1}, '
            b'"options": {"dryRun": true, "dryRun": false}}',
            "$.options.dryRun",
        ),
    ],
)
def test_a_repeated_name_is_refused_with_its_path(raw: bytes, path: str) -> None:
    assert (path, "duplicate_key") in refused(raw)
    assert [p.path for p in duplicate_keys(raw)] == [path]


def test_duplicate_keys_are_sorted_by_path_and_empty_without_repeats() -> None:
    raw = b'{"b": {"y": 1, "y": 2}, "a": {"x": 1, "x": 2}}'
    assert [(p.path, p.code) for p in duplicate_keys(raw)] == [
        ("$.a.x", "duplicate_key"),
        ("$.b.y", "duplicate_key"),
    ]
    assert duplicate_keys(b'{"a": {"x": 1}, "b": [1, {"y": 2}]}') == []
    assert duplicate_keys(b"not json") == []


def test_invalid_json_is_one_problem_at_the_root() -> None:
    assert refused(b'{"schemaVersion": "1.0", "jobId": "j", "jobId": ') == [("$", "json_invalid")]


def test_json_paths() -> None:
    assert json_path(()) == "$"
    assert json_path(("update", "metadata", 2, "name")) == "$.update.metadata[2].name"


# --- identity ----------------------------------------------------------------------


def test_job_url_splits_into_endpoint_and_job() -> None:
    url = "https://acct.westeurope.batch.azure.com/jobs/job-9"
    for given in (url, url + "/"):
        message = accepted(json.dumps({"schemaVersion": "1.0", "jobUrl": given, "update": {"priority": 1}}))
        assert (message.target_endpoint, message.target_job_id) == (
            "https://acct.westeurope.batch.azure.com",
            "job-9",
        )


def test_job_identity_choices() -> None:
    url = "https://acct.westeurope.batch.azure.com/jobs/job-9"
    assert refused(body(jobUrl=url, update={"priority": 1})) == [("$", "job_identity")]
    no_id = {
        "schemaVersion": "1.0",
        "jobUrl": url,
        "endpoint": "https://a.b.batch.azure.com",
        "update": {"priority": 1},
    }
    assert refused(json.dumps(no_id)) == [("$", "job_identity")]
    assert refused(json.dumps({"schemaVersion": "1.0", "update": {"priority": 1}})) == [("$", "missing_job")]
    assert refused(body(jobUrl="https://acct.westeurope.batch.azure.com/pools/p", update={"priority": 1}))[
        0
    ] == (
        "$.jobUrl",
        "invalid_job_url",
    )
    assert accepted(body(update={"priority": 1})).target_endpoint is None


def test_endpoint_shape_is_checked_before_the_allow_list() -> None:
    ok = accepted(body(endpoint="https://acct.westeurope.batch.azure.com:8443/", update={"priority": 1}))
    assert ok.target_endpoint == "https://acct.westeurope.batch.azure.com:8443/"
    assert refused(body(endpoint="http://acct.westeurope.batch.azure.com", update={"priority": 1})) == [
        ("$.endpoint", "invalid_endpoint")
    ]


def test_empty_update_needs_a_dry_run() -> None:
    assert refused(body()) == [("$", "empty_update")]
    assert refused(body(update={})) == [("$", "empty_update")]
    assert accepted(body(options={"dryRun": True})).options.dry_run is True
    assert accepted(body(update={"priority": 1})).options.dry_run is False


# --- conditions and options ----------------------------------------------------------


def test_each_allowed_condition_set_and_its_headers() -> None:
    date = "Mon, 17 Feb 2025 00:00:00 GMT"
    cases = [
        ({"ifMatch": "0x1"}, {"If-Match": '"0x1"'}),
        ({"ifNoneMatch": "*"}, {"If-None-Match": "*"}),
        ({"ifModifiedSince": date}, {"If-Modified-Since": date}),
        ({"ifUnmodifiedSince": "2025-02-17T01:00:00+01:00"}, {"If-Unmodified-Since": date}),
        (
            {"ifNoneMatch": '"e"', "ifModifiedSince": date},
            {"If-None-Match": '"e"', "If-Modified-Since": date},
        ),
        ({"ifMatch": "e", "ifUnmodifiedSince": date}, {"If-Match": '"e"', "If-Unmodified-Since": date}),
    ]
    for conditions, headers in cases:
        assert accepted(body(update={"priority": 1}, conditions=conditions)).conditions.headers() == headers


@pytest.mark.parametrize(
    "conditions",
    [
        {"ifMatch": "a", "ifNoneMatch": "b"},
        {"ifMatch": "a", "ifModifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"},
        {"ifNoneMatch": "a", "ifUnmodifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"},
        {
            "ifModifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT",
            "ifUnmodifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT",
        },
        {"ifMatch": "a", "ifNoneMatch": "b", "ifModifiedSince": "Mon, 17 Feb 2025 00:00:00 GMT"},
    ],
)
def test_other_condition_sets_are_refused(conditions: dict[str, str]) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(body(update={"priority": 1}, conditions=conditions))
    (problem,) = caught.value.problems
    assert (problem.path, problem.code) == ("$.conditions", "condition_combination")
    assert ", ".join(sorted(conditions)) in problem.message


def test_merge_takes_if_match_only() -> None:
    assert accepted(body(mode="MERGE", update={"priority": 1}, conditions={"ifMatch": "e"})).mode == "merge"
    assert accepted(body(mode="merge", update={"priority": 1})).mode == "merge"
    assert refused(body(mode="merge", update={"priority": 1}, conditions={"ifNoneMatch": "e"})) == [
        ("$", "merge_conditions")
    ]
    assert (
        accepted(body(mode="replace", update={"priority": 1}, conditions={"ifNoneMatch": "e"})).mode
        == "replace"
    )


@pytest.mark.parametrize("timeout", [1, 30])
def test_timeout_limits_accepted(timeout: int) -> None:
    assert accepted(body(update={"priority": 1}, options={"timeout": timeout})).options.timeout == timeout


@pytest.mark.parametrize(("timeout", "code"), [(0, "greater_than_equal"), (31, "less_than_equal")])
def test_timeout_one_past_refused(timeout: int, code: str) -> None:
    assert refused(body(update={"priority": 1}, options={"timeout": timeout})) == [
        ("$.options.timeout", code)
    ]


def test_client_request_id_must_be_a_bare_guid() -> None:
    ok = accepted(body(update={"priority": 1}, options={"clientRequestId": GUID.upper()}))
    assert ok.options.client_request_id == GUID.upper()
    for bad in ("{" + GUID + "}", GUID[:-1], GUID + "0", "not-a-guid"):
        assert refused(body(update={"priority": 1}, options={"clientRequestId": bad})) == [
            ("$.options.clientRequestId", "invalid_client_request_id")
        ]


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("offset", [-MAX_CLOCK_SKEW, MAX_CLOCK_SKEW, timedelta(0)])
def test_ocp_date_at_the_15_minute_edge_is_accepted(offset: timedelta) -> None:
    assert timedelta(minutes=15) == MAX_CLOCK_SKEW
    sent = NOW + offset
    message = accepted(body(update={"priority": 1}, options={"ocpDate": sent.isoformat()}))
    check_ocp_date(message, NOW)  # no problem
    assert message.options.ocp_date == sent


@pytest.mark.parametrize(
    "offset", [-MAX_CLOCK_SKEW - timedelta(seconds=1), MAX_CLOCK_SKEW + timedelta(seconds=1)]
)
def test_ocp_date_one_second_past_the_edge_is_refused(offset: timedelta) -> None:
    message = accepted(body(update={"priority": 1}, options={"ocpDate": (NOW + offset).isoformat()}))
    with pytest.raises(InvalidMessage) as caught:
        check_ocp_date(message, NOW)
    assert [(p.path, p.code) for p in caught.value.problems] == [("$.options.ocpDate", "ocp_date_skew")]
    assert "15 minutes" in caught.value.problems[0].message


def test_no_ocp_date_needs_no_check() -> None:
    check_ocp_date(accepted(body(update={"priority": 1})), NOW)


# --- schema --------------------------------------------------------------------------


def test_the_schema_keeps_field_limits_and_drops_only_the_global_string_guard() -> None:
    schema = json_schema()
    metadata_item = schema["$defs"]["MetadataItem"]["properties"]
    assert metadata_item["name"]["maxLength"] == 1024
    assert metadata_item["value"]["maxLength"] == 8192
    assert "maxLength" not in json.dumps(schema["properties"]["endpoint"])
    pool_schema = schema["$defs"]["AutoPoolSpecificationUpdate"]["properties"]["pool"]
    assert pool_schema["additionalProperties"] == {"$ref": "#/$defs/PoolValue"}
    assert {"type": "array", "items": {"$ref": "#/$defs/PoolValue"}} in schema["$defs"]["PoolValue"]["anyOf"]


def test_messages_are_frozen() -> None:
    from pydantic import ValidationError

    message = accepted(update(priority=1))
    with pytest.raises(ValidationError):
        message.mode = "merge"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        message.update.priority = 2  # type: ignore[misc]


def test_a_date_condition_of_the_wrong_type_says_so() -> None:
    assert refused(body(update={"priority": 1}, conditions={"ifModifiedSince": 5})) == [
        ("$.conditions.ifModifiedSince", "datetime_type")
    ]


def test_a_very_deep_body_has_no_duplicate_keys_to_report() -> None:
    assert duplicate_keys(b"[" * 100_000) == []
