"""infra/tools/checkov_gate.py fails when it must (synthetic checkov reports).

Needs only PyYAML (a checkov dependency): runs in the infra venv from
.ci/infra-check.sh and wherever PyYAML is installed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("yaml", reason="the gate reads infra/checkov-skips.yaml with PyYAML")

from ._checkov import INFRA, custom_check_ids

GATE_PATH = INFRA / "tools" / "checkov_gate.py"
SKIPS_PATH = INFRA / "checkov-skips.yaml"


def _load_gate() -> Any:
    spec = importlib.util.spec_from_file_location("checkov_gate_under_test", GATE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


gate = _load_gate()
IDS = custom_check_ids()


def _result(
    check_id: str, resource: str = "Microsoft.Web/sites.site", file: str = "/app/function.bicep"
) -> dict:
    return {"check_id": check_id, "check_name": "n", "resource": resource, "file_path": file}


def _report(passed=(), failed=(), skipped=(), parsing_errors=()) -> dict:
    return {
        "check_type": "bicep",
        "results": {
            "passed_checks": list(passed),
            "failed_checks": list(failed),
            "skipped_checks": list(skipped),
            "parsing_errors": list(parsing_errors),
        },
        "summary": {
            "passed": len(passed),
            "failed": len(failed),
            "skipped": len(skipped),
            "parsing_errors": len(parsing_errors),
            "resource_count": 3,
            "checkov_version": "x",
        },
    }


ALL_CUSTOM_PASS = [_result(cid) for cid in IDS]


def _skip(check_id: str, **kw: Any) -> Any:
    return gate.Skip(id=check_id, reason="x" * gate.MIN_REASON_CHARS, **kw)


def test_clean_report_passes() -> None:
    errors, lines = gate.evaluate(_report(passed=ALL_CUSTOM_PASS), [], IDS)
    assert errors == []
    assert any("custom checks: 12/12 ran" in line for line in lines)


def test_parsing_error_fails() -> None:
    errors, _ = gate.evaluate(_report(passed=ALL_CUSTOM_PASS, parsing_errors=["/app/x.bicep"]), [], IDS)
    assert any("parsing error" in e for e in errors)


def test_parsing_error_count_only_in_summary_fails() -> None:
    report = _report(passed=ALL_CUSTOM_PASS)
    report["summary"]["parsing_errors"] = 2
    errors, _ = gate.evaluate(report, [], IDS)
    assert any("parsing error" in e for e in errors)


def test_unaccepted_failure_fails_and_accepted_one_passes() -> None:
    failure = _result("CKV_AZURE_17")
    errors, _ = gate.evaluate(_report(passed=ALL_CUSTOM_PASS, failed=[failure]), [], IDS)
    assert any("FAILED: CKV_AZURE_17" in e for e in errors)
    skip = _skip("CKV_AZURE_17", resources=["Microsoft.Web/sites.site"], file="app/function.bicep")
    errors, _ = gate.evaluate(_report(passed=ALL_CUSTOM_PASS, failed=[failure]), [skip], IDS)
    assert errors == []
    assert skip.used == 1


def test_skip_for_another_resource_or_file_does_not_cover() -> None:
    failure = _result("CKV_AZURE_17", resource="Microsoft.Web/sites.other")
    for skip in (
        _skip("CKV_AZURE_17", resources=["Microsoft.Web/sites.site"]),
        _skip("CKV_AZURE_17", file="app/other.bicep"),
        _skip("CKV_AZURE_18"),
    ):
        errors, _ = gate.evaluate(_report(passed=ALL_CUSTOM_PASS, failed=[failure]), [skip], IDS)
        assert errors, skip


def test_in_source_skip_is_not_honoured_unless_listed() -> None:
    skipped = _result("CKV_AZURE_35", resource="Microsoft.Storage/storageAccounts.storage")
    errors, _ = gate.evaluate(_report(passed=ALL_CUSTOM_PASS, skipped=[skipped]), [], IDS)
    assert any("skipped in source" in e for e in errors)


def test_custom_check_that_did_not_run_fails() -> None:
    errors, _ = gate.evaluate(_report(passed=ALL_CUSTOM_PASS[1:]), [], IDS)
    assert errors == [f"custom check {IDS[0]} produced no result (did infra/checks fail to import?)"]


def test_failed_custom_check_fails() -> None:
    errors, _ = gate.evaluate(_report(passed=ALL_CUSTOM_PASS[1:], failed=[_result(IDS[0])]), [], IDS)
    assert any(f"FAILED: {IDS[0]}" in e for e in errors)


def test_report_without_bicep_section_fails() -> None:
    errors, _ = gate.evaluate({"check_type": "terraform", "results": {}}, [], IDS)
    assert errors


def test_skip_without_reason_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "skips.yaml"
    path.write_text("skips:\n  - id: CKV_AZURE_17\n    reason: because\n", encoding="utf-8")
    skips, problems = gate.load_skips(path)
    assert skips == [] and problems and "reason" in problems[0]


def test_checked_in_skips_file_is_valid() -> None:
    skips, problems = gate.load_skips(SKIPS_PATH)
    assert problems == []
    assert skips, "infra/checkov-skips.yaml lists no skips (fine, but then delete this test's premise)"
    for skip in skips:
        assert len(skip.reason) >= gate.MIN_REASON_CHARS


def test_cli_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_report(passed=ALL_CUSTOM_PASS)), encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_report(passed=ALL_CUSTOM_PASS, failed=[_result("CKV_X_1")])), encoding="utf-8")
    empty_skips = tmp_path / "none.yaml"
    empty_skips.write_text("skips: []\n", encoding="utf-8")
    run = [sys.executable, str(GATE_PATH), "--skips", str(empty_skips)]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "infra gate: OK" in ok.stdout
    failed = subprocess.run([*run, str(bad)], capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert "FAILED: CKV_X_1" in failed.stdout
