"""`python -m tests.leaks [--json PATH]`: run the leak suite, print its counts.

Exits 1 when anything leaked (or a control failed), so it can gate a pipeline too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.leaks import run


def failures(report: dict[str, object]) -> list[str]:
    zero = ("canariesLeaked", "hostileEndpointsLeaked", "redirectLeaks", "tokensLeaked", "hostileAccepted")
    bad = [f"{key}={report[key]}" for key in zero if report[key]]
    if report["controlsApplied"] != report["controls"]:
        bad.append("a control message did not reach the emulator")
    if not report["guardsOffTokensAtCanary"]:
        bad.append("with the guards off no token reached the canary: the harness sees nothing")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.leaks", description=__doc__)
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    report = run()
    text = json.dumps(report, indent=2, sort_keys=False)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    bad = failures(report)
    for line in bad:
        print(f"LEAK CHECK FAILED: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
