"""The Batch client: send a `BatchRequest` (httpx), retrying transient failures.

Only I/O lives here: the HTTP client factory, one send, and the retry loop. What
to send and what a reply means are decided in `plan.py` over `wire.py` records.
Sending goes through one process-wide httpx client over aiohttp's transport
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Awaitable
from dataclasses import dataclass

import httpx
from azure.core.exceptions import ClientAuthenticationError

from handlers import telemetry
from handlers.auth import BatchAuth
from handlers.flow import Signal, signal_of
from handlers.flow_control import AccountGate, FlowControl
from handlers.transport import AiohttpTransport, NoCookies
from handlers.wire import RETRYABLE_STATUS, BatchReply, BatchRequest, Sent, reply_from

__all__ = ["BatchClient", "RetryPolicy", "make_http_client"]

CONNECT_TIMEOUT_SECONDS = 10.0
# Not worth starting an attempt with less time than this left in the budget.
MIN_ATTEMPT_SECONDS = 0.2


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

    def __init__(
        self, http: httpx.AsyncClient, policy: RetryPolicy, *, flow: FlowControl | None = None
    ) -> None:
        self._http = http
        self.policy = policy
        self.flow = flow  # None: flow control off (BATCH_FLOW_CONTROL=false)

    async def warm(self, origin: str | None) -> None:
        """Fetch the token and open a pooled connection to `origin`, at once.

        The connection is opened by a HEAD with no credential at all (a bare `httpx.Auth()`
        bypasses BatchAuth), and only to an allow-listed HTTPS origin; Batch answers
        it without a token and the connection stays in the pool for the first PATCH.
        Raises whatever failed; the caller ignores it (the first message does it lazily).
        """
        auth = self._http.auth
        jobs: list[Awaitable[object]] = []
        if isinstance(auth, BatchAuth):
            jobs.append(auth.warm())
            if origin is not None and auth.allows(httpx.URL(origin)):
                jobs.append(self._http.head(origin + "/", auth=httpx.Auth(), timeout=CONNECT_TIMEOUT_SECONDS))
        for outcome in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    async def send_once(self, request: BatchRequest, *, attempt_timeout: float) -> BatchReply | str:
        """One attempt: the reply, or the text of a transport failure."""
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
            # The token fetch runs inside send (BatchAuth): the same deadline holds
            # for a slow identity endpoint as for a slow Batch.
            async with asyncio.timeout(attempt_timeout):
                response = await self._http.send(http_request)
        except httpx.TransportError as exc:  # connect, read, reset, timeout
            return f"{type(exc).__name__}: {exc}"
        except TimeoutError:
            return f"TimeoutError: no reply or token within {attempt_timeout:.1f} s"
        except ClientAuthenticationError as exc:
            # The identity endpoint is down or refused: no request went out. Worth
            # retrying like a transport failure; its text may name the endpoint, not a secret.
            return f"TokenUnavailable: {type(exc).__name__}"
        return reply_from(response.status_code, response.headers.raw, response.content)

    async def _traced_once(
        self, request: BatchRequest, attempt: int, attempt_timeout: float
    ) -> BatchReply | str:
        """`send_once` inside its HTTP client span (telemetry on)."""
        with telemetry.attempt_span(request.method, request.url, request.headers, attempt) as span:
            got = await self.send_once(request, attempt_timeout=attempt_timeout)
            if isinstance(got, BatchReply):
                telemetry.attempt_reply(span, got.status, got.request_id, got.retry_after)
            else:
                telemetry.attempt_failed(span, got)
            return got

    async def send(self, request: BatchRequest, *, deadline: float, max_wait: float | None = None) -> Sent:
        """Send, retrying transient failures until `deadline` (time.monotonic()).

        Every attempt and every wait fits inside the deadline: an attempt gets
        min(attempt timeout, time left), and a wait that would end past the
        deadline is not started. A transient failure that outlasts the retries
        comes back as `Sent(failure=...)`, with the last reply if there was one.
        With flow control, each attempt first takes a slot from its account's
        gate; the time spent waiting for one comes back as `Sent.flow_wait`.
        A wait longer than `max_wait` (a backoff, a Retry-After, a paused account)
        is not waited here: the caller retries off the lock (a scheduled copy).
        """
        if self.flow is not None:
            return await self._send_gated(request, deadline, self.flow.gate(request.url), max_wait)
        policy = self.policy
        traced = telemetry.ENABLED  # checked once per send: off, no span is made
        attempts = 0
        last: BatchReply | None = None
        failure = "no time left in the budget"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= MIN_ATTEMPT_SECONDS:
                return Sent(last, attempts, failure)
            attempts += 1
            timeout = min(policy.attempt_timeout, remaining)
            got = await (
                self._traced_once(request, attempts, timeout)
                if traced
                else self.send_once(request, attempt_timeout=timeout)
            )
            if isinstance(got, BatchReply):
                if got.status not in RETRYABLE_STATUS:
                    return Sent(got, attempts)
                last, failure = got, f"HTTP {got.status}"
            else:
                failure = got
            if attempts >= policy.max_attempts:
                return Sent(last, attempts, failure)
            wait = policy.delay(attempts, got.retry_after if isinstance(got, BatchReply) else None)
            if max_wait is not None and wait > max_wait:
                return Sent(last, attempts, failure)
            if time.monotonic() + wait + MIN_ATTEMPT_SECONDS >= deadline:
                return Sent(last, attempts, failure)
            if traced and isinstance(got, BatchReply) and got.retry_after is not None:
                telemetry.record_wait(wait, telemetry.WAIT_RETRY_AFTER)
            await asyncio.sleep(wait)

    async def _send_gated(
        self, request: BatchRequest, deadline: float, gate: AccountGate, max_wait: float | None
    ) -> Sent:
        """The same loop, each attempt inside a slot of the account's gate.

        A 429/503 with Retry-After pauses the whole account (the gate), so the
        message waits for it there, like every other message to that account,
        instead of sleeping on its own; other retries back off as before.
        """
        policy = self.policy
        traced = telemetry.ENABLED
        attempts = 0
        last: BatchReply | None = None
        failure = "no time left in the budget"
        waited = 0.0
        while True:
            now = time.monotonic()
            ticket = gate.try_acquire(now)
            if ticket is None:
                before = now
                until = deadline - MIN_ATTEMPT_SECONDS
                if max_wait is not None:  # a long pause is waited off the lock instead
                    until = min(until, now + max_wait)
                if traced:
                    with telemetry.flow_wait_span():
                        ticket = await gate.acquire(until)
                else:
                    ticket = await gate.acquire(until)
                now = time.monotonic()
                waited += now - before
            if ticket is None:
                if attempts == 0:
                    failure = "no slot for the account in time (flow control)"
                return Sent(last, attempts, failure, waited)
            remaining = deadline - now
            if remaining <= MIN_ATTEMPT_SECONDS:  # as the ungated loop: no attempt without time
                gate.release(ticket, Signal.neutral, None)
                return Sent(last, attempts, failure, waited)
            attempts += 1
            signal, retry_after = Signal.neutral, None
            try:
                timeout = min(policy.attempt_timeout, remaining)
                got = await (
                    self._traced_once(request, attempts, timeout)
                    if traced
                    else self.send_once(request, attempt_timeout=timeout)
                )
                if isinstance(got, BatchReply):
                    signal, retry_after = signal_of(got.status), got.retry_after
            finally:  # also on cancellation: a slot must never leak
                gate.release(ticket, signal, retry_after if signal is Signal.throttled else None)
            if isinstance(got, BatchReply):
                if got.status not in RETRYABLE_STATUS:
                    return Sent(got, attempts, None, waited)
                last, failure = got, f"HTTP {got.status}"
            else:
                failure = got
            if attempts >= policy.max_attempts:
                return Sent(last, attempts, failure, waited)
            if max_wait is not None and retry_after is not None and retry_after > max_wait:
                return Sent(last, attempts, failure, waited)  # Batch asked for longer: off the lock
            if signal is Signal.throttled and retry_after is not None:
                continue  # the gate holds every request to this account until then
            wait = policy.delay(attempts, retry_after)
            if max_wait is not None and wait > max_wait:
                return Sent(last, attempts, failure, waited)
            if time.monotonic() + wait + MIN_ATTEMPT_SECONDS >= deadline:
                return Sent(last, attempts, failure, waited)
            if traced and retry_after is not None:
                telemetry.record_wait(wait, telemetry.WAIT_RETRY_AFTER)
            await asyncio.sleep(wait)

    async def aclose(self) -> None:
        await self._http.aclose()
