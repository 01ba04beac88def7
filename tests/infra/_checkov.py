"""Run checkov the way .ci/infra-check.sh does and index its JSON results (test helper)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
CHECKS_DIR = INFRA / "checks"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
UNPARSEABLE = Path(__file__).resolve().parent / "fixtures_unparseable"

EXPECT_LINE = re.compile(r"^//\s*expect:\s*(\S+)\s+(CKV_\w+)\s+(PASSED|FAILED)\s*$")


def custom_check_ids() -> tuple[str, ...]:
    text = (CHECKS_DIR / "ju_common.py").read_text(encoding="utf-8")
    match = re.search(r'CHECK_PREFIX = "(\w+)"', text)
    count = re.search(r"range\(1, (\d+)\)", text)
    assert match and count, "ju_common.py: CHECK_PREFIX / CUSTOM_CHECK_IDS changed shape"
    return tuple(f"{match.group(1)}{n}" for n in range(1, int(count.group(1))))


def run_checkov(directory: Path, checks: tuple[str, ...] = (), timeout: int = 240) -> dict[str, Any]:
    """checkov --framework bicep over `directory`; the bicep section of its JSON report."""
    cmd = [
        sys.executable,
        "-m",
        "checkov.main",
        "--framework",
        "bicep",
        "--skip-download",
        "-d",
        str(directory),
        "--external-checks-dir",
        str(CHECKS_DIR),
        "-o",
        "json",
    ]
    if checks:
        cmd += ["-c", ",".join(checks)]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    assert proc.returncode in (0, 1), f"checkov crashed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    assert "Cannot load external check" not in proc.stderr, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    sections = report if isinstance(report, list) else [report]
    bicep = [s for s in sections if s.get("check_type") == "bicep"]
    assert len(bicep) == 1, f"expected one bicep section, got {[s.get('check_type') for s in sections]}"
    return bicep[0]


@dataclass(frozen=True)
class Outcome:
    file: str
    symbol: str
    check_id: str
    result: str  # PASSED / FAILED


def outcomes(section: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    """(file name, resource symbol, check id) -> PASSED/FAILED."""
    index: dict[tuple[str, str, str], str] = {}
    results = section.get("results", {})
    for key, verdict in (("passed_checks", "PASSED"), ("failed_checks", "FAILED")):
        for item in results.get(key, []):
            symbol = str(item["resource"]).rsplit(".", 1)[-1]
            index[(Path(item["file_path"]).name, symbol, item["check_id"])] = verdict
    return index


def expectations(directory: Path = FIXTURES) -> list[Outcome]:
    """The `// expect: <symbol> <check id> <PASSED|FAILED>` lines of every fixture."""
    found: list[Outcome] = []
    for path in sorted(directory.glob("*.bicep")):
        for line in path.read_text(encoding="utf-8").splitlines():
            match = EXPECT_LINE.match(line.strip())
            if match:
                found.append(Outcome(path.name, match.group(1), match.group(2), match.group(3)))
    return found
