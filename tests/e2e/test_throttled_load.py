"""The throttled-account load test (bench/throttled.py) at a tiny size, in CI.

It asserts only the books, never a time or a rate (those belong to the bench and
docs/flow-control.md): every message has exactly one truthful outcome event, none
is lost, duplicated or left on the queue, no host process crashed, with flow
control on and off, and account A really was throttled (so the gated paths ran).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_throttled", ROOT / "bench" / "throttled.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode", ["flow-on", "flow-off"])
async def test_throttled_backlog_loses_nothing(mode: str, tmp_path: Path) -> None:
    bench = _bench()
    # A capacity far below what two hosts offer: 429s are certain, however slow the machine.
    args = bench.parse_args(
        [
            *("--modes", mode, "--hosts", "2", "--messages", "40", "--capacity", "8"),
            *("--latency-ms", "20", "--stream-rate", "2", "--max-seconds", "240"),
        ]
    )
    result = await bench.run_mode(args, mode, tmp_path)
    books = result["books"]
    assert result["crashed"] == [], result
    assert books["lost"] == 0 and books["duplicates"] == 0 and books["untruthful"] == 0, books
    assert books["leftOnQueue"] == 0 and books["deadLetteredWithoutEvent"] == 0, books
    assert books["events"] == books["messages"], books
    assert result["clean"], books
    throttled = result["throttled"]
    assert throttled["lost"] == 0 and result["unthrottled"]["lost"] == 0
    assert throttled["share429"] > 0, "account A was never throttled: the test proves nothing"
    assert throttled["deliveriesPerMessage"] >= 1
