"""What the emulator remembers about each request, for tests to assert on.

Credentials never enter the log: `Authorization` is cut to its scheme.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class RecordedRequest:
    method: str
    path: str  # decoded, e.g. /jobs/my job
    raw_path: str  # as sent, percent-encoded, without the query
    query: dict[str, str]
    headers: dict[str, str]  # Authorization redacted to its scheme
    body: bytes
    received_at: datetime
    request_id: str
    status: int | None = None  # None: the connection was reset, no response
    error_code: str | None = None
    fault: str | None = None  # description of the injected fault, if one fired
    principal: str | None = None  # "Bearer <appid>" / "SharedKey <account> (<variant>)"

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def job_id(self) -> str | None:
        prefix = "/jobs/"
        return self.path[len(prefix) :] if self.path.startswith(prefix) else None


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[RecordedRequest] = []

    def append(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
