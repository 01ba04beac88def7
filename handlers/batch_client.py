"""The Batch client: build a Job request (pure), send it (httpx), retry transients.

`build_request` is what `python -m handlers check` prints and what `BatchClient.send`
sends, so a producer sees the exact request. Sending goes through one
process-wide httpx client over aiohttp's transport (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from handlers.auth import BatchAuth
from handlers.contract import Conditions, RequestOptions
from handlers.transport import AiohttpTransport, NoCookies
from handlers.wire_formats import format_http_date

CONTENT_TYPE = "application/json; odata=minimalmetadata"
# 408/429/5xx other than 501/505: Batch's documented retry guidance.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Longest Retry-After we honour; beyond it we back off and let redelivery take over.
MAX_RETRY_AFTER_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 10.0
# Not worth starting an attempt with less time than this left in the budget.
MIN_ATTEMPT_SECONDS = 0.2
# The server-timeout query parameter was renamed in 2025-06-01.
_TIMEOUT_RENAMED_IN = "2025-06-01"
_CLIENT_REQUEST_NAMESPACE = uuid.UUID("8f0d7c1e-4b6a-4c8e-9a35-2f1b5d6e7a90")


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One HTTP request to Batch, fully formed except for the credential."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-ready view for `check` output and logs (no credentials exist here)."""
        return {
            "method": self.method,
            "url": self.url,
            "headers": self.headers,
            "body": json.loads(self.body) if self.body else None,
        }


def client_request_id_for(message_id: str) -> str:
    """Stable per Service Bus message, so every redelivery is traceable as one request."""
    return str(uuid.uuid5(_CLIENT_REQUEST_NAMESPACE, message_id))


def timeout_parameter(api_version: str) -> str:
    return "timeOut" if api_version[:10] >= _TIMEOUT_RENAMED_IN else "timeout"


def job_url(endpoint: str, job_id: str) -> str:
    return f"{endpoint}/jobs/{quote(job_id, safe='')}"


def build_request(
    method: str,
    endpoint: str,
    job_id: str,
    *,
    api_version: str,
    client_request_id: str,
    options: RequestOptions,
    conditions: Conditions | None = None,
    body: Mapping[str, Any] | None = None,
    if_match: str | None = None,
    now: datetime | None = None,
) -> BatchRequest:
    """Build a GET or PATCH for one job. `if_match` overrides the message's
    conditions (merge mode guards its write with the ETag it read)."""
    query = f"?api-version={api_version}"
    if options.timeout is not None:
        query += f"&{timeout_parameter(api_version)}={options.timeout}"
    ocp_date = options.ocp_date or now or datetime.now(UTC)
    headers = {
        "client-request-id": client_request_id,
        "return-client-request-id": "true" if options.return_client_request_id else "false",
        "ocp-date": format_http_date(ocp_date),
    }
    if if_match is not None:
        headers["If-Match"] = if_match
    elif conditions is not None:
        headers.update(conditions.headers())
    payload = None
    if body is not None:
        headers["Content-Type"] = CONTENT_TYPE
        payload = json.dumps(body, separators=(",", ":")).encode()
    return BatchRequest(method, job_url(endpoint, job_id) + query, headers, payload)


# --- Replies ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchError:
    """Batch's error body: code, message text and key/value details."""

    code: str
    message: str
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: bytes, status: int) -> BatchError:
        try:
            data = json.loads(body)
            message = data.get("message", {})
            text = message.get("value", "") if isinstance(message, dict) else str(message)
            values = {str(v.get("key")): str(v.get("value")) for v in data.get("values") or []}
            return cls(str(data.get("code") or f"Http{status}"), text, values)
        except (ValueError, AttributeError, TypeError):
            return cls(f"Http{status}", body[:200].decode("utf-8", "replace"), {})


@dataclass(frozen=True, slots=True)
class BatchReply:
    status: int
    etag: str | None
    last_modified: str | None
    request_id: str | None
    client_request_id: str | None
    retry_after: float | None
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error(self) -> BatchError | None:
        return None if self.ok else BatchError.parse(self.body, self.status)

    def json(self) -> dict[str, Any]:
        data = json.loads(self.body) if self.body else {}
        return data if isinstance(data, dict) else {}


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
        seconds = when - (now if now is not None else time.time())
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _reply(response: httpx.Response) -> BatchReply:
    # One pass over the raw headers: httpx's Headers.get re-scans and re-decodes per lookup.
    raw = {name.lower(): value for name, value in response.headers.raw}

    def header(name: bytes) -> str | None:
        value = raw.get(name)
        return None if value is None else value.decode("latin-1")

    return BatchReply(
        status=response.status_code,
        etag=header(b"etag"),
        last_modified=header(b"last-modified"),
        request_id=header(b"request-id"),
        client_request_id=header(b"client-request-id"),
        retry_after=parse_retry_after(header(b"retry-after")),
        body=response.content,
    )


