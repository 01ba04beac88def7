"""The custom checkov checks in infra/checks can fail, can pass, and pass on infra/.

Runs checkov itself (as .ci/infra-check.sh does) over small Bicep fixtures: each
fixture states its expected results in `// expect: <symbol> <check id> <verdict>`
lines. Needs checkov: runs in the infra venv from .ci/infra-check.sh, and is skipped
in an environment without checkov.
"""

from __future__ import annotations

import pytest

pytest.importorskip("checkov", reason="checkov lives in .venv-infra (.ci/infra-check.sh)")

from ._checkov import (
    FIXTURES,
    INFRA,
    UNPARSEABLE,
    custom_check_ids,
    expectations,
    outcomes,
    run_checkov,
)

CUSTOM_IDS = custom_check_ids()
EXPECTED = expectations()


@pytest.fixture(scope="module")
def fixture_report() -> dict:
    return run_checkov(FIXTURES, checks=CUSTOM_IDS)


@pytest.fixture(scope="module")
def infra_report() -> dict:
    return run_checkov(INFRA)


def test_fixtures_parse(fixture_report: dict) -> None:
    assert fixture_report["results"].get("parsing_errors", []) == []
    assert fixture_report["summary"]["parsing_errors"] == 0


@pytest.mark.parametrize("expected", EXPECTED, ids=[f"{e.file}:{e.symbol}:{e.check_id}" for e in EXPECTED])
def test_fixture_result(fixture_report: dict, expected) -> None:
    got = outcomes(fixture_report).get((expected.file, expected.symbol, expected.check_id))
    assert got == expected.result, (
        f"{expected.check_id} on {expected.symbol} in {expected.file}: expected {expected.result}, got {got}"
    )


@pytest.mark.parametrize("check_id", CUSTOM_IDS)
def test_each_custom_check_fails_on_a_bad_fixture_and_passes_on_a_good_one(
    fixture_report: dict, check_id: str
) -> None:
    verdicts = {verdict for (_, _, cid), verdict in outcomes(fixture_report).items() if cid == check_id}
    assert verdicts == {"PASSED", "FAILED"}, f"{check_id}: fixtures produced only {verdicts or 'nothing'}"
    assert any(e.check_id == check_id and e.result == "FAILED" for e in EXPECTED)
    assert any(e.check_id == check_id and e.result == "PASSED" for e in EXPECTED)


def test_no_unexpected_failures_in_fixtures(fixture_report: dict) -> None:
    """Every FAILED result in the fixtures is one a fixture announced (no silent extra failures)."""
    announced = {(e.file, e.symbol, e.check_id) for e in EXPECTED if e.result == "FAILED"}
    unexpected = [k for k, v in outcomes(fixture_report).items() if v == "FAILED" and k not in announced]
    assert unexpected == []


def test_infra_parses_and_passes_every_custom_check(infra_report: dict) -> None:
    assert infra_report["results"].get("parsing_errors", []) == []
    assert infra_report["summary"]["parsing_errors"] == 0
    results = outcomes(infra_report)
    custom = {k: v for k, v in results.items() if k[2] in CUSTOM_IDS}
    assert {k for k, v in custom.items() if v == "FAILED"} == set()
    assert {k[2] for k in custom} == set(CUSTOM_IDS), "a custom check produced no result on infra/"


def test_infra_role_assignments_are_all_checked(infra_report: dict) -> None:
    """Four data roles per principal in access.bicep, one Batch role in batch-access.bicep,
    Data Sender on the queue in queue-sender.bicep (retries off the lock)."""
    roles = [k for k in outcomes(infra_report) if k[2] == "CKV_JU_6"]
    by_file: dict[str, int] = {}
    for file, _, _ in roles:
        by_file[file] = by_file.get(file, 0) + 1
    assert by_file == {"access.bicep": 4, "batch-access.bicep": 1, "queue-sender.bicep": 1}


def test_constructs_outside_the_parsed_subset_are_parsing_errors() -> None:
    """user-defined types, func, import, lambdas and spread: checkov reports them (exit 0!)."""
    report = run_checkov(UNPARSEABLE)
    files = sorted(p.name for p in UNPARSEABLE.glob("*.bicep"))
    errors = sorted(str(p).rsplit("/", 1)[-1] for p in report["results"].get("parsing_errors", []))
    assert errors == files
