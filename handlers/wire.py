"""The Batch Job wire, pure: requests, replies, errors and their classes.

No I/O and nothing that does I/O is imported here (no httpx, aiohttp or azure):
the plan builds `BatchRequest`s with these functions, `batch_client.py` sends them
and hands back `BatchReply`s built by `reply_from`, and `python -m handlers check`
prints the very same requests.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Literal, get_args
from urllib.parse import quote

from pydantic_core import from_json

from handlers.wire_formats import format_http_date

__all__ = [
    "CONTENT_TYPE",
    "MAX_RETRY_AFTER_SECONDS",
    "RETRYABLE_STATUS",
    "SUPPORTED_API_VERSIONS",
    "USER_AGENT",
    "ApiVersion",
    "BatchError",
    "BatchReply",
    "BatchRequest",
    "Sent",
    "StatusClass",
    "build_request",
    "classify_status",
    "client_request_id_for",
    "job_url",
    "parse_retry_after",
    "reply_from",
    "timeout_parameter",
]

CONTENT_TYPE = "application/json; odata=minimalmetadata"
# Names this function in Batch's request logs (support cases, throttling reports).
USER_AGENT = "batch-job-update/1.0 (azure-functions; python)"
# Both carry the same Update Job body (BatchJobUpdateOptions); docs/message-contract.md
# says why 2025-06-01 is the default.
ApiVersion = Literal["2025-06-01", "2026-10-01"]
SUPPORTED_API_VERSIONS: tuple[str, ...] = get_args(ApiVersion)
# 408/429/5xx other than 501/505: Batch's documented retry guidance.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Longest Retry-After honoured; beyond it the client backs off and redelivery takes over.
MAX_RETRY_AFTER_SECONDS = 60.0
# The server-timeout query parameter was renamed in 2025-06-01.
_TIMEOUT_RENAMED_IN = "2025-06-01"
_CLIENT_REQUEST_NAMESPACE = uuid.UUID("8f0d7c1e-4b6a-4c8e-9a35-2f1b5d6e7a90")


class StatusClass(StrEnum):
    """What a reply's status means for the message."""

    ok = "ok"  # 2xx
    precondition_failed = "precondition-failed"  # 412: a condition did not hold, nothing written
    transient = "transient"  # a later try may not see it (RETRYABLE_STATUS)
    refused = "refused"  # any other 4xx/5xx: final


def classify_status(status: int) -> StatusClass:
    if 200 <= status < 300:
        return StatusClass.ok
    if status == 412:
        return StatusClass.precondition_failed
    if status in RETRYABLE_STATUS:
        return StatusClass.transient
    return StatusClass.refused


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One HTTP request to Batch, fully formed except for the credential."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-ready view for `check` output (no credential exists at this point)."""
        return {
            "method": self.method,
            "url": self.url,
            "headers": dict(self.headers),
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
    ocp_date: datetime,
    return_client_request_id: bool = False,
    server_timeout: int | None = None,
    condition_headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> BatchRequest:
    """A GET or PATCH of one job. `body` is the JSON already encoded."""
    query = f"?api-version={api_version}"
    if server_timeout is not None:
        query += f"&{timeout_parameter(api_version)}={server_timeout}"
    headers = {
        "User-Agent": USER_AGENT,
        "client-request-id": client_request_id,
        "return-client-request-id": "true" if return_client_request_id else "false",
        "ocp-date": format_http_date(ocp_date),
    }
    if condition_headers:
        headers.update(condition_headers)
    if body is not None:
        headers["Content-Type"] = CONTENT_TYPE
    return BatchRequest(method, job_url(endpoint, job_id) + query, headers, body)


# --- Replies -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchError:
    """Batch's error body: code, message text and key/value details."""

    code: str
    message: str
    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: bytes, status: int) -> BatchError:
        try:
            data = json.loads(body)
            message = data.get("message", {})
            value = message.get("value", "") if isinstance(message, dict) else message
            # A text, whatever the body holds: `"value": null` or a number must not
            # break the scrubbing that reads it (an error body is not always Batch's).
            text = "" if value is None else str(value)
            values = {str(v.get("key")): str(v.get("value")) for v in data.get("values") or []}
            return cls(str(data.get("code") or f"Http{status}"), text, values)
        except (ValueError, AttributeError, TypeError, RecursionError):
            return cls(f"Http{status}", body[:200].decode("utf-8", "replace"), {})


@dataclass(frozen=True, slots=True)
class BatchReply:
    status: int
    etag: str | None = None
    last_modified: str | None = None
    request_id: str | None = None
    client_request_id: str | None = None
    retry_after: float | None = None
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def status_class(self) -> StatusClass:
        return classify_status(self.status)

    def error(self) -> BatchError | None:
        return None if self.ok else BatchError.parse(self.body, self.status)

    def json(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is not one a job can be: empty,
        HTML, a list, nested past the parser's limit (200 levels, so nothing that walks
        it can overflow the stack), or holding a non-finite number (NaN, or 1e400
        read as infinity), which no JSON request or event could carry on."""
        try:
            data = from_json(self.body.removeprefix(b"\xef\xbb\xbf"), allow_inf_nan=False)
        except ValueError:
            return None
        return data if isinstance(data, dict) and _finite(data) else None


def _finite(value: dict[str, Any]) -> bool:
    """No float in `value` is NaN or infinite (iterative: any depth). Only containers go
    on the stack, and types are compared exactly (from_json makes plain dicts, lists and
    floats): a 256 KiB list of numbers takes about 8 ms here, not 41."""
    stack: list[dict[str, Any] | list[Any]] = [value]
    while stack:
        container = stack.pop()
        items: Iterable[Any] = container.values() if isinstance(container, dict) else container
        for item in items:
            kind = type(item)
            if kind is float:
                if not math.isfinite(item):
                    return False
            elif kind is dict or kind is list:
                stack.append(item)
    return True


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, OverflowError):
            return None
        seconds = when - (now if now is not None else time.time())
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def reply_from(status: int, raw_headers: Iterable[tuple[bytes, bytes]], body: bytes) -> BatchReply:
    # One pass over the raw headers: a mapping lookup per header re-scans them.
    raw = {name.lower(): value for name, value in raw_headers}

    def header(name: bytes) -> str | None:
        value = raw.get(name)
        return None if value is None else value.decode("latin-1")

    return BatchReply(
        status=status,
        etag=header(b"etag"),
        last_modified=header(b"last-modified"),
        request_id=header(b"request-id"),
        client_request_id=header(b"client-request-id"),
        retry_after=parse_retry_after(header(b"retry-after")),
        body=body,
    )


@dataclass(frozen=True, slots=True)
class Sent:
    """How sending one request ended, after the client's retries.

    `reply` is the last reply (None when no attempt got one); `failure` says why the
    client stopped on a transient failure (None when `reply` is final). `flow_wait`:
    seconds spent waiting for the account under flow control (a slot, a pause);
    None when flow control is off.
    """

    reply: BatchReply | None
    attempts: int
    failure: str | None = None
    flow_wait: float | None = None
