from __future__ import annotations

from handlers.contract import Conditions
from handlers.outcomes import already_in_place, changes, evaluate_conditions, merge
from handlers.wire import BatchReply, StatusClass

JOB = {
    "id": "j",
    "priority": 0,
    "constraints": {"maxWallClockTime": "P10675199DT2H48M5.4775807S", "maxTaskRetryCount": 3},
    "metadata": [{"name": "owner", "value": "a"}, {"name": "team", "value": "x"}],
    "onAllTasksComplete": "noaction",
    "poolInfo": {"poolId": "p1"},
}


def reply(status: int) -> BatchReply:
    return BatchReply(status)


def test_status_classes() -> None:
    assert reply(200).status_class is StatusClass.ok
    assert reply(204).status_class is StatusClass.ok
    assert reply(412).status_class is StatusClass.precondition_failed
    for status in (400, 401, 403, 404, 409, 413, 501, 505):
        assert reply(status).status_class is StatusClass.refused
    for status in (408, 429, 500, 502, 503, 504):
        assert reply(status).status_class is StatusClass.transient


def test_merge_changes_only_named_nested_fields() -> None:
    merged = merge(
        JOB,
        {
            "constraints": {"maxWallClockTime": "PT2H"},
            "metadata": [{"name": "team", "value": "y"}, {"name": "new", "value": "1"}],
        },
    )
    assert merged["constraints"] == {"maxWallClockTime": "PT2H", "maxTaskRetryCount": 3}
    assert merged["metadata"] == [
        {"name": "owner", "value": "a"},
        {"name": "team", "value": "y"},
        {"name": "new", "value": "1"},
    ]


def test_changes_and_already_in_place() -> None:
    assert changes(JOB, {"priority": 0}) == {}
    assert changes(JOB, {"priority": 5}) == {"priority": {"from": 0, "to": 5}}
    assert changes(JOB, {"onAllTasksComplete": "NoAction"}) == {}
    assert already_in_place(JOB, {"priority": 0, "constraints": {"maxTaskRetryCount": 3}})
    assert not already_in_place(JOB, {"constraints": {"maxTaskRetryCount": 4}})
    assert already_in_place(
        {"constraints": {"maxWallClockTime": "PT1H"}}, {"constraints": {"maxWallClockTime": "01:00:00"}}
    )
    assert not already_in_place(JOB, {"metadata": [{"name": "owner", "value": "a"}]})


def test_evaluate_conditions() -> None:
    lm = "Mon, 17 Feb 2025 00:00:00 GMT"
    assert evaluate_conditions(Conditions.model_validate({"ifMatch": "0x1"}), '"0x1"', lm)
    assert not evaluate_conditions(Conditions.model_validate({"ifMatch": "0x2"}), "0x1", lm)
    assert evaluate_conditions(Conditions.model_validate({"ifMatch": "*"}), "0x1", lm)
    assert not evaluate_conditions(Conditions.model_validate({"ifNoneMatch": "0x1"}), "0x1", lm)
    assert evaluate_conditions(
        Conditions.model_validate({"ifModifiedSince": "Sun, 16 Feb 2025 00:00:00 GMT"}), "0x1", lm
    )
    assert not evaluate_conditions(
        Conditions.model_validate({"ifUnmodifiedSince": "Sun, 16 Feb 2025 00:00:00 GMT"}), "0x1", lm
    )
    assert evaluate_conditions(Conditions(), None, None) is None  # no conditions: nothing to hold
    both = {"ifMatch": "0x1", "ifUnmodifiedSince": "Sun, 16 Feb 2025 00:00:00 GMT"}
    assert evaluate_conditions(Conditions.model_validate(both), "0x1", lm) is False  # pairs: both must hold


def test_timeout_parameter_name_follows_the_api_version() -> None:
    from handlers.wire import timeout_parameter

    assert timeout_parameter("2025-06-01") == "timeOut"
    assert timeout_parameter("2026-10-01") == "timeOut"
    assert timeout_parameter("2024-07-01.20.0") == "timeout"


def test_retry_after_seconds_or_http_date() -> None:
    from handlers.wire import MAX_RETRY_AFTER_SECONDS, parse_retry_after

    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("100000") == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now=1767225600.0) == 10.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("nan") is None


def test_merge_switching_pool_kind_replaces_pool_info() -> None:
    auto = {"poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "job", "keepAlive": False}}}
    assert merge(auto, {"poolInfo": {"poolId": "p2"}}) == {"poolInfo": {"poolId": "p2"}}
    assert merge(JOB, {"poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "job"}}}) == {
        "poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "job"}}
    }
    assert merge(auto, {"poolInfo": {"autoPoolSpecification": {"keepAlive": True}}}) == {
        "poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "job", "keepAlive": True}}
    }


def test_merge_upserts_repeated_metadata_names_in_order() -> None:
    update = {
        "metadata": [
            {"name": "owner", "value": "b"},
            {"name": "new", "value": "1"},
            {"name": "new", "value": "2"},
        ]
    }
    assert merge(JOB, update)["metadata"] == [
        {"name": "owner", "value": "b"},
        {"name": "team", "value": "x"},
        {"name": "new", "value": "2"},
    ]
