"""The fuzz suite's own judges can fail: each is shown a known-bad case.

A property that can never fire proves nothing, so: the Batch-side check refuses what
Batch refuses, a sabotaged plan is caught sending it, a sabotaged `check` is caught
disagreeing, and the soak's summary has the shape the reliability report reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from handlers.contract import JobUpdate
from tests.fuzz import properties as props
from tests.fuzz import run
from tests.fuzz.__main__ import main
from tests.fuzz.strategies import ACCOUNT, MUTATIONS, NOT_LISTED, Case

HEADERS = {
    "client-request-id": "9c4d50ee-2d56-4cd3-8152-34347dc9f2b0",
    "return-client-request-id": "false",
    "ocp-date": "Thu, 01 Jan 2026 12:00:00 GMT",
    "Content-Type": "application/json; odata=minimalmetadata",
}
URL = f"{ACCOUNT}/jobs/j?api-version=2025-06-01"
GOOD = b'{"priority":1}'


def refuse(body: bytes, *, url: str = URL, headers: dict[str, str] | None = None) -> str | None:
    return props.batch_would_refuse(
        "PATCH", url, headers or HEADERS, body, props.FUNCTION_POLICY.allowed_endpoints
    )


def test_a_good_patch_passes() -> None:
    assert refuse(GOOD) is None
    pool = {"poolInfo": {"autoPoolSpecification": {"pool": {"vmSize": "x", "notAPoolField": 1}}}}
    assert refuse(json.dumps(pool).encode()) is None  # pool names are Batch's to judge


@pytest.mark.parametrize(
    "body",
    [
        b'{"priority":1001}',
        b'{"priority":1.0}',
        b'{"priority":null}',
        b'{"priority":NaN}',
        b'{"priority":1,"priority":2}',
        b'{"priorty":1}',
        b'{"maxParallelTasks":0}',
        b'{"constraints":{"maxWallClockTime":"P10675199DT2H48M5.4775808S"}}',
        b'{"poolInfo":{"poolId":"p","autoPoolSpecification":{}}}',
        b'{"poolInfo":{"autoPoolSpecification":{"pool":{"vmSize":' + b"[" * 40 + b"]" * 40 + b"}}}}",
        b'{"poolInfo":{"autoPoolSpecification":{"pool":{"targetDedicatedNodes":9223372036854775808}}}}',
        b'{"metadata":[{"name":"","value":"v"}]}',
        b'{"onAllTasksComplete":"sometimes"}',
        b"[]",
        b'{"priority":"\xff"}',
    ],
)
def test_what_batch_refuses_is_refused(body: bytes) -> None:
    assert refuse(body) is not None


def test_requests_off_the_allow_list_or_badly_headed_are_refused() -> None:
    assert refuse(GOOD, url=f"{NOT_LISTED}/jobs/j?api-version=2025-06-01") is not None
    assert refuse(GOOD, url=f"{ACCOUNT}/jobs/a%2Fb?api-version=2025-06-01") is not None
    assert refuse(GOOD, headers={**HEADERS, "If-Match": '"a"', "If-None-Match": '"b"'}) is not None
    assert refuse(GOOD, headers={**HEADERS, "client-request-id": "{x}"}) is not None


VALID = b'{"schemaVersion":"1.0","jobId":"j","update":{"priority":1}}'


def test_a_plan_that_sends_an_invalid_body_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not props.plan_property(Case(VALID, "valid"))
    monkeypatch.setattr(JobUpdate, "body", lambda self: {"priority": 5000})
    found = props.plan_property(Case(VALID, "valid"))
    assert found.invalid_reached_batch
    assert props.handler_property(Case(VALID, "valid")).invalid_reached_batch


def test_a_check_that_disagrees_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(props, "check_one", lambda body, policy, now: {"valid": True, "requests": []})
    assert props.check_property(Case(b'{"schemaVersion":"1.0"}', "valid")).check_disagreements


def test_an_exception_out_of_the_plan_is_an_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Any:
        raise KeyError("boom")

    monkeypatch.setattr(props, "next_step", broken)
    assert props.plan_property(Case(VALID, "valid")).escapes


def test_the_soak_summary_has_the_reported_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = run(40, 20261201)
    assert summary["cases"] == 40 == sum(summary["byMutation"].values())
    assert set(summary["byMutation"]) <= set(MUTATIONS)
    for key in ("escapes", "invalidReachedBatch", "checkDisagreements", "violations"):
        assert summary[key] == 0, summary["examples"]
    assert summary["seconds"] >= 0
    out = tmp_path / "summary.json"
    assert main(["--cases", "10", "--seed", "1", "--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written == json.loads(capsys.readouterr().out)
    assert (written["cases"], written["seed"]) == (10, 1)
