"""Every fault row, end to end over real sockets, with the books reconciled.

Each row must come out with 0 lost messages, 0 duplicate terminal events, 0
untruthful outcomes and no dead letter without its `given-up` event, plus its
own expectations (tests/faults/matrix.py). The same rows feed docs/reliability.md
(`python -m tests.faults`).
"""

from __future__ import annotations

import pytest

from tests.faults import ROWS, Row, run_row, runnable


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
async def test_fault_row_keeps_every_promise(row: Row) -> None:
    assert runnable(row), f"the stand-ins lack {row.needs!r}, which row {row.name} needs"
    result = await run_row(row)
    summary = result.summary()
    assert result.ledger.lost == (), summary
    assert result.ledger.duplicates == (), summary
    assert result.ledger.untruthful == (), summary
    assert result.ledger.dead_lettered_without_event == (), summary
    assert result.ledger.left_on_queue == 0, summary
    assert result.problems == (), summary
    assert result.ledger.events == result.ledger.messages
