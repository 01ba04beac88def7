"""The HTTP face of the emulated Batch account: GET and PATCH /jobs/{jobId}.

Each request goes through: record -> injected fault -> api-version -> auth
(incl. ocp-date skew) -> route -> query parameters -> request headers ->
operation. Every answer carries `request-id` and `DataServiceVersion: 3.0`,
and echoes `client-request-id` when `return-client-request-id: true`, as the
service does. Anything outside the Update Job contract answers 501 with a
BatchError whose code says so, so a gap in the emulator is never mistaken for
a service rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import struct
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from standins.batch.auth import AuthSettings, Principal, authenticate, redact_authorization
from standins.batch.capacity import TokenBucket
from standins.batch.conditions import Outcome, parse_conditions
from standins.batch.errors import BatchServiceError, error_response, invalid_header
from standins.batch.faults import Fault, FaultQueue
from standins.batch.recording import RecordedRequest, RequestLog
from standins.batch.store import JobStore, render_job
from standins.batch.timefmt import format_rfc1123
from standins.batch.validation import parse_json_body, validate_job_update

SUPPORTED_API_VERSIONS = ("2024-07-01.20.0", "2025-06-01", "2026-10-01")
# The server-timeout query parameter was renamed in the spec with 2025-06-01.
# Versions are compared as strings: "YYYY-MM-DD[.suffix]" sorts by date.
TIMEOUT_RENAMED_IN = "2025-06-01"
MAX_SERVER_TIMEOUT_SECONDS = 30
SUCCESS_CONTENT_TYPE = "application/json; odata=minimalmetadata"
JOB_ROUTE = "/jobs/{job_id}"
NOT_IMPLEMENTED = "NotImplementedByEmulator"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NOT_EMULATED_QUERY = ("$select", "$expand", "$filter")


def timeout_parameter(api_version: str) -> str:
    return "timeOut" if api_version >= TIMEOUT_RENAMED_IN else "timeout"


@dataclass(frozen=True)
class ServiceSettings:
    auth: AuthSettings
    supported_api_versions: Collection[str] = SUPPORTED_API_VERSIONS
    max_body_bytes: int = 1024 * 1024
    # Time the service takes over an admitted request (a real Update Job takes tens
    # to hundreds of ms); without it, concurrency would say nothing about rate.
    latency_seconds: float = 0.0


class BatchService:
    """aiohttp handlers over a JobStore; all state lives in the injected objects."""

    def __init__(
        self,
        settings: ServiceSettings,
        store: JobStore,
        faults: FaultQueue,
        log: RequestLog,
        base_url: Callable[[], str],
        capacity: TokenBucket | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.faults = faults
        self.log = log
        self.base_url = base_url
        self.capacity = capacity  # None: no request limit

    def build_app(self) -> web.Application:
        # One byte over the limit so an oversized body is caught here, as a BatchError.
        app = web.Application(client_max_size=self.settings.max_body_bytes + 1)
        app.router.add_route("*", JOB_ROUTE, self.handle)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            raw_path=request.raw_path.split("?", 1)[0],
            query=dict(request.query),
            headers={
                name: (redact_authorization(value) or "") if name.lower() == "authorization" else value
                for name, value in request.headers.items()
            },
            body=b"",
            received_at=datetime.now(UTC),
            request_id=request_id,
        )
        self.log.append(record)
        try:
            response = await self._respond(request, record)
        except BatchServiceError as error:
            record.error_code = error.code
            response = error_response(error, base_url=self.base_url(), request_id=request_id)
        except _ConnectionReset:
            # The transport is gone; aiohttp's attempt to write this fails quietly.
            return web.Response(status=500)
        self._add_common_headers(request, response, request_id)
        record.status = response.status
        return response

    async def _respond(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        record.body = await self._read_body(request)
        job_id = request.match_info.get("job_id")
        fault = self.faults.take(request.method, job_id)
        if fault is not None:
            record.fault = fault.describe()
            await self._apply_fault(fault, request, job_id)
        if self.capacity is not None:
            # The account's request rate, checked first, as a front end would: a
            # refused request is not authenticated, validated or recorded as a write.
            retry_after = self.capacity.take()
            if retry_after is not None:
                raise BatchServiceError(
                    429, "TooManyRequests", headers={"Retry-After": _format_retry_after(retry_after)}
                )
        if self.settings.latency_seconds:
            await asyncio.sleep(self.settings.latency_seconds)

        api_version = self._check_api_version(request)
        principal = authenticate(
            self.settings.auth,
            method=request.method,
            raw_path=record.raw_path,
            raw_query=request.query_string,
            headers=request.headers,
        )
        record.principal = _describe(principal)
        if job_id is None or request.method not in ("GET", "PATCH"):
            raise BatchServiceError(
                501,
                NOT_IMPLEMENTED,
                message=f"The emulator implements only GET and PATCH {JOB_ROUTE}.",
                values=(("Method", request.method), ("Path", request.path)),
            )
        self._check_query(request, api_version)
        self._check_client_request_headers(request)
        conditions = parse_conditions(request.headers)
        if request.method == "GET":
            return self._get_job(job_id, conditions)
        return self._patch_job(request, job_id, conditions, record.body, record.request_id)

    # --- operations --------------------------------------------------------------

    def _get_job(self, job_id: str, conditions: Any) -> web.Response:
        result = self.store.read(job_id, conditions)
        headers = _etag_headers(result.job)
        if result.outcome is Outcome.NOT_MODIFIED:
            return web.Response(status=304, headers=headers)
        if result.outcome is Outcome.PRECONDITION_FAILED:
            raise BatchServiceError(412, "ConditionNotMet", headers=headers)
        base_url = self.base_url()
        body = {"odata.metadata": f"{base_url}/$metadata#jobs/@Element"}
        body.update(render_job(result.job, base_url))
        headers["Content-Type"] = SUCCESS_CONTENT_TYPE
        return web.Response(status=200, body=json.dumps(body).encode(), headers=headers)

    def _patch_job(
        self, request: web.Request, job_id: str, conditions: Any, raw_body: bytes, request_id: str
    ) -> web.Response:
        content_type = request.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise invalid_header("Content-Type", content_type, "expected application/json")
        body = parse_json_body(raw_body)
        update = validate_job_update(body)
        job = self.store.update(job_id, update, body=body, conditions=conditions, request_id=request_id)
        headers = _etag_headers(job)
        headers["DataServiceId"] = f"{self.base_url()}/jobs/{job['id']}"
        return web.Response(status=200, headers=headers)

    # --- request checks ------------------------------------------------------------

    async def _read_body(self, request: web.Request) -> bytes:
        declared = request.content_length
        if declared is not None and declared > self.settings.max_body_bytes:
            raise BatchServiceError(413, "RequestBodyTooLarge")
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BatchServiceError(413, "RequestBodyTooLarge") from None

    def _check_api_version(self, request: web.Request) -> str:
        version = request.query.get("api-version")
        if version is None:
            raise BatchServiceError(
                400,
                "MissingRequiredQueryParameter",
                values=(("QueryParameterName", "api-version"),),
            )
        if version not in self.settings.supported_api_versions:
            raise BatchServiceError(
                400,
                "UnsupportedRequestVersion",
                values=(("QueryParameterName", "api-version"), ("QueryParameterValue", version)),
            )
        return version

    def _check_query(self, request: web.Request, api_version: str) -> None:
        timeout_name = timeout_parameter(api_version)
        for name, value in request.query.items():
            if name == "api-version":
                continue
            if name == timeout_name:
                _server_timeout(name, value)
            elif name in _NOT_EMULATED_QUERY:
                raise BatchServiceError(
                    501,
                    NOT_IMPLEMENTED,
                    message=f"The emulator does not implement the OData option {name}.",
                    values=(("QueryParameterName", name),),
                )
            else:
                reason = (
                    f"this api-version names the server timeout '{timeout_name}'"
                    if name.lower() == "timeout"
                    else "not a parameter of this operation"
                )
                raise BatchServiceError(
                    400,
                    "UnsupportedQueryParameter",
                    values=(("QueryParameterName", name), ("Reason", reason)),
                )

    def _check_client_request_headers(self, request: web.Request) -> None:
        client_request_id = request.headers.get("client-request-id")
        if client_request_id is not None and not _GUID.match(client_request_id):
            raise invalid_header("client-request-id", client_request_id, "expected a GUID without braces")
        echo = request.headers.get("return-client-request-id")
        if echo is not None and echo.lower() not in ("true", "false"):
            raise invalid_header("return-client-request-id", echo, "expected true or false")

    # --- faults ----------------------------------------------------------------------

    async def _apply_fault(self, fault: Fault, request: web.Request, job_id: str | None) -> None:
        if fault.delay_seconds:
            limit = _lenient_server_timeout(request)
            if fault.delay_seconds > limit:
                await asyncio.sleep(limit)
                raise BatchServiceError(500, "OperationTimedOut")
            await asyncio.sleep(fault.delay_seconds)
        if fault.concurrent_change is not None and job_id is not None:
            with contextlib.suppress(BatchServiceError):  # no job: the request will 404 itself
                self.store.change(job_id, fault.concurrent_change)
        if fault.reset:
            _reset_connection(request)
            raise _ConnectionReset
        if fault.status is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = _format_retry_after(fault.retry_after)
            raise BatchServiceError(fault.status, fault.error_code, headers=headers)

    # --- response headers -----------------------------------------------------------

    def _add_common_headers(
        self, request: web.Request, response: web.StreamResponse, request_id: str
    ) -> None:
        response.headers["request-id"] = request_id
        response.headers["DataServiceVersion"] = "3.0"
        client_request_id = request.headers.get("client-request-id")
        if client_request_id and request.headers.get("return-client-request-id", "").lower() == "true":
            response.headers["client-request-id"] = client_request_id


class _ConnectionReset(Exception):
    """Raised after the transport was aborted: there is nobody to answer."""


def _reset_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER with a zero timeout turns close() into a TCP RST.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _server_timeout(name: str, value: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise BatchServiceError(
            400,
            "InvalidQueryParameterValue",
            values=(
                ("QueryParameterName", name),
                ("QueryParameterValue", value),
                ("Reason", "must be an integer number of seconds"),
            ),
        ) from None
    if seconds < 1:
        raise BatchServiceError(
            400,
            "OutOfRangeQueryParameterValue",
            values=(
                ("QueryParameterName", name),
                ("QueryParameterValue", value),
                ("Reason", "must be at least 1 second"),
            ),
        )
    # Above 30 the service silently uses 30.
    return min(seconds, MAX_SERVER_TIMEOUT_SECONDS)


def _lenient_server_timeout(request: web.Request) -> float:
    for name in ("timeOut", "timeout"):
        value = request.query.get(name)
        if value is not None and value.isdigit() and int(value) > 0:
            return min(int(value), MAX_SERVER_TIMEOUT_SECONDS)
    return MAX_SERVER_TIMEOUT_SECONDS


def _format_retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _etag_headers(job: dict[str, Any]) -> dict[str, str]:
    # Bare ETag, as the real service sends it (recorded responses show no quotes).
    return {"ETag": job["eTag"], "Last-Modified": format_rfc1123(job["lastModified"])}


def _describe(principal: Principal) -> str:
    text = f"{principal.scheme} {principal.name}"
    if principal.signing_variant:
        text += f" ({principal.signing_variant})"
    return text
