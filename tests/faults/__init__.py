"""The fault matrix and its accounting checker (docs/reliability.md).

    python -m tests.faults [--row NAME ...] [--messages N] [--parallel N] [--json PATH]

`run()` is what the reliability report calls; `tests/e2e/test_fault_matrix.py`
runs every row in CI.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.faults.matrix import ROWS, Row, RowResult, run_matrix, run_row, runnable

__all__ = ["ROWS", "Row", "RowResult", "run", "run_matrix", "run_row", "runnable"]


def run(rows: list[str] | None = None, *, messages: int | None = None, parallel: int = 1) -> dict[str, Any]:
    results = asyncio.run(run_matrix(rows, messages=messages, parallel=parallel))
    skipped = [row.name for row in ROWS if not runnable(row) and (not rows or row.name in rows)]
    return {
        "rows": [r.summary() for r in results],
        "notRun": skipped,
        "ok": all(r.ok for r in results) and not skipped,
    }
