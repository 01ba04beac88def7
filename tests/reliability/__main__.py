"""`python -m tests.reliability [--cases N] [--mutation] [--json PATH]`: regenerate docs/reliability.md."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tests.reliability import DOC, SOAK_CASES, collect, render


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    parser.add_argument("--cases", type=int, default=SOAK_CASES, help="fuzz cases (default %(default)s)")
    parser.add_argument("--mutation", action="store_true", help="re-run the mutation test as well")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the suites log on purpose (canaries, faults)
    figures = collect(cases=args.cases, rerun_mutation=args.mutation)
    DOC.write_text(render(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {DOC.relative_to(DOC.parents[1])}")
    bad = (
        figures["fuzz"].get("escapes")
        or figures["fuzz"].get("invalidReachedBatch")
        or figures["fuzz"].get("checkDisagreements")
        or figures["leaks"].get("canariesLeaked")
        or figures["leaks"].get("hostileEndpointsLeaked")
        or figures["leaks"].get("redirectLeaks")
        or not figures["faults"].get("ok")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
