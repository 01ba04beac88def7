"""An account's request capacity: a token bucket, and the Retry-After it answers with.

Batch publishes no request rate per account; past whatever it is, the service
answers 429 TooManyRequests with Retry-After. The emulator models that with a
token bucket: `rate` tokens per second, at most `burst` banked, one token per
request. A request that finds no token is refused (it takes none: a refused
request costs the service almost nothing) with

    Retry-After = ceil(time until the bucket holds one token), at least 1 s,

in whole seconds, because the header's delay form is an integer (RFC 9110 §10.2.3:
`delay-seconds = 1*DIGIT`) and that is what Azure services send. At any rate of
1 request/s or more a token is back within a second, so the answer is 1 s: the
earliest honest time, never a promise the bucket cannot keep.

Time is injected (`clock`), so tests drive it without sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    def __init__(
        self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate > 0:
            raise ValueError("capacity must be a positive number of requests per second")
        # Default burst: one second's worth, at least one request.
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, self.rate)
        if self.burst < 1:
            raise ValueError("burst must allow at least one request")
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()
        self._lock = threading.Lock()
        self.admitted = 0
        self.refused = 0

    def take(self) -> float | None:
        """None: admitted (one token taken). Else the Retry-After to answer, in seconds."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.admitted += 1
                return None
            self.refused += 1
            return float(max(1, math.ceil((1.0 - self._tokens) / self.rate)))
