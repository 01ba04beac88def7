"""The handler loop over httpx.MockTransport: real httpx client, auth flow, retry loop and
event building, no sockets. What Batch sees and what the topic gets, per message."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessTokenInfo

from handlers.auth import BatchAuth, TokenCache
from handlers.batch_client import BatchClient, RetryPolicy
from handlers.endpoints import EndpointError
from handlers.errors import PublisherClosed
from handlers.events import OutcomeData, event_id
from handlers.handler import Inbound, JobUpdateHandler, RetryLater
from handlers.outcomes import Outcome
from handlers.settings import BATCH_SCOPE, Settings
from handlers.transport import NoCookies
from handlers.wire import CONTENT_TYPE, USER_AGENT, BatchRequest, build_request
from tests.fakes import FakeCredential, RecordingPublisher

ENDPOINT = "https://acct.westeurope.batch.azure.com"
JOB_URL = f"{ENDPOINT}/jobs/job-1?api-version=2025-06-01"
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
OCP_DATE = "Thu, 01 Jan 2026 12:00:00 GMT"
TOKEN = "tok-for-batch"
MAX_DELIVERIES = 3
BASE_SETTINGS: dict[str, Any] = {
    "BATCH_ALLOWED_ENDPOINTS": ENDPOINT,
    "ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
    "JOB_UPDATES_MAX_DELIVERY_COUNT": MAX_DELIVERIES,
    "BATCH_RETRY_BUDGET_SECONDS": 2,
    "BATCH_MAX_ATTEMPTS": 3,
    "BATCH_HTTP_TIMEOUT_SECONDS": 5,
}
JOB = {
    "id": "job-1",
    "priority": 10,
    "constraints": {"maxWallClockTime": "P10675199DT2H48M5.4775807S", "maxTaskRetryCount": 3},
}


@dataclass
class Seen:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeBatch:
    """The mock transport's handler: scripted replies, every request recorded."""

    script: list[Reply] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(
            Seen(
                request.method,
                str(request.url),
                {k.lower(): v for k, v in request.headers.items()},
                request.content,
            )
        )
        assert self.script, f"unexpected request {request.method} {request.url}"
        reply = self.script.pop(0)
        if isinstance(reply, Exception):
            raise reply
        if not isinstance(reply, httpx.Response):
            return reply(request)  # a reply built from the request (an echoing error)
        return reply

    @property
    def methods(self) -> list[str]:
        return [s.method for s in self.seen]


def ok(
    job: dict[str, Any] | None = None, *, etag: str = "0x8DD0000000000B2", rid: str = "r-ok"
) -> httpx.Response:
    return httpx.Response(
        200,
        headers={
            "ETag": etag,
            "Last-Modified": "Thu, 01 Jan 2026 12:00:01 GMT",
            "request-id": rid,
        },
        content=json.dumps(job).encode() if job is not None else b"",
    )


def error(status: int, code: str, *, rid: str = "r-err", retry_after: str | None = None) -> httpx.Response:
    headers = {"request-id": rid, "Content-Type": "application/json"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    body = {"code": code, "message": {"lang": "en-US", "value": f"{code} text"}}
    return httpx.Response(status, headers=headers, content=json.dumps(body).encode())


def connect_error() -> httpx.ConnectError:
    return httpx.ConnectError("connection refused")


@dataclass
class Rig:
    handler: JobUpdateHandler
    batch: FakeBatch
    publisher: RecordingPublisher
    credential: FakeCredential
    client: BatchClient

    def data(self, index: int = -1) -> dict[str, Any]:
        data: dict[str, Any] = self.event(index)["data"]
        OutcomeData.model_validate(data)  # every published event matches the schema
        return data

    def event(self, index: int = -1) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.publisher.events[index].body)
        return doc


Factory = Callable[..., Rig]


