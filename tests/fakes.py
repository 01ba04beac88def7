"""The two test doubles the socket-free tests share: a token credential and a
publisher that records. (The real credential and publisher run over real sockets
in tests/integration and tests/e2e.)"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from azure.core.credentials import AccessTokenInfo


class FakeCredential:
    """`get_token_info` only, as azure-core's AsyncSupportsTokenInfo. A call with
    claims skips azure-identity's cache, so it returns a fresh token."""

    def __init__(self, token: str = "tok-for-batch") -> None:  # noqa: S107 - a test token
        self.token = token
        self.scopes: list[str] = []
        self.options: list[Any] = []
        self.failures: list[Exception] = []  # raised by the next calls, in order

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.scopes.extend(scopes)
        self.options.append(options)
        if self.failures:
            raise self.failures.pop(0)
        fresh = options is not None and options.get("claims") is not None
        return AccessTokenInfo(self.token + ("-fresh" if fresh else ""), int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> FakeCredential:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class RecordingPublisher:
    """The publisher interface, recording what the handler publishes."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.fail_with: Exception | None = None
        self.closed = False
        self.attempts = 0

    async def publish(self, events: Sequence[Any]) -> None:
        self.attempts += 1
        if self.fail_with is not None:
            raise self.fail_with
        self.events.extend(events)

    async def aclose(self) -> None:
        self.closed = True
