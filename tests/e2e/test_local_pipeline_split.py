"""The local pipeline bench in split mode (bench/local_pipeline.py --split) at a tiny size:
the broker and the Batch emulator + token endpoint run as child processes, the host loop
and the function in the bench. It asserts only the books (every message completed with
one outcome event, no failure, a CPU figure for every group), never a time or a rate:
those belong to the bench's own output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 50
CONCURRENCY = (4, 16)
GROUPS = {"broker", "emulator+token", "host+function"}


def test_split_mode_completes_every_message_and_measures_every_group(tmp_path: Path) -> None:
    out = tmp_path / "runs.json"
    bench = subprocess.Popen(
        [
            sys.executable,
            "bench/local_pipeline.py",
            "--split",
            "--messages",
            str(MESSAGES),
            "--concurrency",
            *map(str, CONCURRENCY),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        stdout, stderr = bench.communicate(timeout=120)
    finally:
        bench.kill()
    assert bench.returncode == 0, stderr[-3000:]
    runs = json.loads(out.read_text())
    assert [run["concurrency"] for run in runs] == list(CONCURRENCY)
    for run in runs:
        assert run["messages"] == MESSAGES
        assert run["failures"] == 0 and run["settle_failures"] == 0 and run["receiver_failures"] == 0, run
        # Each run's outcome events, taken off the subscriptions after it: one per message,
        # so every message completed and none was published twice or carried over.
        assert run["outcome_events"] == {"job-outcomes/all-outcomes": MESSAGES, "job-outcomes/failures": 0}
        for group in GROUPS:
            assert run["cpu_ms_per_message"][group] > 0, (group, run)
    assert len(stdout.strip().splitlines()) == len(CONCURRENCY)
