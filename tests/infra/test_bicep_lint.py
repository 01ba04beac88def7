"""infra/tools/bicep_lint.py: the cross-file checks fail on bad fixtures, pass on good ones
and on infra/.

Each directory under fixtures_lint/ is a small template (main.bicep, app/*.bicep,
azure.yaml); its `// expect: <finding prefix>` lines in main.bicep are exactly the
findings it must produce (`// expect: (none)` for none). Needs pycep: runs in the infra
venv from .ci/infra-check.sh, skipped elsewhere.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("pycep", reason="pycep comes with checkov in .venv-infra (.ci/infra-check.sh)")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "infra" / "tools"))
import bicep_lint  # noqa: E402

CASES = sorted(p for p in (Path(__file__).resolve().parent / "fixtures_lint").iterdir() if p.is_dir())
EXPECT = re.compile(r"^//\s*expect:\s*(.+?)\s*$")


def _expected(case: Path) -> list[str]:
    lines = (case / "main.bicep").read_text(encoding="utf-8").splitlines()
    found = [m.group(1) for m in map(EXPECT.match, lines) if m]
    assert found, f"{case.name}: no `// expect:` line"
    return [] if found == ["(none)"] else found


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_fixture_findings_are_exactly_the_expected_ones(case: Path) -> None:
    findings = bicep_lint.lint(case)
    expected = _expected(case)
    assert len(findings) == len(expected), findings
    for want in expected:
        assert any(f.startswith(want) for f in findings), f"{want!r} not in {findings}"


def test_there_are_failing_and_passing_fixtures_for_both_rules() -> None:
    kinds = {f.split(" ", 1)[0] for case in CASES for f in bicep_lint.lint(case)}
    assert kinds == {"range", "down-scope"}
    assert any(not _expected(case) for case in CASES)


def test_infra_has_no_findings() -> None:
    assert bicep_lint.lint(REPO / "infra") == []
    assert bicep_lint.main([str(REPO / "infra")]) == 0


@pytest.mark.parametrize(
    ("file", "old", "new", "finding"),
    [
        (
            "app/function.bicep",
            "@minValue(40)\n@maxValue(1000)\nparam maximumInstanceCount",
            "@minValue(1)\n@maxValue(1000)\nparam maximumInstanceCount",
            "range function.bicep: site.",
        ),
        (
            "main.bicep",
            "@minValue(30)\n@maxValue(730)\nparam logRetentionInDays",
            "@minValue(7)\n@maxValue(730)\nparam logRetentionInDays",
            "range main.bicep: module monitoring",
        ),
    ],
    ids=["flex-min-instances", "main-wider-than-module"],
)
def test_a_mutated_infra_fails(tmp_path: Path, file: str, old: str, new: str, finding: str) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(REPO / "infra", copy, ignore=shutil.ignore_patterns("checks", "tools", "hooks"))
    shutil.copy(REPO / "azure.yaml", tmp_path / "azure.yaml")
    text = (copy / file).read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    (copy / file).write_text(text.replace(old, new), encoding="utf-8")
    assert any(f.startswith(finding) for f in bicep_lint.lint(copy)), bicep_lint.lint(copy)


def test_an_older_azd_pin_fails_the_real_infra(tmp_path: Path) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(REPO / "infra", copy, ignore=shutil.ignore_patterns("checks", "tools", "hooks"))
    azure = (REPO / "azure.yaml").read_text(encoding="utf-8").replace('">= 1.24.1"', '">= 1.10.0"')
    (tmp_path / "azure.yaml").write_text(azure, encoding="utf-8")
    findings = bicep_lint.lint(copy)
    assert {f.split(":", 2)[1].strip() for f in findings} == {
        "module batchAccess (batch-access.bicep)",
        "module userBatchAccess (batch-access.bicep)",
    }
