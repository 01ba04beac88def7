from __future__ import annotations

import base64
from datetime import UTC, datetime

import httpx
import pytest
from azure.batch._patch import BatchSharedKeyAuthPolicy
from azure.core.credentials import AccessToken, AzureNamedKeyCredential
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest

from handlers.auth import BatchAuth, SharedKey, TokenCache, string_to_sign
from handlers.contract import Conditions
from handlers.endpoints import EndpointError
from handlers.wire import build_request

KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
ENDPOINT = "https://acct.westeurope.batch.azure.com"


def sdk_signature(request: httpx.Request) -> str:
    """The azure-batch SDK's own Shared Key signer: an independent oracle."""
    core = HttpRequest(
        request.method, str(request.url), headers=dict(request.headers), content=request.content
    )
    policy = BatchSharedKeyAuthPolicy(AzureNamedKeyCredential("acct", KEY))
    policy.on_request(PipelineRequest(core, PipelineContext(None)))
    return core.headers["Authorization"]


@pytest.mark.parametrize(
    "conditions",
    [
        Conditions(),
        Conditions.model_validate({"ifMatch": "0x8D1", "ifUnmodifiedSince": "2025-02-17T00:00:00Z"}),
    ],
)
def test_shared_key_matches_the_sdk_signer_where_the_document_agrees(conditions: Conditions) -> None:
    built = build_request(
        "PATCH",
        ENDPOINT,
        "job-1",
        api_version="2025-06-01",
        client_request_id="c",
        ocp_date=datetime(2026, 1, 1, tzinfo=UTC),
        condition_headers=conditions.headers(),
        body=b'{"priority":1}',
    )
    request = httpx.Request(built.method, built.url, headers=built.headers, content=built.body)
    ours = SharedKey.from_base64("acct", KEY).authorization(request)
    assert ours == sdk_signature(request)


def test_string_to_sign_follows_the_document() -> None:
    request = httpx.Request(
        "GET",
        f"{ENDPOINT}/jobs/job-1?api-version=2025-06-01&timeOut=20",
        headers={"ocp-date": "Thu, 01 Jan 2026 00:00:00 GMT", "Content-Length": "0"},
    )
    text = string_to_sign("acct", request)
    assert text.splitlines()[:4] == ["GET", "", "", ""]  # empty Content-Length when zero
    assert text.endswith(
        "ocp-date:Thu, 01 Jan 2026 00:00:00 GMT\n/acct/jobs/job-1\napi-version:2025-06-01\ntimeout:20"
    )


class CountingCredential:
    """Stands in for a credential only in these pure refresh-timing tests; the
    integration tests use azure-identity's real ManagedIdentityCredential."""

    def __init__(self, lifetime: float, clock: list[float]) -> None:
        self.calls = 0
        self.lifetime = lifetime
        self.clock = clock
        self.fail = False

    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.calls += 1
        if self.fail:
            raise RuntimeError("token endpoint down")
        return AccessToken(f"t{self.calls}", int(self.clock[0] + self.lifetime))

    async def close(self) -> None:
        return None


async def test_token_cache_fetches_once_and_refreshes_before_expiry() -> None:
    now = [1000.0]
    credential = CountingCredential(3600, now)
    cache = TokenCache(credential, "scope", clock=lambda: now[0])  # type: ignore[arg-type]
    assert [await cache.token() for _ in range(50)] == ["t1"] * 50
    now[0] += 3600 - 299  # inside the refresh margin
    assert await cache.token() == "t2"
    assert credential.calls == 2


async def test_token_cache_keeps_a_valid_token_when_refresh_fails() -> None:
    now = [0.0]
    credential = CountingCredential(3600, now)
    cache = TokenCache(credential, "scope", clock=lambda: now[0])  # type: ignore[arg-type]
    assert await cache.token() == "t1"
    now[0] += 3400
    credential.fail = True
    assert await cache.token() == "t1"
    now[0] += 200  # now expired
    with pytest.raises(RuntimeError):
        await cache.token()


@pytest.mark.parametrize(
    "url",
    [
        "http://acct.westeurope.batch.azure.com/jobs/j",
        "https://evil.example/jobs/j",
        "https://acct.westeurope.batch.azure.com:444/jobs/j",
        "https://u:p@acct.westeurope.batch.azure.com/jobs/j",
    ],
)
async def test_credentials_only_go_to_allow_listed_https_origins(url: str) -> None:
    auth = BatchAuth(frozenset({ENDPOINT}), shared_key=SharedKey.from_base64("acct", KEY))
    flow = auth.async_auth_flow(httpx.Request("GET", url))
    with pytest.raises(EndpointError):
        await flow.__anext__()


async def test_allowed_request_gets_a_credential() -> None:
    auth = BatchAuth(frozenset({ENDPOINT}), shared_key=SharedKey.from_base64("acct", KEY))
    request = httpx.Request("GET", f"{ENDPOINT}/jobs/j?api-version=2025-06-01")
    sent = await auth.async_auth_flow(request).__anext__()
    assert sent.headers["Authorization"].startswith("SharedKey acct:")


def test_the_http_client_keeps_no_cookies() -> None:
    """Fails if an httpx upgrade moves the cookie jar our client replaces."""
    from handlers.batch_client import make_http_client
    from handlers.transport import NoCookies

    auth = BatchAuth(frozenset({ENDPOINT}), shared_key=SharedKey.from_base64("acct", KEY))
    client = make_http_client(ca_bundle=None, timeout=5, max_connections=1, auth=auth)
    assert isinstance(client.cookies, NoCookies)
    response = httpx.Response(
        200, headers={"Set-Cookie": "s=1; Path=/"}, request=httpx.Request("GET", ENDPOINT)
    )
    client.cookies.extract_cookies(response)
    assert list(client.cookies.jar) == []