# --- Transport and retries ---------------------------------------------------------


class TransientFailure(Exception):
    """A failure that a later try may not see (throttling, 5xx, network)."""

    def __init__(self, detail: str, reply: BatchReply | None = None) -> None:
        super().__init__(detail)
        self.reply = reply
        self.retry_after = reply.retry_after if reply else None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    attempt_timeout: float = 40.0  # one request, connect to last byte
    initial_backoff: float = 0.5
    max_backoff: float = 20.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Wait before attempt `attempt + 1`: Retry-After when Batch sent one,
        else exponential backoff with full jitter (spreads a throttled fleet)."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not cryptography


@dataclass(slots=True)
class Sent:
    """The final reply and how many attempts it took."""

    reply: BatchReply
    attempts: int


class AttemptsExhausted(Exception):
    def __init__(self, last: TransientFailure, attempts: int) -> None:
        super().__init__(str(last))
        self.last = last
        self.attempts = attempts


def make_http_client(
    *, ca_bundle: str | None, timeout: float, max_connections: int, auth: BatchAuth
) -> httpx.AsyncClient:
    """One client per process: pooled keep-alive connections, no redirects
    (a credential must not follow one), no environment proxies or CA overrides."""
    context = ssl.create_default_context(cafile=ca_bundle)  # system trust store when None
    client = httpx.AsyncClient(
        transport=AiohttpTransport(ssl_context=context, max_connections=max_connections),
        auth=auth,
        timeout=httpx.Timeout(timeout, connect=10.0),
        follow_redirects=False,
        trust_env=False,
    )
    # httpx has no public switch for its cookie jar; Batch sets no cookies, and
    # parsing for them on every response costs ~10 % of the per-message CPU.
    client._cookies = NoCookies()
    return client


class BatchClient:
    """Sends BatchRequests; retries transient failures within a time budget."""

    def __init__(self, http: httpx.AsyncClient, policy: RetryPolicy) -> None:
        self._http = http
        self.policy = policy

    async def send_once(self, request: BatchRequest, *, attempt_timeout: float) -> BatchReply:
        # Build the httpx.Request directly: the client's build_request merges
        # base URL, params and cookies we never use, at a third of our CPU budget.
        timeout = httpx.Timeout(attempt_timeout, connect=min(attempt_timeout, CONNECT_TIMEOUT_SECONDS))
        http_request = httpx.Request(
            request.method,
            httpx.URL(request.url),
            headers=request.headers,
            content=request.body,
            extensions={"timeout": timeout.as_dict()},
        )
        try:
            response = await self._http.send(http_request)
        except httpx.TransportError as exc:  # connect, read, reset, timeout
            raise TransientFailure(f"{type(exc).__name__}: {exc}") from exc
        reply = _reply(response)
        if reply.status in RETRYABLE_STATUS:
            raise TransientFailure(f"HTTP {reply.status}", reply)
        return reply

    async def send(self, request: BatchRequest, *, deadline: float) -> Sent:
        """Send, retrying transient failures until `deadline` (time.monotonic()).

        Every attempt and every wait fits inside the deadline: an attempt gets
        min(attempt timeout, time left), and a wait that would end past the
        deadline is not started. Raises AttemptsExhausted with the last failure.
        """
        policy = self.policy
        attempts = 0
        last: TransientFailure | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= MIN_ATTEMPT_SECONDS:
                raise AttemptsExhausted(last or TransientFailure("no time left in the budget"), attempts)
            attempts += 1
            try:
                reply = await self.send_once(request, attempt_timeout=min(policy.attempt_timeout, remaining))
                return Sent(reply, attempts)
            except TransientFailure as failure:
                last = failure
            if attempts >= policy.max_attempts:
                raise AttemptsExhausted(last, attempts)
            wait = policy.delay(attempts, last.retry_after)
            if time.monotonic() + wait + MIN_ATTEMPT_SECONDS >= deadline:
                raise AttemptsExhausted(last, attempts)
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        await self._http.aclose()
