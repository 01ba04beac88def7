"""Run the Batch emulator for a local run of the function.

    python -m standins.batch --port 8443 --seed jobs.json --token-signing-key "$KEY"
    python -m standins.batch --fault '503:job=nightly-render,times=always' --admin-port 0

Prints one JSON line (endpoint, CA path, account name and key, and the admin URL when
--admin-port is given) on stdout, then serves until SIGTERM or SIGINT. Point
BATCH_ALLOWED_ENDPOINTS at the endpoint and BATCH_CA_BUNDLE at the CA path; give the
same signing key to `python -m standins.identity` so its tokens are accepted here.

--fault SPEC (repeatable) queues a fault at start-up; --admin-port serves a loopback
admin endpoint (emulator only) to add, list and clear faults while it runs. Spec
syntax and endpoints: standins/batch/admin.py and the README beside it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from types import FrameType

from standins.batch.admin import FaultAdmin, parse_fault_spec
from standins.batch.emulator import BatchEmulator
from standins.batch.faults import Fault


def _fault(spec: str) -> Fault:
    try:
        return parse_fault_spec(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="SPEC",
        help="queue a fault at start-up, e.g. '429:job=j1,method=PATCH,times=3,retry-after=2', "
        "'500:times=2', 'delay:seconds=5', 'reset' (repeatable; in order)",
    )
    parser.add_argument(
        "--admin-port",
        type=int,
        metavar="N",
        help="also serve the fault admin endpoint on 127.0.0.1:N (0: any free port); emulator only",
    )
    parser.add_argument(
        "--capacity-rps",
        type=float,
        help="the account's request capacity per second; past it 429 TooManyRequests with Retry-After",
    )
    parser.add_argument("--capacity-burst", type=float, help="token bucket size (default: 1 s worth)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="time the service takes over each admitted request"
    )
    parser.add_argument(
        "--record",
        help="on shutdown, write the request log and the seeded jobs here as JSON (load tests)",
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
        capacity_rps=args.capacity_rps,
        capacity_burst=args.capacity_burst,
        latency_seconds=args.latency_ms / 1000,
    )
    seeded: list[str] = []
    with ExitStack() as running:
        running.enter_context(emulator)
        if args.seed:
            seeded = [job["id"] for job in emulator.seed(args.seed)]
        for fault in args.fault:
            emulator.inject(fault)
        info = {
            "endpoint": emulator.endpoint,
            "ca_path": emulator.ca_path,
            "account_name": emulator.account_name,
            "account_key": emulator.account_key,
        }
        if args.admin_port is not None:
            info["admin"] = running.enter_context(FaultAdmin(emulator, port=args.admin_port)).url
        print(json.dumps(info), flush=True)
        while not stop.wait(0.5):
            pass
        if args.record:
            write_record(emulator, seeded, args.record)
    return 0


def write_record(emulator: BatchEmulator, job_ids: Sequence[str], path: str) -> None:
    """What a load test reconciles against: every request, and each job's end state."""
    requests = [
        {
            "at": r.received_at.timestamp(),
            "method": r.method,
            "jobId": r.job_id,
            "clientRequestId": r.headers.get("client-request-id"),
            "status": r.status,
        }
        for r in emulator.requests
    ]
    jobs = {job_id: emulator.job(job_id) for job_id in job_ids}
    with open(path, "w", encoding="utf-8") as out:
        json.dump({"requests": requests, "jobs": jobs}, out)


if __name__ == "__main__":
    sys.exit(main())
