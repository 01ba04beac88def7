"""Warming up on the first message (Runtime.warm, ServiceBusPublisher.start_warming,
handlers/amqp_open.py), socket-free: httpx.MockTransport for Batch, a fake
credential, fake Service Bus client and sender.

What must hold: the three starts (topic link, token, Batch connection) run at
once, not one after another; a warm-up that fails never fails the first message;
the token fetched is the configured scope's only, and the Batch connection goes
only to the default allow-listed endpoint with no credential on it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from azure.core.credentials import AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError
from azure.servicebus import ServiceBusMessageBatch
from hypothesis import given
from hypothesis import strategies as st

from handlers.amqp_open import open_without_polling, ready_without_polling
from handlers.auth import BatchAuth, TokenCache
from handlers.batch_client import BatchClient, RetryPolicy
from handlers.events import build_event
from handlers.handler import Inbound, JobUpdateHandler
from handlers.outcomes import Outcome, Result
from handlers.publisher import ServiceBusPublisher
from handlers.runtime import Runtime
from handlers.settings import Settings
from tests.fakes import FakeCredential, RecordingPublisher

ENDPOINT = "https://acct.westeurope.batch.azure.com"
OTHER = "https://other.westeurope.batch.azure.com"
SETTINGS: dict[str, Any] = {
    "BATCH_ALLOWED_ENDPOINTS": ENDPOINT,
    "ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
    "BATCH_RETRY_BUDGET_SECONDS": 2,
    "BATCH_MAX_ATTEMPTS": 2,
    "BATCH_HTTP_TIMEOUT_SECONDS": 5,
}
# A deadlock guard, not a speed check: sequential starts would never pass the barrier.
GUARD_SECONDS = 10


class GatedCredential(FakeCredential):
    def __init__(self, before: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self.before = before

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        await self.before()
        return await super().get_token_info(*scopes, options=options)


class WarmingPublisher(RecordingPublisher):
    """A publisher with the optional start_warming, its open gated by `before`."""

    def __init__(self, before: Callable[[], Awaitable[None]], fail: bool = False) -> None:
        super().__init__()
        self.before = before
        self.fail = fail
        self.opened = False

    def start_warming(self) -> asyncio.Task[None]:
        async def open_link() -> None:
            await self.before()
            if self.fail:
                raise ConnectionError("broker down")
            self.opened = True

        return asyncio.create_task(open_link())


def rig(
    credential: FakeCredential,
    publisher: RecordingPublisher,
    batch: Callable[[httpx.Request], Awaitable[httpx.Response]],
    **overrides: Any,
) -> Runtime:
    settings = Settings(**{**SETTINGS, **overrides})
    auth = BatchAuth(settings.allowed_endpoints, tokens=TokenCache(credential, settings.token_scope))
    http = httpx.AsyncClient(transport=httpx.MockTransport(batch), auth=auth, trust_env=False)
    client = BatchClient(
        http, RetryPolicy(max_attempts=2, attempt_timeout=5, initial_backoff=0.01, max_backoff=0.01)
    )
    return Runtime(settings, JobUpdateHandler(settings, client, publisher), credential)


def patched(request: httpx.Request) -> httpx.Response:
    assert request.method == "PATCH"
    return httpx.Response(200, headers={"ETag": "0x1", "request-id": "r-1"})


def first_message() -> Inbound:
    body = json.dumps({"schemaVersion": "1.0", "jobId": "job-1", "update": {"priority": 5}}).encode()
    return Inbound(body, "m-1", 1, datetime.now(UTC))


async def test_the_topic_link_the_token_and_the_batch_connection_start_together() -> None:
    barrier = asyncio.Barrier(3)  # passes only once all three have started
    started: list[str] = []

    def gate(name: str) -> Callable[[], Awaitable[None]]:
        async def wait() -> None:
            started.append(name)
            await barrier.wait()

        return wait

    seen: list[httpx.Request] = []
    connect = gate("batch-connection")

    async def batch(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        await connect()
        return httpx.Response(401)  # what Batch says to a request without a token

    publisher = WarmingPublisher(gate("topic-link"))
    runtime = rig(GatedCredential(gate("token")), publisher, batch)
    async with asyncio.timeout(GUARD_SECONDS):
        await runtime.warm()
    assert sorted(started) == ["batch-connection", "token", "topic-link"]
    assert publisher.opened
    await runtime.aclose()


@given(
    failing=st.sets(st.sampled_from(["token", "batch-connection", "topic-link"]), min_size=1),
)
def test_a_failed_warm_up_never_fails_the_first_message(failing: set[str]) -> None:
    async def scenario() -> None:
        async def nothing() -> None:
            return None

        credential = FakeCredential()
        if "token" in failing:
            credential.failures.append(ClientAuthenticationError("identity endpoint down"))
        publisher = WarmingPublisher(nothing, fail="topic-link" in failing)

        async def batch(request: httpx.Request) -> httpx.Response:
            if request.method == "HEAD":
                if "batch-connection" in failing:
                    raise httpx.ConnectError("refused", request=request)
                return httpx.Response(401)
            return patched(request)

        runtime = rig(credential, publisher, batch)
        await runtime.warm()  # does not raise
        result = await runtime.handler.handle(first_message())
        assert result.outcome is Outcome.applied
        assert len(publisher.events) == 1
        await runtime.aclose()

    asyncio.run(scenario())


async def test_warming_fetches_only_the_configured_scope_and_sends_no_credential() -> None:
    seen: list[httpx.Request] = []

    async def batch(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401) if request.method == "HEAD" else patched(request)

    async def nothing() -> None:
        return None

    credential = FakeCredential()
    runtime = rig(
        credential, WarmingPublisher(nothing), batch, BATCH_TOKEN_SCOPE="https://custom.example/.default"
    )
    await runtime.warm()
    assert credential.scopes == ["https://custom.example/.default"]
    (head,) = seen
    assert head.method == "HEAD"
    assert str(head.url) == ENDPOINT + "/"
    assert "authorization" not in head.headers
    await runtime.handler.handle(first_message())
    assert credential.scopes == ["https://custom.example/.default"]  # the warm token served the message
    assert seen[1].headers["authorization"] == "Bearer " + credential.token
    await runtime.aclose()


async def test_without_a_default_endpoint_no_batch_connection_is_warmed() -> None:
    seen: list[httpx.Request] = []

    async def batch(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401)

    async def nothing() -> None:
        return None

    credential = FakeCredential()
    runtime = rig(credential, WarmingPublisher(nothing), batch, BATCH_ALLOWED_ENDPOINTS=f"{ENDPOINT},{OTHER}")
    await runtime.warm()
    assert seen == []
    assert credential.scopes == [runtime.settings.token_scope]
    await runtime.aclose()


# --- the topic link ---------------------------------------------------------------------------


class FakeSender:
    def __init__(self, log: list[str], name: str, gate: asyncio.Event, fail_open: bool) -> None:
        self.log, self.name, self.gate, self.fail_open = log, name, gate, fail_open
        self._handler: Any = None
        self.sent: list[Any] = []

    def _create_handler(self, auth: Any) -> None:
        return None

    async def __aenter__(self) -> FakeSender:
        self.log.append(f"{self.name}:open")
        await self.gate.wait()
        if self.fail_open:
            raise ConnectionError("link refused")
        self.log.append(f"{self.name}:opened")
        return self

    async def create_message_batch(self) -> ServiceBusMessageBatch:
        return ServiceBusMessageBatch()

    async def send_messages(self, message: Any) -> None:
        self.sent.append(message)
        self.log.append(f"{self.name}:send")

    async def close(self) -> None:
        self.log.append(f"{self.name}:close")


class FakeClient:
    def __init__(self, fail_first_open: bool) -> None:
        self.log: list[str] = []
        self.gate = asyncio.Event()
        self.fail_first_open = fail_first_open
        self.senders = 0

    def get_topic_sender(self, topic: str) -> FakeSender:
        self.senders += 1
        fail = self.fail_first_open and self.senders == 1
        self.last = FakeSender(self.log, f"sender{self.senders}", self.gate, fail)
        return self.last

    async def close(self) -> None:
        return None


EVENT = build_event(Result(Outcome.applied, job_id="job-1", endpoint=ENDPOINT, http_status=200), "m-1")


async def test_a_publish_during_the_warm_open_waits_for_it_instead_of_opening_twice() -> None:
    client = FakeClient(fail_first_open=False)
    publisher = ServiceBusPublisher(client, "job-outcomes")  # type: ignore[arg-type]
    warming = publisher.start_warming()
    publishing = asyncio.create_task(publisher.publish([EVENT]))
    for _ in range(5):  # let both tasks run as far as they can without the gate
        await asyncio.sleep(0)
    assert client.log == ["sender1:open"]  # the publish has not sent over a half-open link
    client.gate.set()
    await publishing
    await warming
    assert client.log == ["sender1:open", "sender1:opened", "sender1:send"]
    assert client.senders == 1


async def test_a_failed_warm_open_leaves_the_publish_its_own_sender() -> None:
    client = FakeClient(fail_first_open=True)
    client.gate.set()
    publisher = ServiceBusPublisher(client, "job-outcomes")  # type: ignore[arg-type]
    await publisher.start_warming()  # does not raise
    await publisher.publish([EVENT])
    assert client.log == ["sender1:open", "sender1:close", "sender2:send"]


async def test_ready_without_polling_asks_again_until_ready_and_passes_errors_on() -> None:
    answers = [False, False, True]

    async def client_ready() -> bool:
        return answers.pop(0)

    assert await ready_without_polling(client_ready)()
    assert answers == []

    async def broken() -> bool:
        raise ConnectionError("link detached")

    try:
        await ready_without_polling(broken)()
    except ConnectionError:
        pass
    else:
        raise AssertionError("the error was swallowed")


async def test_every_handler_the_sender_creates_gets_the_hook() -> None:
    class Handler:
        async def client_ready_async(self) -> bool:
            return True

    class Sender:
        _handler: Any = None
        created = 0

        def _create_handler(self, auth: Any) -> None:
            self.created += 1
            self._handler = Handler()

    sender = open_without_polling(Sender())  # type: ignore[arg-type]
    for _ in range(2):  # the first open and a reconnect
        sender._create_handler(None)
        assert sender._handler.client_ready_async.__wrapped__.__self__ is sender._handler
    assert await sender._handler.client_ready_async()


async def test_a_lone_event_goes_as_a_batch_of_one_with_or_without_sdk_tracing() -> None:
    from azure.core.settings import settings as azure_settings

    client = FakeClient(fail_first_open=False)
    client.gate.set()
    publisher = ServiceBusPublisher(client, "job-outcomes")  # type: ignore[arg-type]
    await publisher.publish([EVENT])
    (batch,) = client.last.sent
    assert isinstance(batch, ServiceBusMessageBatch)
    assert len(batch) == 1

    class Span:  # never instantiated: only whether an implementation is set matters
        pass

    azure_settings.tracing_implementation.set_value(Span)
    try:
        await publisher.publish([EVENT])
    finally:
        azure_settings.tracing_implementation.unset_value()
    # The direct encoder stays on under azure-core tracing (docs/publish-profile.md).
    assert isinstance(client.last.sent[-1], ServiceBusMessageBatch)
    assert len(client.last.sent[-1]) == 1
