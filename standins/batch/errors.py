"""Batch's error responses: the `BatchError` JSON body and its headers.

Shape taken from the Batch REST docs ("Batch status and error codes") and from
real responses recorded in azure-sdk-for-python's test recordings:

    {"odata.metadata": "https://{account}.../$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element",
     "code": "...",
     "message": {"lang": "en-US", "value": "<text>\\nRequestId:<guid>\\nTime:<ISO 8601>"},
     "values": [{"key": "...", "value": "..."}]}

`values` is left out when there are none, as the service does. The SDK maps
`message.value` and each `values` entry into `HttpResponseError.error`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from standins.batch.timefmt import format_odata_time

ERROR_CONTENT_TYPE = "application/json;odata=minimalmetadata"
ERROR_METADATA_SUFFIX = "/$metadata#Microsoft.Azure.Batch.Protocol.Entities.Container.errors/@Element"

# The service's own wording for the codes this emulator raises (Batch REST docs).
STANDARD_MESSAGES: Mapping[str, str] = {
    "AuthenticationFailed": (
        "Server failed to authenticate the request. Make sure the value of Authorization "
        "header is formed correctly including the signature."
    ),
    "ConditionNotMet": "The condition specified using HTTP conditional header(s) is not met.",
    "EmptyMetadataKey": "The key for one of the metadata key-value pairs is empty.",
    "InternalError": "Server encountered an internal error. Please try again after some time.",
    "InvalidAuthenticationInfo": (
        "Authentication information is not given in the correct format. Check the value of "
        "Authorization header."
    ),
    "InvalidHeaderValue": "The value for one of the HTTP headers is not in the correct format.",
    "InvalidPropertyValue": "The value provided for one of the properties in the request body is invalid.",
    "InvalidQueryParameterValue": (
        "Value for one of the query parameters specified in the request URI is invalid."
    ),
    "InvalidRequestBody": "The specified Request Body is not syntactically valid.",
    "JobBeingDeleted": "The specified job has been marked for deletion and is being garbage collected.",
    "JobBeingTerminated": "The specified job is being terminated.",
    "JobCompleted": "The specified job is already in a completed state.",
    "JobNotFound": "The specified job does not exist.",
    "MissingRequiredProperty": "A required property was not specified in the request body.",
    "MissingRequiredQueryParameter": "A query parameter that's mandatory for this request is not specified.",
    "MultipleConditionHeadersNotSupported": "Multiple condition headers are not supported.",
    "OperationInvalidForCurrentState": (
        "The specified operation is not valid for the current state of the resource."
    ),
    "OperationTimedOut": "The operation could not be completed within the permitted time.",
    "OutOfRangeQueryParameterValue": (
        "One of the query parameters specified in the request URI is outside the permissible range."
    ),
    "RequestBodyTooLarge": "The request body is too large and exceeds the maximum permissible limit.",
    "ServerBusy": "The server is currently unable to receive requests. Please retry your request.",
    "TooManyRequests": "The server is busy. Too many requests; please retry after some time.",
    "UnsupportedProperty": "One of the properties specified in the request body is not supported.",
    "UnsupportedQueryParameter": (
        "One of the query parameters specified in the request URI is not supported."
    ),
    "UnsupportedRequestVersion": "The specified request version is not supported.",
}


@dataclass
class BatchServiceError(Exception):
    """An error the emulated service answers with; raised anywhere in a handler."""

    status: int
    code: str
    message: str | None = None
    values: Sequence[tuple[str, str]] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.status} {self.code}")

    @property
    def text(self) -> str:
        return self.message or STANDARD_MESSAGES.get(self.code, self.code)


def invalid_property(name: str, value: object, reason: str) -> BatchServiceError:
    return BatchServiceError(
        400,
        "InvalidPropertyValue",
        values=(("PropertyName", name), ("PropertyValue", _as_text(value)), ("Reason", reason)),
    )


def invalid_header(name: str, value: str, reason: str | None = None) -> BatchServiceError:
    values = [("HeaderName", name), ("HeaderValue", value)]
    if reason:
        values.append(("Reason", reason))
    return BatchServiceError(400, "InvalidHeaderValue", values=tuple(values))


def authentication_failed(detail: str) -> BatchServiceError:
    # Batch documents AuthenticationFailed as 403 Forbidden (not 401), with the
    # reason in an `AuthenticationErrorDetail` value.
    return BatchServiceError(403, "AuthenticationFailed", values=(("AuthenticationErrorDetail", detail),))


def error_body(error: BatchServiceError, *, base_url: str, request_id: str) -> dict[str, object]:
    now = format_odata_time(datetime.now(UTC), digits=7)
    body: dict[str, object] = {
        "odata.metadata": base_url + ERROR_METADATA_SUFFIX,
        "code": error.code,
        "message": {
            "lang": "en-US",
            "value": f"{error.text}\nRequestId:{request_id}\nTime:{now}",
        },
    }
    if error.values:
        body["values"] = [{"key": key, "value": value} for key, value in error.values]
    return body


def error_response(error: BatchServiceError, *, base_url: str, request_id: str) -> web.Response:
    payload = json.dumps(error_body(error, base_url=base_url, request_id=request_id))
    response = web.Response(
        status=error.status,
        body=payload.encode(),
        headers={"Content-Type": ERROR_CONTENT_TYPE},
    )
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)
