"""`python -m localrun fault`: add, list and clear Batch emulator faults while `serve` runs.

  python -m localrun fault '503:job=nightly-render,times=always'   # add (several specs: in order)
  python -m localrun fault                                          # list what is pending
  python -m localrun fault --clear                                  # drop every pending fault
  python -m localrun fault --requests 10                            # the emulator's last 10 requests

Talks to the emulator's loopback admin endpoint (emulator only; nothing like it exists
in Azure), found in the `serve` state file or given with --admin. Spec syntax: a kind
(429, 503, another status, delay, reset) and key=value options (job, method, times,
retry-after, code, seconds, delay); see docs/local-run.md. Exit 0 when done, 1 when the
emulator refused a spec or could not be reached, 2 for a bad option.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx

from handlers.errors import UsageError
from localrun.serve import STATE, read_state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localrun fault",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("specs", nargs="*", metavar="SPEC", help="fault specs to add, in order")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--state", type=Path, help="a serve state file (default .localrun/serve.json)")
    where.add_argument("--admin", help="the admin endpoint's URL, e.g. http://127.0.0.1:7081")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--clear", action="store_true", help="drop every pending fault")
    what.add_argument("--requests", type=int, metavar="N", help="show the emulator's last N requests")
    args = parser.parse_args(argv)
    if args.specs and (args.clear or args.requests is not None):
        parser.error("give specs to add, or --clear, or --requests, not several")
    try:
        admin = args.admin or read_state(args.state or STATE)["faultAdmin"]
    except (UsageError, KeyError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    try:
        with httpx.Client(base_url=admin, timeout=10) as client:
            if args.specs:
                reply = client.post("/faults", content="\n".join(args.specs).encode())
            elif args.clear:
                reply = client.delete("/faults")
            elif args.requests is not None:
                reply = client.get("/requests", params={"last": max(args.requests, 0)})
            else:
                reply = client.get("/faults")
    except httpx.HTTPError as exc:
        print(f"{parser.prog}: {admin}: {exc} (is `python -m localrun serve` running?)", file=sys.stderr)
        return 1
    print(json.dumps(reply.json(), indent=2))
    return 0 if reply.is_success else 1


if __name__ == "__main__":
    sys.exit(main())
