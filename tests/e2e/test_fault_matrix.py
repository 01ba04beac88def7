"""Every fault row, end to end over real sockets, with the books reconciled.

Each row must come out with 0 lost messages, 0 duplicate terminal events, 0
untruthful outcomes and no dead letter without its `given-up` event, plus its
own expectations (tests/faults/matrix.py). The rows run four at a time, each
function in its own host process (as `python -m tests.faults --parallel 4`);
the same rows feed docs/reliability.md.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.faults import ROWS, Row, RowResult, run_matrix, runnable

PARALLEL = 4


@pytest.fixture(scope="module")
def results() -> dict[str, RowResult]:
    assert all(runnable(row) for row in ROWS), [row.name for row in ROWS if not runnable(row)]
    return {r.row: r for r in asyncio.run(run_matrix(parallel=PARALLEL))}


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_fault_row_keeps_every_promise(row: Row, results: dict[str, RowResult]) -> None:
    result = results[row.name]
    summary = result.summary()
    assert result.ledger.lost == (), summary
    assert result.ledger.duplicates == (), summary
    assert result.ledger.untruthful == (), summary
    assert result.ledger.dead_lettered_without_event == (), summary
    assert result.ledger.left_on_queue == 0, summary
    assert result.problems == (), summary
    assert result.ledger.events == result.ledger.messages
