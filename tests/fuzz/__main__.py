"""Soak: `python -m tests.fuzz --cases N [--seed S] [--json PATH]`.

Prints the JSON summary (and writes it to PATH); exits 1 when any property broke.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.fuzz import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="generated cases (default 100000)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: a fresh seed)")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    if args.cases < 1:
        parser.error("--cases must be at least 1")
    summary = run(args.cases, args.seed)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")
    broken = summary["escapes"] + summary["invalidReachedBatch"] + summary["checkDisagreements"]
    return 1 if broken + summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
