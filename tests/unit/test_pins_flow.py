"""Pins for handlers/flow.py: each rule from both sides (docs/mutation-testing.md)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.flow import FlowParams, FlowState, Signal, finish, signal_of, start

P = FlowParams()


def test_the_boundary_between_a_client_error_and_a_server_error() -> None:
    # 499 is a reply that had room; 500 says nothing about capacity; 503 throttles.
    assert signal_of(499) is Signal.ok
    assert signal_of(500) is Signal.neutral
    assert signal_of(503) is Signal.throttled


def test_growth_under_full_windows_stops_at_the_ceiling_of_64() -> None:
    # host.json allows 16 calls; the ceiling is four windows of that, and no more.
    state = FlowState.initial(P)
    assert state.limit == 16.0
    for _ in range(200_000):
        nxt = start(state, 0.0)
        if nxt is None:  # the window is full: one success frees a slot and may grow it
            state = finish(state, P, state.issued - 1, Signal.ok, 0.0)
            if state.limit == P.max_limit:
                break
        else:
            state = nxt
    assert state.limit == 64.0
    full = state
    while (nxt := start(full, 0.0)) is not None:
        full = nxt
    assert finish(full, P, full.issued - 1, Signal.ok, 0.0).limit == 64.0


def test_a_fresh_state_is_empty_and_not_paused_at_any_clock_reading() -> None:
    fresh = FlowState.initial(FlowParams(initial_limit=1.0))
    # The monotonic clock's origin is undefined: even a negative reading may start.
    first = start(fresh, -1e9)
    assert first is not None and first.in_flight == 1
    assert start(first, -1e9) is None  # one in flight fills a limit of one


@pytest.mark.parametrize("record", [FlowParams(), FlowState(limit=4.0)])
def test_the_records_are_immutable(record: object) -> None:
    field = dataclasses.fields(record)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, field, 1.0)


@given(
    pause=st.floats(0.0, 100.0),
    now=st.floats(0.0, 100.0),
    retry_after=st.floats(0.0, 100.0),
)
def test_a_retry_after_only_ever_extends_the_pause(pause: float, now: float, retry_after: float) -> None:
    state = start(FlowState(limit=4.0, paused_until=0.0), 0.0)
    assert state is not None
    state = dataclasses.replace(state, paused_until=pause)
    after = finish(state, P, 0, Signal.throttled, now, retry_after)
    assert after.paused_until == max(pause, now + retry_after)
