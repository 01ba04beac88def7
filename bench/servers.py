"""The bench's server process: two Batch emulators and the token endpoint, with counters.

    python -m bench.servers --signing-key KEY --latency-ms 20

Runs apart from every measured client so that only the client's CPU is counted. One
emulator answers at once (CPU per message), the other after `--latency-ms` (latency
at a realistic Batch delay). Prints one JSON line (endpoints, one CA bundle trusted
by both, the identity env), then answers each `stats` line on stdin with one JSON
line: TCP connections each emulator accepted, Batch requests and token requests since
the previous `stats`. Each `stats` also forgets the emulators' request logs and
re-seeds the jobs, so a 100,000-message run does not grow the server. EOF stops it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web_protocol

from standins.batch import BatchEmulator
from standins.identity import TokenEndpoint

JOBS = 16

_accepted: Counter[int] = Counter()
_lock = threading.Lock()
_original_connection_made = web_protocol.RequestHandler.connection_made


def _counting_connection_made(self: web_protocol.RequestHandler, transport: Any) -> None:
    # Counted where the server accepts: independent of how each client pools.
    port = transport.get_extra_info("sockname")[1]
    with _lock:
        _accepted[port] += 1
    _original_connection_made(self, transport)


def seed_jobs(emulator: BatchEmulator) -> None:
    for i in range(JOBS):
        emulator.add_job({"id": f"bench-{i}", "priority": 0})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signing-key", required=True)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    web_protocol.RequestHandler.connection_made = _counting_connection_made  # type: ignore[method-assign]
    key = args.signing_key.encode()
    with (
        TokenEndpoint(signing_key=key) as tokens,
        BatchEmulator(token_signing_key=key) as plain,
        BatchEmulator(token_signing_key=key, latency_seconds=args.latency_ms / 1000) as delayed,
    ):
        bundle = Path(tempfile.mkdtemp(prefix="bench-ca-")) / "ca.pem"
        bundle.write_text(Path(plain.ca_path).read_text() + Path(delayed.ca_path).read_text())
        for emulator in (plain, delayed):
            seed_jobs(emulator)
        info = {
            "endpoints": {"plain": plain.endpoint, "delayed": delayed.endpoint},
            "ca_bundle": str(bundle),
            "env": tokens.env,
            "latency_ms": args.latency_ms,
        }
        print(json.dumps(info), flush=True)
        seen: Counter[int] = Counter()
        tokens_seen = 0
        for line in sys.stdin:
            if line.strip() != "stats":
                continue
            with _lock:
                accepted = Counter(_accepted)
            token_total = sum(tokens.requests.values())
            stats = {
                "connections": {
                    name: accepted[emu.port] - seen[emu.port]
                    for name, emu in (("plain", plain), ("delayed", delayed))
                },
                "batch_requests": {"plain": len(plain.requests), "delayed": len(delayed.requests)},
                "token_requests": token_total - tokens_seen,
            }
            seen, tokens_seen = accepted, token_total
            for emulator in (plain, delayed):
                emulator.reset()
                seed_jobs(emulator)
            print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
