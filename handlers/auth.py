"""Credentials for Batch: Entra bearer tokens (cached) or Shared Key signatures.

Both are applied by `BatchAuth`, an httpx auth flow that first checks the
request goes over HTTPS to an allow-listed origin: a credential never leaves
for anywhere else, whatever the caller built.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import httpx
from azure.core.credentials import AccessTokenInfo
from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential

from handlers import telemetry
from handlers.endpoints import EndpointError

log = logging.getLogger(__name__)

# Refresh this long before expiry so no request ever carries a token that
# expires in flight (Batch checks expiry on arrival).
REFRESH_MARGIN_SECONDS = 300


class TokenCache:
    """One bearer token for one scope, shared by every request in the process.

    Fetched on first use and refreshed ahead of expiry (or at the credential's
    `refresh_on`), under a lock so concurrent messages trigger one fetch. If a
    refresh fails while the current token is still valid, the current one is
    used and the refresh is retried on the next request.
    """

    def __init__(
        self,
        credential: AsyncTokenCredential | AsyncSupportsTokenInfo,
        scope: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credential = credential
        self._scope = scope
        self._clock = clock
        self._token: AccessTokenInfo | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        now = self._clock()
        current = self._token
        if current is not None and now < self._refresh_at:
            return current.token
        async with self._lock:
            current = self._token
            if current is not None and self._clock() < self._refresh_at:
                return current.token
            try:
                fresh = await self._fetch()
            except Exception:
                if current is not None and self._clock() < current.expires_on - 30:
                    log.warning("token refresh failed; using the current token until it expires")
                    return current.token
                raise
            return self._keep(fresh)

    async def refresh(self, rejected: str, claims: str | None = None) -> str:
        """A fresh token after Batch answered 401 to `rejected`.

        Concurrent 401s for the same token share one fetch: whoever comes second
        finds a different token cached and uses it. The fetch passes `claims`
        (Batch's challenge, or "" without one) because azure-identity skips its
        own token cache whenever claims are given (managed_identity_client.py:
        "Do not return a cached token if claims are provided"), so a revoked
        token is not simply handed back from that cache.
        """
        async with self._lock:
            current = self._token
            if current is not None and current.token != rejected and self._clock() < self._refresh_at:
                return current.token
            return self._keep(await self._fetch(claims=claims if claims is not None else ""))

    def _keep(self, fresh: AccessTokenInfo) -> str:
        self._token = fresh
        refresh_on = fresh.refresh_on or (fresh.expires_on - REFRESH_MARGIN_SECONDS)
        self._refresh_at = min(refresh_on, fresh.expires_on - REFRESH_MARGIN_SECONDS)
        return fresh.token

    async def _fetch(self, *, claims: str | None = None) -> AccessTokenInfo:
        if telemetry.ENABLED:  # a span per fetch, none per cached token
            with telemetry.token_span():
                return await self._fetch_token(claims)
        return await self._fetch_token(claims)

    async def _fetch_token(self, claims: str | None) -> AccessTokenInfo:
        get_token_info = getattr(self._credential, "get_token_info", None)
        if get_token_info is not None:
            options = {"claims": claims} if claims is not None else None
            info: AccessTokenInfo = await get_token_info(self._scope, options=options)
            return info
        legacy = await self._credential.get_token(self._scope, claims=claims)  # type: ignore[union-attr]
        return AccessTokenInfo(legacy.token, legacy.expires_on)


@dataclass(frozen=True, slots=True)
class SharedKey:
    """A Batch account's Shared Key, signing per the documented algorithm."""

    account: str
    key: bytes = field(repr=False)  # decoded; never in a repr or log line

    @classmethod
    def from_base64(cls, account: str, key_b64: str) -> SharedKey:
        return cls(account, base64.b64decode(key_b64, validate=True))

    def authorization(self, request: httpx.Request) -> str:
        digest = hmac.new(self.key, string_to_sign(self.account, request).encode(), hashlib.sha256)
        return f"SharedKey {self.account}:{base64.b64encode(digest.digest()).decode()}"


_SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


def string_to_sign(account: str, request: httpx.Request) -> str:
    """Batch Shared Key StringToSign (learn.microsoft.com: Authenticate with Shared Key)."""
    headers = request.headers
    lines = [request.method.upper()]
    for name in _SIGNED_HEADERS:
        value = headers.get(name, "")
        if name == "content-length" and value == "0":
            value = ""
        lines.append(value)
    canonical_headers = sorted(
        (name.lower(), value.strip()) for name, value in headers.items() if name.lower().startswith("ocp-")
    )
    path = request.url.raw_path.split(b"?", 1)[0].decode("ascii")
    resource = f"/{account}{path}"
    query: dict[str, list[str]] = {}
    for name, value in parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True):
        query.setdefault(name.lower(), []).append(value)
    for name in sorted(query):
        resource += f"\n{name}:{','.join(query[name])}"
    return "\n".join(lines) + "\n" + "".join(f"{n}:{v}\n" for n, v in canonical_headers) + resource


_CLAIMS = re.compile(r'claims="([A-Za-z0-9+/=_-]+)"')


def challenge_claims(header: str) -> str | None:
    """The claims of a CAE challenge (`Bearer ..., claims="<base64>"`), decoded."""
    found = _CLAIMS.search(header)
    if found is None:
        return None
    raw = found.group(1)
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port not in (None, 443) else "")


class BatchAuth(httpx.Auth):
    """Attach a Batch credential, but only to HTTPS requests for allow-listed origins."""

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        allowed_origins: frozenset[str],
        *,
        tokens: TokenCache | None = None,
        shared_key: SharedKey | None = None,
    ) -> None:
        if (tokens is None) == (shared_key is None):
            raise ValueError("BatchAuth needs exactly one of tokens or shared_key")
        self._allowed = allowed_origins
        self._tokens = tokens
        self._shared_key = shared_key

    def allows(self, url: httpx.URL) -> bool:
        """HTTPS to an allow-listed origin, no userinfo: where a credential may go."""
        return url.scheme == "https" and not url.userinfo and _origin(url) in self._allowed

    async def warm(self) -> None:
        """Fetch the token ahead of the first request (the configured scope only)."""
        if self._tokens is not None:
            await self._tokens.token()

    def _check(self, request: httpx.Request) -> None:
        if not self.allows(request.url):
            raise EndpointError(f"refusing to send a Batch credential to {_origin(request.url)}")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self._check(request)
        if self._tokens is None:
            assert self._shared_key is not None
            request.headers["Authorization"] = self._shared_key.authorization(request)
            yield request
            return
        token = await self._tokens.token()
        request.headers["Authorization"] = "Bearer " + token
        response = yield request
        if response.status_code != 401:
            return
        # A token can be revoked or expire in flight: refresh once and resend once;
        # a second 401 is Batch's final answer (the plan reports it as failed).
        claims = challenge_claims(response.headers.get("WWW-Authenticate", ""))
        fresh = await self._tokens.refresh(token, claims)
        if fresh == token:
            return  # the credential handed back the same token (its own cache): the 401 stands
        request.headers["Authorization"] = "Bearer " + fresh
        yield request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("BatchAuth is async only")
