"""The local pipeline bench's HTTP stand-ins in their own process: the token endpoint and
one Batch emulator, seeded as bench/local_pipeline.py's in-process Stack seeds them.

    python -m bench.pipeline_http --jobs 50

Used by `python bench/local_pipeline.py --split`, so that the emulator's CPU is not under
the host loop's GIL. Prints one JSON line (pid, Batch endpoint, CA bundle, the identity
app settings), then serves until stdin reaches EOF (the parent went away or closed it)
or SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from localrun.common import CLIENT_ID, SIGNING_KEY
from standins.batch import BatchEmulator
from standins.identity import TokenEndpoint


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="jobs job-0 .. job-N-1 (default 50)")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF
        stop.set()

    with (
        TokenEndpoint(signing_key=SIGNING_KEY, client_id=CLIENT_ID) as tokens,
        BatchEmulator(token_signing_key=SIGNING_KEY) as emu,
    ):
        for j in range(args.jobs):
            emu.add_job({"id": f"job-{j}", "priority": 0})
        info = {"pid": os.getpid(), "endpoint": emu.endpoint, "ca_path": emu.ca_path, "env": tokens.env}
        print(json.dumps(info), flush=True)
        threading.Thread(target=watch_stdin, name="stdin-eof", daemon=True).start()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
