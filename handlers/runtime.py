"""Process-wide wiring: one credential, one HTTP pool, one topic sender.

Built lazily on the first message (inside the worker's event loop) and reused
by every invocation after it, so no message pays for a TLS handshake, a token
fetch or an AMQP link that an earlier one already paid for.
"""

from __future__ import annotations

import asyncio
import logging

from azure.core.credentials_async import AsyncTokenCredential

# Imported with the app, not on the first message: azure-identity's import (it loads
# msal and cryptography) was most of the first message's time (docs/first-message.md).
from azure.identity.aio import ManagedIdentityCredential
from azure.servicebus.aio import ServiceBusClient

from handlers import telemetry
from handlers.amqp_open import amqp_tls_context
from handlers.auth import BatchAuth, SharedKey, TokenCache
from handlers.batch_client import BatchClient, RetryPolicy, make_http_client
from handlers.flow_control import FlowControl
from handlers.handler import JobUpdateHandler
from handlers.publisher import Publisher, ServiceBusPublisher
from handlers.requeue import Requeue, ServiceBusRequeue
from handlers.settings import BatchAuthMode, Settings

log = logging.getLogger(__name__)


def make_credential(settings: Settings) -> AsyncTokenCredential:
    """The user-assigned managed identity (the platform's token endpoint)."""
    return ManagedIdentityCredential(client_id=settings.client_id)


def make_batch_client(settings: Settings, credential: AsyncTokenCredential | None) -> BatchClient:
    if settings.auth_mode is BatchAuthMode.shared_key:
        assert settings.account_name and settings.account_key  # checked by Settings
        key = SharedKey.from_base64(settings.account_name, settings.account_key.get_secret_value())
        auth = BatchAuth(settings.allowed_endpoints, shared_key=key)
    else:
        assert credential is not None
        auth = BatchAuth(settings.allowed_endpoints, tokens=TokenCache(credential, settings.token_scope))
    http = make_http_client(
        ca_bundle=settings.ca_bundle,
        timeout=settings.http_timeout_seconds,
        max_connections=settings.max_connections,
        auth=auth,
    )
    policy = RetryPolicy(max_attempts=settings.max_attempts, attempt_timeout=settings.http_timeout_seconds)
    return BatchClient(http, policy, flow=FlowControl() if settings.flow_control else None)


def make_servicebus_client(settings: Settings, credential: AsyncTokenCredential | None) -> ServiceBusClient:
    """One client for the topic senders and the queue sender (copies); the SDK opens an
    AMQP connection per sender (it shares none by default)."""
    tls = amqp_tls_context()  # built at import, off the event loop (handlers/amqp_open.py)
    if settings.servicebus_connection_string is not None:
        return ServiceBusClient.from_connection_string(
            settings.servicebus_connection_string.get_secret_value(), ssl_context=tls
        )
    assert settings.servicebus_namespace is not None and credential is not None
    return ServiceBusClient(settings.servicebus_namespace, credential, ssl_context=tls)


def make_publisher(settings: Settings, client: ServiceBusClient) -> Publisher:
    return ServiceBusPublisher(
        client,
        settings.outcome_topic,
        sessions=settings.outcome_topic_requires_session,
        links=settings.publish_links,
    )


def make_requeue(settings: Settings, client: ServiceBusClient) -> Requeue | None:
    if not settings.scheduled_retries or settings.sessions_enabled:
        return None
    return ServiceBusRequeue(client, settings.job_updates_queue)


class Runtime:
    """Everything long-lived a handler needs, with one place to close it."""

    def __init__(
        self,
        settings: Settings,
        handler: JobUpdateHandler,
        credential: AsyncTokenCredential | None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self._credential = credential
        self._warming: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, publisher: Publisher | None = None) -> Runtime:
        needs_identity = settings.auth_mode is BatchAuthMode.entra or (
            publisher is None and settings.servicebus_connection_string is None
        )
        credential = make_credential(settings) if needs_identity else None
        batch = make_batch_client(settings, credential)
        requeue: Requeue | None = None
        if publisher is None:
            client = make_servicebus_client(settings, credential)
            publisher = make_publisher(settings, client)
            requeue = make_requeue(settings, client)
        if settings.telemetry_enabled and not telemetry.ENABLED:
            telemetry.enable()  # the global providers: the worker's Azure Monitor distro
        handler = JobUpdateHandler(settings, batch, publisher, requeue=requeue)
        return cls(settings, handler, credential)

    async def warm(self) -> None:
        """Open the topic link, fetch the Batch token and open a Batch connection,
        all at once, so the first message does not wait for them one after another.

        Never raises: a part that fails is opened lazily by the first message, as
        without warming. Only the configured token scope is fetched and only the
        default Batch endpoint (allow-listed by Settings) is connected to, with no
        credential on that request.
        """
        starts: list[asyncio.Future[None]] = []
        # Optional on the Publisher interface: ServiceBusPublisher has it, doubles need not.
        start_publisher = getattr(self.handler.publisher, "start_warming", None)
        if start_publisher is not None:
            starts.append(start_publisher())
        starts.append(asyncio.ensure_future(self.handler.batch.warm(self.settings.endpoint_when_unnamed)))
        for outcome in await asyncio.gather(*starts, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("warming up failed (%s); the first message opens it", type(outcome).__name__)
            elif isinstance(outcome, BaseException):
                raise outcome  # cancellation

    def start_warming(self) -> None:
        if self._warming is None:
            self._warming = asyncio.create_task(self.warm())

    async def aclose(self) -> None:
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
            await asyncio.wait([self._warming])
        await self.handler.batch.aclose()
        if self.handler.requeue is not None:
            await self.handler.requeue.aclose()
        await self.handler.publisher.aclose()  # closes the shared Service Bus client
        if self._credential is not None:
            await self._credential.close()


_runtime: Runtime | None = None
_runtime_lock = asyncio.Lock()


async def get_runtime() -> Runtime:
    """The process's Runtime, built on first use from the app settings."""
    global _runtime
    if _runtime is None:
        async with _runtime_lock:
            if _runtime is None:
                _runtime = Runtime.from_settings(Settings())  # from env
                # In the background: this first message's own work joins what is opening.
                _runtime.start_warming()
    return _runtime


async def reset_runtime() -> None:
    """Close and forget the process Runtime (tests, local host shutdown)."""
    global _runtime
    runtime, _runtime = _runtime, None
    if runtime is not None:
        await runtime.aclose()