@pytest.fixture
async def rig() -> AsyncIterator[Factory]:
    made: list[Rig] = []

    def build(*script: Reply, **overrides: Any) -> Rig:
        settings = Settings(**{**BASE_SETTINGS, **overrides})
        credential = FakeCredential(TOKEN)
        batch = FakeBatch(list(script))
        # As handlers.runtime builds it, with the mock transport in place of aiohttp.
        auth = BatchAuth(settings.allowed_endpoints, tokens=TokenCache(credential, settings.token_scope))
        http = httpx.AsyncClient(
            transport=httpx.MockTransport(batch),
            auth=auth,
            timeout=httpx.Timeout(settings.http_timeout_seconds, connect=10.0),
            follow_redirects=False,
            trust_env=False,
        )
        http._cookies = NoCookies()
        client = BatchClient(
            http,
            RetryPolicy(
                max_attempts=settings.max_attempts,
                attempt_timeout=settings.http_timeout_seconds,
                initial_backoff=0.01,
                max_backoff=0.05,
            ),
        )
        publisher = RecordingPublisher()
        handler = JobUpdateHandler(settings, client, publisher, clock=lambda: NOW)
        made.append(Rig(handler, batch, publisher, credential, client))
        return made[-1]

    yield build
    for r in made:
        await r.client.aclose()
        assert not r.batch.script, f"replies left unused: {r.batch.script}"


def inbound(msg: dict[str, Any], message_id: str = "m-1", delivery: int = 1) -> Inbound:
    body = json.dumps({"schemaVersion": "1.0", "jobId": "job-1", **msg}).encode()
    return Inbound(body, message_id, delivery, datetime(2026, 1, 1, 11, 59, tzinfo=UTC))


def crid(message_id: str = "m-1") -> str:
    from handlers.wire import client_request_id_for

    return client_request_id_for(message_id)


def without_duration(data: dict[str, Any]) -> dict[str, Any]:
    duration = data.pop("durationMs")
    assert isinstance(duration, float)
    assert 0 <= duration < 5000
    return data


PRIORITY = {"update": {"priority": 500}}


# --- applied ---------------------------------------------------------------------------


async def test_applied_replace_sends_one_authorised_patch_and_publishes_one_event(rig: Factory) -> None:
    r = rig(ok())
    result = await r.handler.handle(inbound({**PRIORITY, "conditions": {"ifMatch": "0x8D1"}}))
    assert result.outcome is Outcome.applied
    (patch,) = r.batch.seen
    assert (patch.method, patch.url) == ("PATCH", JOB_URL)
    assert patch.headers == {
        "host": "acct.westeurope.batch.azure.com",
        "user-agent": USER_AGENT,
        "client-request-id": crid(),
        "return-client-request-id": "false",
        "ocp-date": OCP_DATE,
        "if-match": '"0x8D1"',
        "content-type": CONTENT_TYPE,
        "content-length": str(len(b'{"priority":500}')),
        "authorization": f"Bearer {TOKEN}",
    }
    assert patch.body == b'{"priority":500}'
    assert r.credential.scopes == [BATCH_SCOPE]
    assert len(r.publisher.events) == 1
    event = r.event()
    assert {k: event[k] for k in ("id", "type", "source", "subject", "sourcemessageid", "specversion")} == {
        "id": event_id("m-1", Outcome.applied),
        "type": "dev.batchjobupdate.job.applied",
        "source": f"{ENDPOINT}/jobs/job-1",
        "subject": "job-1",
        "sourcemessageid": "m-1",
        "specversion": "1.0",
    }
    assert without_duration(r.data()) == {
        "outcome": "applied",
        "jobId": "job-1",
        "endpoint": ENDPOINT,
        "mode": "replace",
        "httpStatus": 200,
        "requestId": "r-ok",
        "clientRequestId": crid(),
        "etag": "0x8DD0000000000B2",
        "lastModified": "Thu, 01 Jan 2026 12:00:01 GMT",
        "write": "this-delivery",
        "conditionsMet": True,
        "changes": {"priority": {"to": 500}},
        "attempts": 1,
    }
    props = r.publisher.events[0].application_properties()
    assert props == {"outcome": "applied", "jobId": "job-1", "account": "acct", "httpStatus": 200}


async def test_merge_reads_then_writes_with_the_read_etag(rig: Factory) -> None:
    r = rig(ok(JOB, etag="0xREAD", rid="r-get"), ok(rid="r-patch"))
    result = await r.handler.handle(
        inbound({"mode": "merge", "update": {"constraints": {"maxTaskRetryCount": 5}}})
    )
    assert result.outcome is Outcome.applied
    assert r.batch.methods == ["GET", "PATCH"]
    get, patch = r.batch.seen
    assert "content-type" not in get.headers
    assert get.body == b""
    assert patch.headers["if-match"] == '"0xREAD"'
    assert json.loads(patch.body) == {
        "constraints": {"maxWallClockTime": "P10675199DT2H48M5.4775807S", "maxTaskRetryCount": 5}
    }
    assert all(s.headers["authorization"] == f"Bearer {TOKEN}" for s in r.batch.seen)
    assert r.credential.scopes == [BATCH_SCOPE]  # one token for both requests
    data = r.data()
    assert (data["requestId"], data["attempts"], data["mode"]) == ("r-patch", 2, "merge")


