"""The asyncio side of flow control: one gate per Batch account, FIFO waiters.

The arithmetic is `handlers/flow.py`'s; this module only holds each account's
current `FlowState`, queues the requests that cannot start yet and wakes them
when a slot frees or a pause ends. Accounts are independent: a paused account's
waiters never hold up a request to another one.

Clock: `time.monotonic()`, which is also the event loop's clock (asyncio's
`loop.time()`), so deadlines and timers agree.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time

from handlers.flow import FlowParams, FlowState, Signal, finish, start

__all__ = ["AccountGate", "FlowControl", "origin_of"]


def origin_of(url: str) -> str:
    """`https://acct.region.batch.azure.com/jobs/x?...` -> its origin (the account)."""
    slash = url.find("/", 8)  # past "https://"
    return url if slash < 0 else url[:slash]


class AccountGate:
    """Admission to one account: `acquire` a ticket, `release` it with the reply's signal."""

    __slots__ = ("_timer", "_waiters", "params", "state")

    def __init__(self, params: FlowParams) -> None:
        self.params = params
        self.state = FlowState.initial(params)
        self._waiters: collections.deque[asyncio.Future[int]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def try_acquire(self, now: float) -> int | None:
        """A ticket at once, or None (then `acquire`). Synchronous: the unthrottled fast
        path costs no coroutine."""
        state = self.state
        if not self._waiters:
            started = start(state, now)
            if started is not None:
                self.state = started
                return state.issued
        return None

    async def acquire(self, deadline: float) -> int | None:
        """A ticket, or None when none came before `deadline` (monotonic seconds)."""
        ticket = self.try_acquire(time.monotonic())
        if ticket is not None:
            return ticket
        if self.state.paused_until >= deadline:
            return None  # a wait that would end past the budget is not started
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._arm_timer()
        try:
            async with asyncio.timeout_at(deadline):
                return await future
        except TimeoutError:
            self._abandon(future)
            return None
        except BaseException:  # cancelled: the host is stopping, or an outer timeout
            self._abandon(future)
            raise

    def release(self, ticket: int, signal: Signal, retry_after: float | None = None) -> None:
        self.state = finish(self.state, self.params, ticket, signal, time.monotonic(), retry_after)
        if self._waiters:
            self._wake()

    def _abandon(self, future: asyncio.Future[int]) -> None:
        if future.done() and not future.cancelled():
            # Woken with a ticket, but the wait ended before the task took it: give it back.
            self.release(future.result(), Signal.neutral)
            return
        future.cancel()
        with contextlib.suppress(ValueError):  # already popped by a wake-up
            self._waiters.remove(future)

    def _wake(self) -> None:
        now = time.monotonic()
        waiters = self._waiters
        while waiters:
            started = start(self.state, now)
            if started is None:
                break
            future = waiters.popleft()
            if future.done():  # cancelled while queued
                continue
            ticket = self.state.issued
            self.state = started
            future.set_result(ticket)
        self._arm_timer()

    def _arm_timer(self) -> None:
        """While waiters sit behind a pause, wake them when it ends."""
        paused_until = self.state.paused_until
        if not self._waiters or paused_until <= time.monotonic():
            return
        timer = self._timer
        if timer is not None and not timer.cancelled() and timer.when() >= paused_until:
            return
        if timer is not None:
            timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(paused_until, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._wake()


class FlowControl:
    """Every account's gate in this process, created on first use."""

    __slots__ = ("_gates", "params")

    def __init__(self, params: FlowParams | None = None) -> None:
        self.params = params or FlowParams()
        self._gates: dict[str, AccountGate] = {}

    def gate(self, url: str) -> AccountGate:
        origin = origin_of(url)
        gate = self._gates.get(origin)
        if gate is None:
            gate = self._gates[origin] = AccountGate(self.params)
        return gate

    def states(self) -> dict[str, FlowState]:
        return {origin: gate.state for origin, gate in self._gates.items()}
