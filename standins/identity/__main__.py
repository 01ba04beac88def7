"""Run the managed-identity token endpoint for a local run of the function.

    python -m standins.identity --signing-key "$KEY" [--port N] [--lifetime 3600]

Prints one JSON line with IDENTITY_ENDPOINT and IDENTITY_HEADER (the app
settings to give the function) and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from standins.identity.endpoint import TokenEndpoint


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standins.identity", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--signing-key", required=True, help="HS256 key shared with the Batch emulator (UTF-8)"
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=int, default=3600, help="token lifetime in seconds")
    parser.add_argument("--identity-header", help="the IDENTITY_HEADER secret (default: random)")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    endpoint = TokenEndpoint(
        signing_key=args.signing_key.encode(),
        lifetime_seconds=args.lifetime,
        identity_header=args.identity_header,
        port=args.port,
    )
    with endpoint:
        print(json.dumps(endpoint.env), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