async def test_dry_run_reads_once_and_publishes_dry_run(rig: Factory) -> None:
    r = rig(ok(JOB, etag="0xREAD", rid="r-get"))
    await r.handler.handle(inbound({"update": {"priority": 11}, "options": {"dryRun": True}}))
    assert r.batch.methods == ["GET"]
    data = without_duration(r.data())
    assert data["outcome"] == "dry-run"
    assert data["changes"] == {"priority": {"from": 10, "to": 11}}
    assert "write" not in data


# --- retries inside one delivery --------------------------------------------------------


async def test_429_with_retry_after_zero_is_retried_then_applied(rig: Factory) -> None:
    r = rig(error(429, "TooManyRequests", retry_after="0"), ok())
    started = time.monotonic()
    result = await r.handler.handle(inbound(PRIORITY))
    assert time.monotonic() - started < 1.0
    assert result.outcome is Outcome.applied
    assert result.attempts == 2
    first, second = r.batch.seen
    assert first.headers == second.headers  # the same request, same client-request-id
    assert first.body == second.body
    data = r.data()
    assert (data["attempts"], data["httpStatus"], data["requestId"]) == (2, 200, "r-ok")
    assert "error" not in data  # nothing of the 429 leaks into the applied event


async def test_transport_error_is_retried(rig: Factory) -> None:
    r = rig(connect_error(), connect_error(), ok())
    result = await r.handler.handle(inbound(PRIORITY))
    assert (result.outcome, result.attempts) == (Outcome.applied, 3)
    assert r.batch.methods == ["PATCH"] * 3
    assert len(r.publisher.events) == 1


async def test_retried_patch_that_lost_its_reply_then_412_is_verified(rig: Factory) -> None:
    # The first attempt landed but its reply was lost; the retry meets our own new ETag.
    r = rig(
        httpx.ReadTimeout("lost"),
        error(412, "ConditionNotMet", rid="r-412"),
        ok({**JOB, "priority": 500}, rid="r-get"),
    )
    result = await r.handler.handle(inbound({**PRIORITY, "conditions": {"ifMatch": "0x8D1"}}))
    assert r.batch.methods == ["PATCH", "PATCH", "GET"]
    assert "if-match" not in r.batch.seen[2].headers
    data = r.data()
    assert (data["outcome"], data["write"], data["inPlace"], data["attempts"]) == (
        "applied",
        "earlier-delivery",
        True,
        3,
    )
    assert "conditionsMet" not in data
    assert result.request_id == "r-get"


# --- transient failures across deliveries ----------------------------------------------


async def test_transient_failure_before_the_last_delivery_raises_retry_later_and_publishes_nothing(
    rig: Factory,
) -> None:
    r = rig(*[error(503, "ServerBusy", retry_after="0") for _ in range(3)])
    with pytest.raises(RetryLater, match=r"^ServerBusy$"):
        await r.handler.handle(inbound(PRIORITY, delivery=MAX_DELIVERIES - 1))
    assert r.batch.methods == ["PATCH"] * 3
    assert r.publisher.events == []


async def test_transient_failure_on_the_last_delivery_publishes_given_up_then_raises(rig: Factory) -> None:
    r = rig(*[error(503, "ServerBusy", rid=f"r-{n}", retry_after="0") for n in range(3)])
    with pytest.raises(RetryLater, match=f"^gave up on delivery {MAX_DELIVERIES}: ServerBusy$"):
        await r.handler.handle(inbound(PRIORITY, delivery=MAX_DELIVERIES))
    assert len(r.publisher.events) == 1
    assert without_duration(r.data()) == {
        "outcome": "given-up",
        "jobId": "job-1",
        "endpoint": ENDPOINT,
        "mode": "replace",
        "httpStatus": 503,
        "requestId": "r-2",
        "clientRequestId": crid(),
        "error": {"code": "ServerBusy", "message": "ServerBusy text", "values": {}},
        "attempts": 3,
    }
    assert r.event()["type"] == "dev.batchjobupdate.job.given-up"


