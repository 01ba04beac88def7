"""Open a Service Bus sender's AMQP link without the SDK's 50 ms polling.

`ServiceBusSender._open` (azure-servicebus 7.15, aio) asks the handler
`client_ready_async()` and sleeps 50 ms after every "not yet": each handshake
step (CBS put-token, its reply, link attach, its reply) costs a sleep, about
0.45 s before the first send, with 21 ms of CPU (docs/publish-profile.md).
`client_ready_async` already waits on the socket for the next frame, so asking
again at once loses nothing: wrapped here, it returns only when the handler is
ready (or raises), and the SDK's own loop passes on its first check. Deadlines,
retries and cleanup stay the SDK's (its `_open` bounds the wrapped call).

Private surface used: `ServiceBusSender._create_handler` and the handler's
`client_ready_async`; pinned with the SDK version and by
tests/unit/test_amqp_open.py.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from azure.servicebus.aio import ServiceBusSender

# Between two "not yet" answers that came back without waiting (a frame that did
# not complete the step): a yield, not a fixed sleep.
_RECHECK_SECONDS = 0.001


def ready_without_polling(client_ready: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
    @functools.wraps(client_ready)
    async def ready() -> bool:
        while not await client_ready():  # noqa: ASYNC110 - readiness is polled state, not an event
            await asyncio.sleep(_RECHECK_SECONDS)
        return True

    return ready


def open_without_polling(sender: ServiceBusSender) -> ServiceBusSender:
    """Install the hook on `sender`: every handler it creates (first open, reconnect)."""
    create = sender._create_handler

    @functools.wraps(create)
    def create_handler(auth: Any) -> None:
        create(auth)
        handler = sender._handler
        if handler is not None and hasattr(handler, "client_ready_async"):
            handler.client_ready_async = ready_without_polling(handler.client_ready_async)  # type: ignore[method-assign]

    sender._create_handler = create_handler  # type: ignore[method-assign]
    return sender
