"""The backlog soak (bench/soak.py) at a tiny size, in CI: every message completes, exactly
one outcome event each stays on the subscription, nothing is left on the queue. It asserts
only the books, never a time, a rate or a memory figure (those belong to the bench)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restored_environ() -> Iterator[None]:
    saved = dict(os.environ)  # the bench sets the function's app settings process-wide
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def test_a_small_soak_completes_every_message_with_one_stored_outcome_and_no_loss(
    restored_environ: None,
) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.soak import soak

    result = await soak(messages=2000, concurrency=16, windows=2, ahead=1000)
    assert result["completed"] == 2000
    assert result["failures"] == 0 and result["settleFailures"] == 0
    assert result["leftOnQueue"] == 0
    assert result["eventsOnAllOutcomes"] == 2000  # one each: none lost, none doubled
    assert len(result["windows"]) >= 2
    assert all(w["stored"] >= w["completed"] for w in result["windows"])