async def test_no_reply_on_the_last_delivery_is_given_up_with_no_reply(rig: Factory) -> None:
    r = rig(connect_error(), connect_error(), connect_error())
    with pytest.raises(RetryLater, match="NoReply"):
        await r.handler.handle(inbound(PRIORITY, delivery=MAX_DELIVERIES + 1))
    data = r.data()
    assert "httpStatus" not in data
    assert data["error"] == {"code": "NoReply", "message": "ConnectError: connection refused", "values": {}}
    assert data["attempts"] == 3


async def test_a_retry_after_past_the_budget_is_not_waited_for(rig: Factory) -> None:
    r = rig(error(429, "TooManyRequests", retry_after="30"), BATCH_RETRY_BUDGET_SECONDS=1)
    started = time.monotonic()
    with pytest.raises(RetryLater, match="TooManyRequests"):
        await r.handler.handle(inbound(PRIORITY))
    assert time.monotonic() - started < 0.5
    assert r.batch.methods == ["PATCH"]
    assert r.publisher.events == []


async def test_event_ids_repeat_across_redeliveries(rig: Factory) -> None:
    r = rig(error(412, "ConditionNotMet"), error(412, "ConditionNotMet"), ok(JOB))
    msg = {**PRIORITY, "conditions": {"ifMatch": "0x8D1"}}
    await r.handler.handle(inbound(msg, delivery=1))
    await r.handler.handle(inbound(msg, delivery=2))  # 412 again, then the verify GET: not in place
    assert r.batch.methods == ["PATCH", "PATCH", "GET"]
    first, second = (json.loads(e.body) for e in r.publisher.events)
    assert first["id"] == second["id"] == event_id("m-1", Outcome.precondition_failed)
    assert first["data"]["httpStatus"] == second["data"]["httpStatus"] == 412


# --- final replies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "outcome", "code"),
    [
        (error(412, "ConditionNotMet"), "precondition-failed", "ConditionNotMet"),
        (error(404, "JobNotFound"), "failed", "JobNotFound"),
        (error(409, "JobCompleted"), "failed", "JobCompleted"),
        (error(400, "InvalidPropertyValue"), "failed", "InvalidPropertyValue"),
    ],
)
async def test_final_refusals_complete_with_one_event(
    rig: Factory, reply: httpx.Response, outcome: str, code: str
) -> None:
    r = rig(reply)
    result = await r.handler.handle(inbound({**PRIORITY, "conditions": {"ifMatch": "0x8D1"}}))
    assert result.outcome.value == outcome
    assert r.batch.methods == ["PATCH"]
    data = r.data()
    assert (data["outcome"], data["error"]["code"], data["write"], data["requestId"]) == (
        outcome,
        code,
        "none",
        "r-err",
    )
    assert r.publisher.events[0].application_properties()["errorCode"] == code


@pytest.mark.parametrize(
    ("msg", "path"),
    [
        ({"update": {"priorty": 1}}, "$.update.priorty"),
        ({"endpoint": "https://evil.westeurope.batch.azure.com", **PRIORITY}, "$.endpoint"),
    ],
)
async def test_rejected_messages_send_nothing(rig: Factory, msg: dict[str, Any], path: str) -> None:
    r = rig()
    result = await r.handler.handle(inbound(msg))
    assert result.outcome is Outcome.rejected
    assert r.batch.seen == []
    assert r.credential.scopes == []  # no token fetched for a message that sends nothing
    data = r.data()
    assert [p["path"] for p in data["problems"]] == [path]
    assert data["attempts"] == 0


# --- unexpected failures ---------------------------------------------------------------


