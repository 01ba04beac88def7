"""Pins for the job comparisons and local precondition checks (found by mutation
testing: tests/mutation): each rule with a case that holds and one that does not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from handlers.contract import Conditions
from handlers.outcomes import already_in_place, changes, evaluate_conditions, merge

UNLIMITED = "P10675199DT2H48M5.4775807S"
OLD = "Mon, 17 Feb 2025 00:00:00 GMT"
SAME = "Mon, 17 Feb 2025 00:00:00 GMT"
NEW = "Tue, 18 Feb 2025 00:00:00 GMT"


def conditions(**given: str) -> Conditions:
    return Conditions.model_validate_json(json.dumps(given))


# --- comparisons -------------------------------------------------------------------


def test_durations_compare_canonically_and_odd_ones_as_text() -> None:
    job = {"constraints": {"maxWallClockTime": "PT1H30M", "maxTaskRetryCount": 0}}
    assert already_in_place(job, {"constraints": {"maxWallClockTime": "01:30:00"}})
    assert not already_in_place(job, {"constraints": {"maxWallClockTime": "01:30:01"}})
    odd = {"constraints": {"maxWallClockTime": "forever"}}
    assert already_in_place(odd, {"constraints": {"maxWallClockTime": "forever"}})
    assert not already_in_place(odd, {"constraints": {"maxWallClockTime": "PT1H"}})


def test_enums_compare_in_any_case_other_strings_exactly() -> None:
    assert already_in_place({"onAllTasksComplete": "TerminateJob"}, {"onAllTasksComplete": "terminatejob"})
    auto = {"poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "JobSchedule"}}}
    assert already_in_place(
        auto, {"poolInfo": {"autoPoolSpecification": {"poolLifetimeOption": "jobschedule"}}}
    )
    assert not already_in_place({"poolInfo": {"poolId": "P1"}}, {"poolInfo": {"poolId": "p1"}})


def test_nulls_read_from_a_job_are_absent_values() -> None:
    assert already_in_place({"priority": 1, "maxParallelTasks": None}, {"priority": 1})
    assert (
        changes(
            {"constraints": {"maxTaskRetryCount": 1, "maxWallClockTime": None}},
            {"constraints": {"maxTaskRetryCount": 1}},
        )
        == {}
    )


def test_lists_compare_item_by_item() -> None:
    job = {"metadata": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}
    assert already_in_place(job, {"metadata": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]})
    assert not already_in_place(job, {"metadata": [{"name": "b", "value": "2"}, {"name": "a", "value": "1"}]})
    assert not already_in_place(job, {"metadata": [{"name": "a", "value": "1"}]})


def test_a_missing_property_is_not_in_place() -> None:
    assert not already_in_place({}, {"priority": 0})
    assert not already_in_place({"constraints": "odd"}, {"constraints": {"maxTaskRetryCount": 1}})
    assert already_in_place({"priority": 0}, {})


def test_replace_mode_counts_the_reset_values_of_omitted_nested_fields() -> None:
    update = {"constraints": {"maxWallClockTime": "PT1H"}}
    reset = {"constraints": {"maxWallClockTime": "PT1H", "maxTaskRetryCount": 0}}
    kept = {"constraints": {"maxWallClockTime": "PT1H", "maxTaskRetryCount": 3}}
    assert already_in_place(reset, update, replace_nested=True)
    assert not already_in_place(kept, update, replace_nested=True)
    assert already_in_place(kept, update)  # merge reading: named fields only
    only_retries = {"constraints": {"maxTaskRetryCount": 3}}
    assert already_in_place(
        {"constraints": {"maxWallClockTime": UNLIMITED, "maxTaskRetryCount": 3}},
        only_retries,
        replace_nested=True,
    )
    assert changes(kept, update, replace_nested=True) == {
        "constraints": {"from": kept["constraints"], "to": update["constraints"]}
    }
    assert changes(kept, update) == {}


def test_replace_mode_compares_objects_without_reset_values_field_by_field() -> None:
    job = {
        "poolInfo": {"poolId": "p1"},
        "networkConfiguration": {"subnetId": "s", "skipWithdrawFromVNet": False},
    }
    assert already_in_place(job, {"networkConfiguration": {"subnetId": "s"}}, replace_nested=True)
    assert changes(job, {"priority": 1}, replace_nested=True) == {"priority": {"from": None, "to": 1}}


def test_changes_report_the_values_as_read_and_as_sent() -> None:
    job = {"priority": 1, "onAllTasksComplete": "NoAction"}
    update = {"priority": 2, "onAllTasksComplete": "noaction"}
    assert changes(job, update) == {"priority": {"from": 1, "to": 2}}


# --- merge -------------------------------------------------------------------------


def test_merge_replaces_pool_info_when_the_choice_switches() -> None:
    job = {"poolInfo": {"poolId": "p1"}}
    new = {"poolInfo": {"autoPoolSpecification": {"keepAlive": True}}}
    assert merge(job, new) == new


def test_merge_merges_pool_info_when_the_choice_is_kept() -> None:
    job = {
        "poolInfo": {
            "autoPoolSpecification": {"keepAlive": False, "autoPoolIdPrefix": "x", "pool": {"a": 1, "b": 2}}
        }
    }
    new = {"poolInfo": {"autoPoolSpecification": {"keepAlive": True, "pool": {"a": 3}}}}
    assert merge(job, new) == {
        "poolInfo": {"autoPoolSpecification": {"keepAlive": True, "autoPoolIdPrefix": "x", "pool": {"a": 3}}}
    }


def test_merge_upserts_metadata_by_name_keeping_order_last_wins() -> None:
    job = {"metadata": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}
    new = {
        "metadata": [{"name": "b", "value": "3"}, {"name": "c", "value": "4"}, {"name": "b", "value": "5"}]
    }
    assert merge(job, new) == {
        "metadata": [{"name": "a", "value": "1"}, {"name": "b", "value": "5"}, {"name": "c", "value": "4"}]
    }
    assert merge({}, new) == {"metadata": new["metadata"]}
    assert merge({"metadata": None}, {"metadata": []}) == {"metadata": []}


def test_merge_objects_recursively_and_scalars_replace() -> None:
    job: dict[str, Any] = {"constraints": {"maxTaskRetryCount": 1, "maxWallClockTime": "PT1H"}, "priority": 3}
    assert merge(job, {"constraints": {"maxTaskRetryCount": 2}, "priority": 4}) == {
        "constraints": {"maxTaskRetryCount": 2, "maxWallClockTime": "PT1H"},
        "priority": 4,
    }
    deep = {"networkConfiguration": {"a": {"x": 1, "y": 2}}}
    assert merge(deep, {"networkConfiguration": {"a": {"y": 3}}}) == {
        "networkConfiguration": {"a": {"x": 1, "y": 3}}
    }
    assert merge({"networkConfiguration": {"a": 1}}, {"networkConfiguration": {"a": {"y": 3}}}) == {
        "networkConfiguration": {"a": {"y": 3}}
    }
    assert merge({"constraints": "odd"}, {"constraints": {"maxTaskRetryCount": 2}}) == {
        "constraints": {"maxTaskRetryCount": 2}
    }
    assert job == {"constraints": {"maxTaskRetryCount": 1, "maxWallClockTime": "PT1H"}, "priority": 3}


# --- preconditions -----------------------------------------------------------------


def test_no_conditions_is_unknown() -> None:
    assert evaluate_conditions(conditions(), "0x1", OLD) is None


@pytest.mark.parametrize(
    ("given", "etag", "held"),
    [
        ({"ifMatch": "*"}, "0x1", True),
        ({"ifMatch": "*"}, None, True),
        ({"ifMatch": "0x1"}, "0x1", True),
        ({"ifMatch": '"0x1"'}, '"0x1"', True),
        ({"ifMatch": "0x1"}, "0x2", False),
        ({"ifMatch": "0x1"}, None, False),
        ({"ifNoneMatch": "*"}, "0x1", False),
        ({"ifNoneMatch": "0x1"}, "0x1", False),
        ({"ifNoneMatch": "0x1"}, "0x2", True),
        ({"ifNoneMatch": "0x1"}, None, True),
    ],
)
def test_etag_conditions(given: dict[str, str], etag: str | None, held: bool) -> None:
    assert evaluate_conditions(conditions(**given), etag, None) is held


@pytest.mark.parametrize(
    ("given", "last_modified", "held"),
    [
        ({"ifUnmodifiedSince": SAME}, OLD, True),  # equal: not modified since
        ({"ifUnmodifiedSince": OLD}, NEW, False),
        ({"ifUnmodifiedSince": NEW}, OLD, True),
        ({"ifModifiedSince": SAME}, OLD, False),  # equal: not modified since
        ({"ifModifiedSince": OLD}, NEW, True),
        ({"ifModifiedSince": NEW}, OLD, False),
    ],
)
def test_date_conditions(given: dict[str, str], last_modified: str, held: bool) -> None:
    assert evaluate_conditions(conditions(**given), "0x1", last_modified) is held


@pytest.mark.parametrize("last_modified", [None, "", "yesterday"])
def test_a_date_condition_without_a_readable_date_is_unknown(last_modified: str | None) -> None:
    assert evaluate_conditions(conditions(ifModifiedSince=OLD), "0x1", last_modified) is None
    assert evaluate_conditions(conditions(ifMatch="0x1", ifUnmodifiedSince=OLD), "0x1", last_modified) is None


def test_an_etag_condition_ignores_an_odd_date() -> None:
    assert evaluate_conditions(conditions(ifMatch="0x1"), "0x1", "yesterday") is True


@pytest.mark.parametrize(
    ("given", "etag", "last_modified", "held"),
    [
        ({"ifMatch": "0x1", "ifUnmodifiedSince": NEW}, "0x1", OLD, True),
        ({"ifMatch": "0x1", "ifUnmodifiedSince": OLD}, "0x1", NEW, False),
        ({"ifMatch": "0x2", "ifUnmodifiedSince": NEW}, "0x1", OLD, False),
        ({"ifNoneMatch": "0x2", "ifModifiedSince": OLD}, "0x1", NEW, True),
        ({"ifNoneMatch": "0x1", "ifModifiedSince": OLD}, "0x1", NEW, False),
        ({"ifNoneMatch": "0x2", "ifModifiedSince": NEW}, "0x1", OLD, False),
    ],
)
def test_both_of_a_pair_must_hold(given: dict[str, str], etag: str, last_modified: str, held: bool) -> None:
    assert evaluate_conditions(conditions(**given), etag, last_modified) is held


def test_nulls_inside_list_items_are_absent_values_too() -> None:
    job = {"metadata": [{"name": "a", "value": "1", "extra": None}]}
    assert already_in_place(job, {"metadata": [{"name": "a", "value": "1"}]})


def test_different_odd_durations_and_enums_differ() -> None:
    assert not already_in_place(
        {"constraints": {"maxWallClockTime": "forever"}}, {"constraints": {"maxWallClockTime": "never"}}
    )
    assert not already_in_place({"onAllTasksComplete": "NoAction"}, {"onAllTasksComplete": "terminatejob"})


def test_merge_edge_shapes() -> None:
    assert merge({}, {"poolInfo": {"poolId": "p"}}) == {"poolInfo": {"poolId": "p"}}
    assert merge({"poolInfo": "odd"}, {"poolInfo": {"poolId": "p"}}) == {"poolInfo": {"poolId": "p"}}
    other = {"other": [{"name": "b", "value": "2"}]}
    assert merge({"other": [{"name": "a", "value": "1"}]}, other) == other
    assert merge({"metadata": {"odd": 1}}, {"metadata": []}) == {"metadata": []}
    assert merge({"c": {"a": {"x": 1}}}, {"c": {"a": 5}}) == {"c": {"a": 5}}


def test_outcome_values_and_result_defaults() -> None:
    from handlers.outcomes import Outcome, Result, Write

    assert [o.value for o in Outcome] == [
        "applied",
        "dry-run",
        "precondition-failed",
        "rejected",
        "failed",
        "given-up",
    ]
    assert [w.value for w in Write] == ["this-delivery", "earlier-delivery", "none"]
    r = Result(Outcome.rejected)
    assert (r.attempts, r.in_place, r.write, r.conditions_met, dict(r.changes), r.problems) == (
        0,
        False,
        None,
        None,
        {},
        (),
    )
