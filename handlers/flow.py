"""Flow control per Batch account, pure: AIMD on a concurrency limit, plus pauses.

Batch publishes no request rate; it answers 429 (and 503) with Retry-After when an
account is over its limit. Each instance therefore keeps, per account (endpoint
origin), a concurrency limit that it learns (docs/flow-control.md):

- a request may start when the account is not paused and fewer than `limit`
  requests to it are in flight (`start`);
- a 429 or 503 reply halves the limit (`decrease`), at most once per round: a
  round is the requests already started when the limit was last cut, so the 429s
  of one overloaded window count once (TCP NewReno's recovery point, by ticket
  number rather than by time);
- a Retry-After pauses the whole account in this instance until then;
- a success adds `increase`/limit (so +1/4 per round trip of a full window), only
  while the limit was what held requests back (an instance that sends 3 at a time learns
  nothing about 16; RFC 7661's rule for an idle window).

No I/O and no clock: every transition takes `now`, and the states are immutable,
so tests drive many instances against a model of Batch in plain loops.
`handlers/flow_control.py` is the asyncio wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["FlowParams", "FlowState", "Signal", "finish", "signal_of", "start"]


class Signal(Enum):
    """What a reply says about the account's capacity."""

    ok = "ok"  # a reply that is not throttling (2xx, 4xx): the account had room
    throttled = "throttled"  # 429 or 503: over capacity
    neutral = "neutral"  # no reply, 5xx other than 503, an unused slot: says nothing


THROTTLING_STATUS = frozenset({429, 503})


def signal_of(status: int | None) -> Signal:
    if status is None or (status >= 500 and status != 503):
        return Signal.neutral
    return Signal.throttled if status in THROTTLING_STATUS else Signal.ok


@dataclass(frozen=True, slots=True)
class FlowParams:
    # Where an instance starts, and the ceiling: host.json's maxConcurrentCalls, so
    # an unthrottled account runs exactly as it did without flow control.
    initial_limit: float = 16.0
    max_limit: float = 64.0
    min_limit: float = 1.0
    decrease: float = 0.5  # multiplicative factor on a throttled round
    # Additive, per round of `limit` successes. A quarter, not TCP's 1: the windows
    # here are a few requests, and the 429 share of AIMD grows with increase / limit²
    # (docs/flow-control.md: 9 % measured with 1, about 2 % with 1/4).
    increase: float = 0.25


@dataclass(frozen=True, slots=True)
class FlowState:
    """One account's flow in one instance."""

    limit: float
    in_flight: int = 0
    issued: int = 0  # tickets handed out so far; a request's ticket is its number
    recover: int = 0  # throttling of tickets below this is the round already cut
    # No request starts before this (monotonic seconds). -inf, not 0: the monotonic
    # clock's reference point is undefined, so 0 could lie in the future.
    paused_until: float = float("-inf")
    cuts: int = 0  # decreases so far (for the report)

    @classmethod
    def initial(cls, params: FlowParams) -> FlowState:
        return cls(limit=params.initial_limit)


def start(state: FlowState, now: float) -> FlowState | None:
    """The state with one more request in flight (its ticket is `state.issued`),
    or None when it must wait: paused, or the limit is reached."""
    if now < state.paused_until or state.in_flight >= state.limit:
        return None
    return FlowState(
        state.limit, state.in_flight + 1, state.issued + 1, state.recover, state.paused_until, state.cuts
    )


def finish(
    state: FlowState,
    params: FlowParams,
    ticket: int,
    signal: Signal,
    now: float,
    retry_after: float | None = None,
) -> FlowState:
    """The state after request `ticket` ended with `signal` (and Retry-After, if any)."""
    in_flight = state.in_flight - 1
    limit, recover, cuts = state.limit, state.recover, state.cuts
    paused_until = state.paused_until
    if signal is Signal.ok:
        # Only grow while the limit was the constraint: the window was full.
        if state.in_flight >= limit:
            limit = min(params.max_limit, limit + params.increase / limit)
    elif signal is Signal.throttled:
        if ticket >= recover:  # the first throttling of a new round
            limit = max(params.min_limit, limit * params.decrease)
            recover = state.issued
            cuts += 1
        if retry_after is not None:
            paused_until = max(paused_until, now + retry_after)
    return FlowState(limit, in_flight, state.issued, recover, paused_until, cuts)