@pytest.mark.parametrize(("delivery", "published"), [(1, 0), (MAX_DELIVERIES, 1)])
async def test_a_crash_in_the_plan_takes_the_transient_road(
    rig: Factory, delivery: int, published: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import handlers.handler

    def crash(*_: object) -> None:
        raise ValueError("a bug")

    monkeypatch.setattr(handlers.handler, "next_step", crash)
    r = rig()  # nothing is sent
    with pytest.raises(RetryLater, match="InternalError"):
        await r.handler.handle(inbound({"mode": "merge", **PRIORITY}, delivery=delivery))
    assert len(r.publisher.events) == published
    if published:
        data = without_duration(r.data())
        assert data == {
            "outcome": "given-up",
            "jobId": "job-1",
            "error": {
                "code": "InternalError",
                "message": "ValueError in the job-update function",
                "values": {},
            },
            "attempts": 0,
        }


async def test_a_publish_failure_propagates_so_the_host_redelivers(rig: Factory) -> None:
    r = rig(ok())
    r.publisher.fail_with = RuntimeError("topic unavailable")
    with pytest.raises(RetryLater, match="publishing the outcome failed: RuntimeError"):
        await r.handler.handle(inbound(PRIORITY))
    assert r.batch.methods == ["PATCH"]
    assert r.publisher.attempts == 1  # not the last delivery: no waiting in place


class FlakyPublisher(RecordingPublisher):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def publish(self, events: Sequence[Any]) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("topic unavailable")
        self.events.extend(events)


@pytest.fixture
def quick_publish_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    import handlers.handler

    monkeypatch.setattr(handlers.handler, "PUBLISH_RETRY_FIRST_WAIT", 0.01)
    monkeypatch.setattr(handlers.handler, "PUBLISH_RETRY_MAX_WAIT", 0.02)


@pytest.mark.usefixtures("quick_publish_retries")
async def test_on_the_last_delivery_a_failed_publish_is_retried_in_place(rig: Factory) -> None:
    """Abandoning now would dead-letter the message with no event."""
    r = rig(ok(), OUTCOME_PUBLISH_HOLD_SECONDS=5)
    r.handler.publisher = r.publisher = FlakyPublisher(failures=3)
    result = await r.handler.handle(inbound(PRIORITY, delivery=MAX_DELIVERIES))
    assert result.outcome is Outcome.applied
    assert r.publisher.attempts == 4
    assert r.data()["outcome"] == "applied"
    assert r.batch.methods == ["PATCH"]  # Batch is not asked again


@pytest.mark.usefixtures("quick_publish_retries")
async def test_the_hold_is_bounded_and_a_lost_event_is_logged(
    rig: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    r = rig(ok(), OUTCOME_PUBLISH_HOLD_SECONDS=0.2)
    r.handler.publisher = r.publisher = FlakyPublisher(failures=10_000)
    with pytest.raises(RetryLater, match="publishing the outcome failed: RuntimeError"):
        await r.handler.handle(inbound(PRIORITY, delivery=MAX_DELIVERIES))
    assert 2 <= r.publisher.attempts < 100
    (line,) = [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert "outcome=unpublished jobId=job-1 messageId=m-1" in line.getMessage()


class ClosedPublisher(FlakyPublisher):
    async def publish(self, events: Any) -> None:
        self.attempts += 1
        raise PublisherClosed("the publisher is closed")


async def test_a_closed_publisher_is_not_held_for_on_the_last_delivery(rig: Factory) -> None:
    """Shutting down: the publisher will not come back, so no 45 s hold against it."""
    r = rig(ok(), OUTCOME_PUBLISH_HOLD_SECONDS=45)
    r.handler.publisher = r.publisher = ClosedPublisher(failures=0)
    with pytest.raises(RetryLater, match="PublisherClosed"):
        await asyncio.wait_for(r.handler.handle(inbound(PRIORITY, delivery=MAX_DELIVERIES)), timeout=5)
    assert r.publisher.attempts == 1


# --- a 401 refreshes the token once ----------------------------------------------------


def unauthorised(challenge: str | None = None) -> httpx.Response:
    response = error(401, "AuthenticationFailed")
    if challenge is not None:
        response.headers["WWW-Authenticate"] = challenge
    return response


async def test_a_401_fetches_a_fresh_token_and_resends_once(rig: Factory) -> None:
    r = rig(unauthorised(), ok())
    result = await r.handler.handle(inbound(PRIORITY))
    assert result.outcome is Outcome.applied
    first, second = r.batch.seen
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert second.headers["authorization"] == f"Bearer {TOKEN}-fresh"
    assert first.body == second.body
    # The refresh asks past azure-identity's cache: claims given (none in the challenge).
    assert r.credential.options == [None, {"claims": ""}]
    assert r.data()["attempts"] == 1  # the resend is part of the one attempt


async def test_a_second_401_is_final(rig: Factory) -> None:
    r = rig(unauthorised(), unauthorised())
    result = await r.handler.handle(inbound(PRIORITY))
    assert result.outcome is Outcome.failed
    assert r.batch.methods == ["PATCH", "PATCH"]
    data = r.data()
    assert (data["httpStatus"], data["error"]["code"]) == (401, "AuthenticationFailed")
    assert len(r.credential.options) == 2


async def test_a_cae_challenge_passes_its_claims_to_the_credential(rig: Factory) -> None:
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'
    encoded = base64.b64encode(claims.encode()).decode().rstrip("=")
    r = rig(unauthorised(f'Bearer realm="", error="insufficient_claims", claims="{encoded}"'), ok())
    await r.handler.handle(inbound(PRIORITY))
    assert r.credential.options[-1] == {"claims": claims}


async def test_a_token_refreshed_by_another_message_is_reused(rig: Factory) -> None:
    r = rig()
    cache = TokenCache(r.credential, BATCH_SCOPE)
    assert await cache.token() == TOKEN
    refreshed = [await cache.refresh(TOKEN) for _ in range(3)]
    assert refreshed == [f"{TOKEN}-fresh"] * 3  # the later 401s for the old token share one fetch
    assert len(r.credential.options) == 2


async def test_an_unavailable_token_endpoint_is_retried_like_a_transport_failure(rig: Factory) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    r = rig(ok())
    r.credential.failures = [ClientAuthenticationError("ManagedIdentityCredential: endpoint 503")]
    result = await r.handler.handle(inbound(PRIORITY))
    assert result.outcome is Outcome.applied
    assert r.data()["attempts"] == 2
    assert r.batch.methods == ["PATCH"]  # nothing went out without a token


async def test_a_token_endpoint_down_for_the_whole_budget_is_no_reply(rig: Factory) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    r = rig()
    r.credential.failures = [ClientAuthenticationError("down")] * 10
    with pytest.raises(RetryLater):
        await r.handler.handle(inbound(PRIORITY, delivery=MAX_DELIVERIES))
    data = r.data()
    assert data["outcome"] == "given-up"
    assert data["error"]["code"] == "NoReply"
    assert "TokenUnavailable: ClientAuthenticationError" in data["error"]["message"]
    assert r.batch.seen == []


# --- the credential goes only to the allow-list ----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.westeurope.batch.azure.com/jobs/job-1?api-version=2025-06-01",
        "http://acct.westeurope.batch.azure.com/jobs/job-1?api-version=2025-06-01",
        "https://acct.westeurope.batch.azure.com:8443/jobs/job-1?api-version=2025-06-01",
        "https://user@acct.westeurope.batch.azure.com/jobs/job-1?api-version=2025-06-01",
    ],
)
async def test_no_request_leaves_for_an_origin_outside_the_allow_list(rig: Factory, url: str) -> None:
    r = rig()
    request = BatchRequest("GET", url, {"client-request-id": crid()})
    with pytest.raises(EndpointError, match="refusing to send a Batch credential"):
        await r.client.send(request, deadline=time.monotonic() + 1)
    assert r.batch.seen == []
    assert r.credential.scopes == []


async def test_the_listed_origin_gets_the_bearer_token(rig: Factory) -> None:
    r = rig(ok(JOB))
    request = build_request(
        "GET", ENDPOINT, "job-1", api_version="2025-06-01", client_request_id=crid(), ocp_date=NOW
    )
    sent = await r.client.send(request, deadline=time.monotonic() + 1)
    assert (sent.attempts, sent.failure, sent.reply and sent.reply.status) == (1, None, 200)
    assert r.batch.seen[0].headers["authorization"] == f"Bearer {TOKEN}"


async def test_a_token_failure_sends_nothing_and_retries_the_message(rig: Factory) -> None:
    r = rig()

    async def no_token(*scopes: str, options: object = None) -> AccessTokenInfo:
        raise RuntimeError("identity endpoint unavailable")

    r.credential.get_token_info = no_token  # type: ignore[method-assign]
    with pytest.raises(RetryLater, match="InternalError"):
        await r.handler.handle(inbound(PRIORITY))
    assert r.batch.seen == []
    assert r.publisher.events == []


async def test_a_refresh_that_returns_the_rejected_token_does_not_resend(rig: Factory) -> None:
    r = rig(unauthorised())
    r.credential.token = TOKEN  # a credential whose cache ignores claims: the same token again

    async def same(*scopes: str, options: Any = None) -> Any:
        r.credential.options.append(options)
        return AccessTokenInfo(TOKEN, int(time.time()) + 3600)

    r.credential.get_token_info = same  # type: ignore[method-assign]
    result = await r.handler.handle(inbound(PRIORITY))
    assert result.outcome is Outcome.failed
    assert r.batch.methods == ["PATCH"]  # no pointless resend with the token Batch refused
