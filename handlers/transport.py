"""A lean httpx transport over aiohttp, for small request/response exchanges.

Why not httpx's default transport: its per-request CPU grows with concurrency
(httpcore pool bookkeeping), about 10x aiohttp's at 16 in flight. Why not the
httpx-aiohttp package: it streams every body through httpx's async iterator
machinery, which costs more than the exchange itself for Batch's empty or
small JSON bodies. This reads each body in one call and hands httpx a
complete Response. Measured in docs/performance.md.
"""

from __future__ import annotations

import ssl

import aiohttp
import httpx
from yarl import URL


class NoCookies(httpx.Cookies):
    """Batch uses no cookies; a jar would only carry state between endpoints
    (and parsing Set-Cookie headers costs CPU on every response)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp ClientSession (one keep-alive pool) per transport."""

    def __init__(self, *, ssl_context: ssl.SSLContext, max_connections: int, keepalive_seconds: float = 60.0):
        self._ssl = ssl_context
        self._limit = max_connections
        self._keepalive = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            ssl=self._ssl, limit=self._limit, keepalive_timeout=self._keepalive, enable_cleanup_closed=True
        )
        # No cookie jar, no proxies or netrc from the environment, no automatic decompression.
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=False
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        try:
            async with session.request(
                request.method,
                URL(str(request.url), encoded=True),  # httpx already encoded it
                headers=request.headers.multi_items(),
                data=request.content or None,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                body = await response.read()  # Batch bodies are empty or one job
                status, raw_headers = response.status, response.raw_headers
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            raise httpx.ReadError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:
            raise httpx.TransportError(str(exc), request=request) from exc
        if 300 <= status < 400:
            # Never followed, but httpx still parses a redirect's Location to offer
            # `next_request`, and a malformed one raised InvalidURL: a final 3xx became an
            # internal error and a redelivery. Without it a 3xx is a plain refusal.
            raw_headers = tuple(item for item in raw_headers if item[0].lower() != b"location")
        return httpx.Response(status, headers=raw_headers, content=body, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
