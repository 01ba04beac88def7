"""Explicit settlement (`JOB_UPDATES_SETTLEMENT=actions`): the function settles each
message itself through the pre-release settlement extension's `ServiceBusMessageActions`.

With the GA trigger (`host`, the default) none of this runs: the host completes on
return and abandons on raise. With `actions` the host's auto-complete is off, so every
path must settle, once:

    plan's Settle     call
    complete          complete
    reschedule        complete (after the copy is scheduled)
    give-up           deadletter(reason, description)   (after `given-up` is published)
    retry / a raise   abandon                            (`run_settled`, whatever escaped)

The extension's calls are synchronous gRPC round trips to the host; they run in a
worker thread (`asyncio.to_thread`) so the event loop keeps serving the other
invocations in flight. The extension itself is never imported here: `MessageActions`
is its shape, so the default deploy neither needs nor loads it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from handlers.errors import AlreadySettled
from handlers.plan import Settle

__all__ = ["ActionsSettlement", "MessageActions", "Settlement", "run_settled"]

log = logging.getLogger("handlers.settlement")

Offload = Callable[..., Awaitable[Any]]


class MessageActions(Protocol):
    """`azurefunctions.extensions.bindings.servicebus.ServiceBusMessageActions`, as used here."""

    def complete(self, message: Any) -> None: ...

    def abandon(self, message: Any) -> None: ...

    def deadletter(
        self,
        message: Any,
        deadletter_reason: str | None = None,
        deadletter_error_description: str | None = None,
    ) -> None: ...


class Settlement(Protocol):
    """What the handler calls when the plan is done (explicit settlement only)."""

    async def settle(
        self, how: Settle, *, reason: str | None = None, description: str | None = None
    ) -> None: ...


class ActionsSettlement:
    """One message's settlement through `MessageActions`: at most one call that succeeds."""

    def __init__(
        self, actions: MessageActions, message: Any, *, offload: Offload = asyncio.to_thread
    ) -> None:
        self._actions = actions
        self._message = message
        self._offload = offload
        self.settled: str | None = None  # the call that went through: complete / abandon / deadletter
        self.call_seconds: float | None = None  # wall time of that call, off the loop

    async def settle(self, how: Settle, *, reason: str | None = None, description: str | None = None) -> None:
        if how is Settle.give_up:
            await self._call(
                "deadletter",
                self._actions.deadletter,
                self._message,
                deadletter_reason=reason,
                deadletter_error_description=description,
            )
        elif how is Settle.retry:
            await self._call("abandon", self._actions.abandon, self._message)
        else:  # complete, or reschedule once its copy is scheduled
            await self._call("complete", self._actions.complete, self._message)

    async def abandon(self) -> None:
        await self._call("abandon", self._actions.abandon, self._message)

    async def _call(self, name: str, action: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        if self.settled is not None:
            raise AlreadySettled(f"{name} after {self.settled}")
        started = time.perf_counter()
        # A failed call leaves `settled` unset: the caller's abandon is still tried.
        await self._offload(action, *args, **kwargs)
        self.call_seconds = time.perf_counter() - started
        self.settled = name
        log.debug("settled: %s in %.2f ms", name, self.call_seconds * 1000)


async def run_settled[T](settlement: ActionsSettlement, work: Awaitable[T]) -> T:
    """Run one invocation's `work`; if it raises, or returns without settling, abandon.

    With auto-complete off nobody else settles: a crash must not leave the message
    locked until its lock lapses (and, with lock renewal, for up to five minutes).
    The exception is re-raised so the invocation still shows as failed.
    """
    try:
        result = await work
    except BaseException:
        await _abandon_unless_settled(settlement, "the invocation raised")
        raise
    if settlement.settled is None:
        log.error("an invocation returned without settling its message; abandoning it")
        await _abandon_unless_settled(settlement, "nothing settled it")
    return result


async def _abandon_unless_settled(settlement: ActionsSettlement, why: str) -> None:
    if settlement.settled is not None:
        return
    try:
        await settlement.abandon()
    except Exception as exc:  # lock lost, host gone: its lock lapses and it is redelivered
        log.warning("abandoning a message (%s) failed: %s", why, type(exc).__name__)
