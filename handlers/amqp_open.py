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
`client_ready_async`; pinned with the SDK version and by tests/unit/test_warm_up.py.

Also here: the AMQP TLS context, built once and off the event loop. Given none,
pyamqp builds one per connection, loading certifi's CA bundle on the event loop
(60-120 ms of the first message's critical path here, even for the local broker
that does not use TLS).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import certifi
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


def certifi_tls_context() -> ssl.SSLContext:
    """What pyamqp builds when given no context: TLS client, hostname checked,
    certificates required, certifi's bundle as the trust store."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(certifi.where())
    return context


# Started with the import, on another thread: loading the bundle is C work that
# releases the GIL, so it overlaps the rest of the import instead of the first message.
_tls_builder = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="amqp-tls")
_TLS_CONTEXT = _tls_builder.submit(certifi_tls_context)
_tls_builder.shutdown(wait=False)


def amqp_tls_context() -> ssl.SSLContext:
    """The process's AMQP TLS context (one, shared by every connection)."""
    return _TLS_CONTEXT.result()
