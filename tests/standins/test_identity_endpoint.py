"""The local managed-identity endpoint against azure-identity's real credentials.

azure-identity picks its App Service implementation from IDENTITY_ENDPOINT and
IDENTITY_HEADER; the sync credential goes through MSAL, the async one through
azure-identity's own client. Both must get tokens addressed to the resource
their scope names, and both must be refused without the right header.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential
from azure.identity.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential

from standins.identity import (
    API_VERSION,
    BATCH_RESOURCE,
    DEFAULT_CLIENT_ID,
    SERVICEBUS_RESOURCE,
    TokenEndpoint,
    decode_token,
)

SIGNING_KEY = b"identity-endpoint-test-key-32byt"
BATCH_SCOPE = "https://batch.core.windows.net//.default"
SERVICEBUS_SCOPE = "https://servicebus.azure.net/.default"


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> Iterator[TokenEndpoint]:
    with TokenEndpoint(signing_key=SIGNING_KEY, lifetime_seconds=3600) as endpoint:
        for name, value in endpoint.env.items():
            monkeypatch.setenv(name, value)
        for name in ("IDENTITY_SERVER_THUMBPRINT", "MSI_ENDPOINT", "MSI_SECRET"):
            monkeypatch.delenv(name, raising=False)
        yield endpoint


def test_sync_credential_gets_batch_token_and_caches_it(tokens: TokenEndpoint) -> None:
    credential = ManagedIdentityCredential()
    first = credential.get_token(BATCH_SCOPE)
    second = credential.get_token(BATCH_SCOPE)

    claims = decode_token(first.token, SIGNING_KEY, audience=BATCH_RESOURCE)
    assert claims["aud"] == "https://batch.core.windows.net/"
    assert claims["appid"] == DEFAULT_CLIENT_ID
    assert claims["oid"] == DEFAULT_CLIENT_ID
    assert abs(first.expires_on - (time.time() + 3600)) < 10
    assert second.token == first.token
    assert tokens.requests == {BATCH_RESOURCE: 1}


async def test_async_credential_gets_servicebus_token_for_user_assigned_identity(
    tokens: TokenEndpoint,
) -> None:
    async with AsyncManagedIdentityCredential(client_id="user-assigned-id") as credential:
        token = await credential.get_token(SERVICEBUS_SCOPE)
        again = await credential.get_token(SERVICEBUS_SCOPE)

    claims = decode_token(token.token, SIGNING_KEY, audience=SERVICEBUS_RESOURCE)
    assert claims["aud"] == "https://servicebus.azure.net"
    assert claims["appid"] == "user-assigned-id"
    assert again.token == token.token
    assert tokens.requests == {SERVICEBUS_RESOURCE: 1}
    assert tokens.issued[0]["client_id"] == "user-assigned-id"


def test_token_for_one_resource_is_rejected_for_another(tokens: TokenEndpoint) -> None:
    token = ManagedIdentityCredential().get_token(SERVICEBUS_SCOPE).token
    with pytest.raises(jwt.InvalidAudienceError):
        decode_token(token, SIGNING_KEY, audience=BATCH_RESOURCE)


def test_sync_credential_with_wrong_header_is_refused(
    tokens: TokenEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential().get_token(BATCH_SCOPE)
    assert tokens.rejected == 1
    assert tokens.issued == []


async def test_async_credential_with_wrong_header_is_refused(
    tokens: TokenEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    async with AsyncManagedIdentityCredential() as credential:
        with pytest.raises(ClientAuthenticationError):
            await credential.get_token(BATCH_SCOPE)
    assert tokens.rejected == 1


@pytest.mark.parametrize(
    ("params", "headers", "status"),
    [
        ({"api-version": API_VERSION, "resource": BATCH_RESOURCE}, {}, 401),
        ({"api-version": "2017-09-01", "resource": BATCH_RESOURCE}, None, 400),
        ({"api-version": API_VERSION}, None, 400),
    ],
    ids=["missing-header", "old-api-version", "missing-resource"],
)
def test_protocol_errors_answer_json_status(
    tokens: TokenEndpoint, params: dict[str, str], headers: dict[str, str] | None, status: int
) -> None:
    sent_headers = {"X-IDENTITY-HEADER": tokens.identity_header} if headers is None else headers
    response = httpx.get(tokens.url, params=params, headers=sent_headers)
    assert response.status_code == status
    assert response.json()["statusCode"] == status
    assert "access_token" not in response.json()


def test_response_has_app_service_shape_and_configured_lifetime() -> None:
    with TokenEndpoint(signing_key=SIGNING_KEY, lifetime_seconds=600) as endpoint:
        response = httpx.get(
            endpoint.url,
            params={"api-version": API_VERSION, "resource": BATCH_RESOURCE},
            headers={"X-IDENTITY-HEADER": endpoint.identity_header},
        )
    body = response.json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert isinstance(body["expires_on"], str)  # App Service sends epoch seconds as a string
    assert abs(int(body["expires_on"]) - (time.time() + 600)) < 10
    assert body["token_type"] == "Bearer"
    assert body["resource"] == BATCH_RESOURCE
