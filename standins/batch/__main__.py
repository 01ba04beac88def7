"""Run the Batch emulator for a local run of the function.

    python -m standins.batch --port 8443 --seed jobs.json --token-signing-key "$KEY"

Prints one JSON line (endpoint, CA path, account name and key) on stdout, then
serves until SIGTERM or SIGINT. Point BATCH_ALLOWED_ENDPOINTS at the endpoint and
BATCH_CA_BUNDLE at the CA path; give the same signing key to
`python -m standins.identity` so its tokens are accepted here.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from standins.batch.emulator import BatchEmulator


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m standins.batch", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--seed", help="JSON file: a list of jobs or {'jobs': [...]}")
    parser.add_argument("--account-name", default="localbatch")
    parser.add_argument("--account-key", help="base64 Shared Key (default: random)")
    parser.add_argument(
        "--token-signing-key",
        help="HS256 key shared with the identity stand-in (UTF-8); without it bearer tokens are refused",
    )
    parser.add_argument(
        "--accept-sdk-shared-key-variant",
        action="store_true",
        help="also accept azure-batch 15.1's Shared Key signing quirks (see README)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    emulator = BatchEmulator(
        account_name=args.account_name,
        account_key=args.account_key,
        token_signing_key=args.token_signing_key.encode() if args.token_signing_key else None,
        accept_sdk_shared_key_variant=args.accept_sdk_shared_key_variant,
        port=args.port,
    )
    with emulator:
        if args.seed:
            emulator.seed(args.seed)
        info = {
            "endpoint": emulator.endpoint,
            "ca_path": emulator.ca_path,
            "account_name": emulator.account_name,
            "account_key": emulator.account_key,
        }
        print(json.dumps(info), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
