"""`python -m tests.faults`: run the fault matrix, print one line per row and a JSON summary."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tests.faults import ROWS, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument(
        "--row", action="append", choices=[r.name for r in ROWS], help="only this row (repeatable)"
    )
    parser.add_argument("--messages", type=int, help="messages per row (default: each row's own)")
    parser.add_argument(
        "--parallel", type=int, default=1, help="rows at a time (each in its own host process)"
    )
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    summary = run(args.row, messages=args.messages, parallel=args.parallel)
    for row in summary["rows"]:
        print(
            f"{'ok ' if row['ok'] else 'BAD'} {row['row']:<28} messages={row['messages']} lost={row['lost']} "
            f"duplicates={row['duplicates']} untruthful={row['untruthful']} "
            f"dlqWithoutEvent={row['deadLetteredWithoutEvent']} drain={row['drainSeconds']}s"
        )
        for problem in row["problems"]:
            print(f"      {problem}")
    for name in summary["notRun"]:
        print(f"NOT RUN {name}: the stand-ins lack what it needs")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
