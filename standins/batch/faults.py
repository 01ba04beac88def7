"""Faults a test can inject into the emulator, to exercise a client's retry paths.

A fault matches requests by method and/or job id and fires for its next `times`
matching requests; the queue is searched in insertion order, so faults queued for
the same requests fire one after another. One fault may combine, in this order:
a delay, a concurrent writer's change to the job, then either an abrupt
connection reset or an error status. A fault with only a delay (or only a
change) lets the request through afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Codes the service (or its front end) uses for these statuses; a fault may override.
DEFAULT_CODES = {
    408: "OperationTimedOut",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServerBusy",
    504: "GatewayTimeout",
}


@dataclass
class Fault:
    """What to do to the next `times` requests that match `method` and `job_id`."""

    status: int | None = None
    code: str | None = None
    retry_after: float | None = None  # seconds; sent as the Retry-After header
    delay_seconds: float = 0.0
    reset: bool = False  # close the connection without any response
    concurrent_change: Mapping[str, Any] | None = None  # applied to the job first (new ETag)
    method: str | None = None  # "GET", "PATCH"; None matches any
    job_id: str | None = None  # case-insensitive; None matches any
    times: int = 1
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("a fault status must be an HTTP error (4xx/5xx)")
        if self.reset and self.status is not None:
            raise ValueError("a fault either resets the connection or answers with a status")
        if self.method is not None:
            self.method = self.method.upper()

    # Readable constructors for the common cases.

    @classmethod
    def throttled(cls, retry_after: float | None = 1, **match: Any) -> Fault:
        """429 TooManyRequests with Retry-After (pass retry_after=None to omit it)."""
        return cls(status=429, retry_after=retry_after, **match)

    @classmethod
    def server_busy(cls, retry_after: float | None = 1, **match: Any) -> Fault:
        """503 ServerBusy with Retry-After."""
        return cls(status=503, retry_after=retry_after, **match)

    @classmethod
    def error(cls, status: int, code: str | None = None, **match: Any) -> Fault:
        """Any error status: 500 InternalError, 408, 502, 504, ..."""
        return cls(status=status, code=code, **match)

    @classmethod
    def delay(cls, seconds: float, **match: Any) -> Fault:
        """Answer normally, but only after `seconds`."""
        return cls(delay_seconds=seconds, **match)

    @classmethod
    def connection_reset(cls, **match: Any) -> Fault:
        """Drop the connection (TCP RST) without sending any response."""
        return cls(reset=True, **match)

    @classmethod
    def concurrent_writer(cls, changes: Mapping[str, Any], **match: Any) -> Fault:
        """Another writer changes the job (new ETag) just before this request is handled."""
        return cls(concurrent_change=dict(changes), **match)

    @property
    def error_code(self) -> str:
        assert self.status is not None
        return self.code or DEFAULT_CODES.get(self.status, "InternalError")

    def matches(self, method: str, job_id: str | None) -> bool:
        if self.method is not None and self.method != method:
            return False
        if self.job_id is None:
            return True
        return job_id is not None and self.job_id.casefold() == job_id.casefold()

    def describe(self) -> str:
        parts = []
        if self.delay_seconds:
            parts.append(f"delay {self.delay_seconds}s")
        if self.concurrent_change is not None:
            parts.append("concurrent-writer")
        if self.reset:
            parts.append("connection-reset")
        if self.status is not None:
            parts.append(f"{self.status} {self.error_code}")
        return ", ".join(parts) or "no-op"


class FaultQueue:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, job_id: str | None) -> Fault | None:
        """The first queued fault that matches, counting this firing against its `times`."""
        with self._lock:
            for index, fault in enumerate(self._faults):
                if fault.matches(method, job_id):
                    fault.fired += 1
                    if fault.fired >= fault.times:
                        del self._faults[index]
                    return fault
        return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
