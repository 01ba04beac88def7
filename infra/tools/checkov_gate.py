"""Decide pass/fail from a checkov JSON report (used by .ci/infra-check.sh).

checkov exits 0 even when it could not parse a file, and it only logs a custom check
that failed to import. This gate therefore fails on:
  * any parsing error (summary count or listed files);
  * any failed or in-source-skipped check not accepted by infra/checkov-skips.yaml;
  * a skip entry without a written reason;
  * a custom check id (infra/checks/ju_common.CUSTOM_CHECK_IDS) with no result at all
    (its module did not load, or no resource of its type exists any more);
  * a report without a bicep section (nothing scanned).
It prints a short summary either way.

Usage: checkov_gate.py REPORT.json [--skips infra/checkov-skips.yaml]
                                   [--checks-dir infra/checks] [--no-require-custom]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MIN_REASON_CHARS = 40


@dataclass
class Skip:
    id: str
    reason: str
    resources: list[str] = field(default_factory=list)
    file: str | None = None
    used: int = 0

    def matches(self, result: dict[str, Any]) -> bool:
        if result.get("check_id") != self.id:
            return False
        if self.resources and result.get("resource") not in self.resources:
            return False
        if self.file is not None:
            path = str(result.get("file_path", "")).lstrip("/")
            if path != self.file.lstrip("/"):
                return False
        return True


def load_skips(path: Path) -> tuple[list[Skip], list[str]]:
    """The accepted failures, and problems with the file itself."""
    if not path.exists():
        return [], []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    problems: list[str] = []
    skips: list[Skip] = []
    entries = data.get("skips") or []
    if not isinstance(entries, list):
        return [], [f"{path}: `skips` must be a list"]
    for index, entry in enumerate(entries):
        where = f"{path}: skips[{index}]"
        if not isinstance(entry, dict) or not entry.get("id"):
            problems.append(f"{where}: needs an `id`")
            continue
        reason = str(entry.get("reason") or "").strip()
        if len(reason) < MIN_REASON_CHARS:
            problems.append(
                f"{where} ({entry['id']}): needs a written `reason` (>= {MIN_REASON_CHARS} chars)"
            )
            continue
        resources = entry.get("resources") or []
        if isinstance(resources, str):
            resources = [resources]
        skips.append(
            Skip(id=str(entry["id"]), reason=reason, resources=list(resources), file=entry.get("file"))
        )
    return skips, problems


def bicep_reports(report: Any) -> list[dict[str, Any]]:
    reports = report if isinstance(report, list) else [report]
    return [r for r in reports if isinstance(r, dict) and r.get("check_type") == "bicep"]


def custom_check_ids(checks_dir: Path) -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("ju_common_for_gate", checks_dir / "ju_common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.CUSTOM_CHECK_IDS)


def first_line(text: str, width: int = 110) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def evaluate(report: Any, skips: list[Skip], required_ids: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(errors, summary lines)."""
    errors: list[str] = []
    lines: list[str] = []
    sections = bicep_reports(report)
    if not sections:
        return ["checkov produced no bicep results (no .bicep files scanned?)"], lines

    passed: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    parse_errors: list[str] = []
    resource_count = 0
    version = "?"
    for section in sections:
        results = section.get("results", {})
        summary = section.get("summary", {})
        passed += results.get("passed_checks", [])
        failed += results.get("failed_checks", [])
        skipped += results.get("skipped_checks", [])
        parse_errors += [str(p) for p in results.get("parsing_errors", [])]
        if summary.get("parsing_errors") and not results.get("parsing_errors"):
            parse_errors.append(f"{summary['parsing_errors']} file(s) (count from summary)")
        resource_count += int(summary.get("resource_count", 0))
        version = summary.get("checkov_version", version)

    lines.append(
        f"checkov {version} (bicep): {resource_count} resources, {len(passed)} passed, "
        f"{len(failed)} failed, {len(skipped)} skipped in source, {len(parse_errors)} parsing errors"
    )
    for problem in parse_errors:
        errors.append(f"parsing error: {problem} (keep to the Bicep subset pycep reads)")

    accepted: list[tuple[dict[str, Any], Skip]] = []
    for result in failed + skipped:
        skip = next((s for s in skips if s.matches(result)), None)
        path = str(result.get("file_path", "")).lstrip("/")
        where = f"{result.get('check_id')} {result.get('resource')} ({path})"
        if skip is None:
            kind = (
                "FAILED"
                if result in failed
                else "skipped in source (not accepted: list it in checkov-skips.yaml)"
            )
            errors.append(f"{kind}: {where}: {result.get('check_name')}")
        else:
            skip.used += 1
            accepted.append((result, skip))
    for result, skip in accepted:
        lines.append(
            f"  accepted {result.get('check_id')} {result.get('resource')}: {first_line(skip.reason)}"
        )
    for skip in skips:
        if skip.used == 0:
            lines.append(f"  warning: stale skip {skip.id} {skip.resources or ''} matches nothing; delete it")

    if required_ids:
        seen = {r.get("check_id") for r in passed + failed + skipped}
        missing = [cid for cid in required_ids if cid not in seen]
        for cid in missing:
            errors.append(f"custom check {cid} produced no result (did infra/checks fail to import?)")
        ran = len(required_ids) - len(missing)
        custom_results = sum(1 for r in passed + failed if str(r.get("check_id")) in required_ids)
        lines.append(f"  custom checks: {ran}/{len(required_ids)} ran, {custom_results} results")
    return errors, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("report", type=Path)
    here = Path(__file__).resolve().parent.parent
    parser.add_argument("--skips", type=Path, default=here / "checkov-skips.yaml")
    parser.add_argument("--checks-dir", type=Path, default=here / "checks")
    parser.add_argument("--no-require-custom", action="store_true")
    args = parser.parse_args(argv)

    try:
        report = json.loads(args.report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"infra gate: cannot read checkov report {args.report}: {exc}", file=sys.stderr)
        return 2
    skips, skip_problems = load_skips(args.skips)
    required = () if args.no_require_custom else custom_check_ids(args.checks_dir)
    errors, lines = evaluate(report, skips, required)
    errors = skip_problems + errors
    for line in lines:
        print(line)
    for error in errors:
        print(f"  ERROR {error}")
    print("infra gate: " + ("FAILED" if errors else "OK"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
