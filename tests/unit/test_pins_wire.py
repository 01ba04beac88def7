"""Pins for the Batch wire (found by mutation testing: tests/mutation): every status
class by each of its members and its neighbours, every header and query parameter a
request carries, and how replies, errors and Retry-After are read."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from handlers.wire import (
    CONTENT_TYPE,
    MAX_RETRY_AFTER_SECONDS,
    RETRYABLE_STATUS,
    SUPPORTED_API_VERSIONS,
    USER_AGENT,
    BatchError,
    BatchReply,
    BatchRequest,
    StatusClass,
    build_request,
    classify_status,
    client_request_id_for,
    job_url,
    parse_retry_after,
    reply_from,
    timeout_parameter,
)

ENDPOINT = "https://acct.westeurope.batch.azure.com"
WHEN = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_each_retryable_status_is_transient(status: int) -> None:
    assert classify_status(status) is StatusClass.transient
    assert BatchReply(status).status_class is StatusClass.transient


def test_the_retryable_statuses_are_exactly_batchs_guidance() -> None:
    assert frozenset({408, 429, 500, 502, 503, 504}) == RETRYABLE_STATUS


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 501, 505, 599, 300, 199])
def test_other_statuses_are_final_refusals(status: int) -> None:
    assert classify_status(status) is StatusClass.refused


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_ok(status: int) -> None:
    assert classify_status(status) is StatusClass.ok
    assert BatchReply(status).ok
    assert BatchReply(status).error() is None


def test_412_is_its_own_class_and_2xx_edges_are_not_ok() -> None:
    assert classify_status(412) is StatusClass.precondition_failed
    assert not BatchReply(199).ok and not BatchReply(300).ok
    assert classify_status(300) is StatusClass.refused


def test_a_patch_request_carries_every_header_and_parameter() -> None:
    request = build_request(
        "PATCH",
        ENDPOINT,
        "job 1/x",
        api_version="2025-06-01",
        client_request_id="c-1",
        ocp_date=WHEN,
        return_client_request_id=True,
        server_timeout=30,
        condition_headers={"If-Match": '"0x1"'},
        body=b'{"priority":1}',
    )
    assert request.method == "PATCH"
    assert request.url == f"{ENDPOINT}/jobs/job%201%2Fx?api-version=2025-06-01&timeOut=30"
    assert dict(request.headers) == {
        "User-Agent": USER_AGENT,
        "client-request-id": "c-1",
        "return-client-request-id": "true",
        "ocp-date": "Thu, 01 Jan 2026 12:00:00 GMT",
        "If-Match": '"0x1"',
        "Content-Type": CONTENT_TYPE,
    }
    assert request.body == b'{"priority":1}'
    assert request.describe() == {
        "method": "PATCH",
        "url": request.url,
        "headers": dict(request.headers),
        "body": {"priority": 1},
    }


def test_a_get_request_has_no_body_no_content_type_and_no_timeout_unless_asked() -> None:
    request = build_request(
        "GET", ENDPOINT, "j", api_version="2026-10-01", client_request_id="c", ocp_date=WHEN
    )
    assert request.url == f"{ENDPOINT}/jobs/j?api-version=2026-10-01"
    assert request.headers["return-client-request-id"] == "false"
    assert "Content-Type" not in request.headers
    assert request.body is None
    assert request.describe()["body"] is None
    assert BatchRequest("GET", "u", {}, b"").describe()["body"] is None


@pytest.mark.parametrize(
    ("version", "name"),
    [
        ("2025-06-01", "timeOut"),
        ("2026-10-01", "timeOut"),
        ("2025-05-31", "timeout"),
        ("2024-07-01.20.0", "timeout"),
    ],
)
def test_the_timeout_parameter_was_renamed_in_2025_06_01(version: str, name: str) -> None:
    assert timeout_parameter(version) == name
    request = build_request(
        "GET", ENDPOINT, "j", api_version=version, client_request_id="c", ocp_date=WHEN, server_timeout=1
    )
    assert request.url.endswith(f"&{name}=1")


def test_supported_versions() -> None:
    assert SUPPORTED_API_VERSIONS == ("2025-06-01", "2026-10-01")


def test_job_url_escapes_everything() -> None:
    assert job_url(ENDPOINT, "a/b?c") == f"{ENDPOINT}/jobs/a%2Fb%3Fc"


def test_client_request_ids_are_uuid5_in_the_documented_namespace() -> None:
    namespace = uuid.UUID("8f0d7c1e-4b6a-4c8e-9a35-2f1b5d6e7a90")
    assert client_request_id_for("m-1") == str(uuid.uuid5(namespace, "m-1"))
    assert client_request_id_for("m-1") != client_request_id_for("m-2")


# --- replies -------------------------------------------------------------------------


def test_a_batch_error_body_is_read_whole() -> None:
    body = json.dumps(
        {
            "code": "InvalidPropertyValue",
            "message": {"lang": "en-US", "value": "bad value"},
            "values": [{"key": "PropertyName", "value": "priority"}, {"key": "Reason", "value": 5}],
        }
    ).encode()
    assert BatchError.parse(body, 400) == BatchError(
        "InvalidPropertyValue", "bad value", {"PropertyName": "priority", "Reason": "5"}
    )
    assert BatchReply(400, body=body).error() == BatchError.parse(body, 400)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"message": "plain text"}', BatchError("Http409", "plain text", {})),
        (b'{"code": "", "values": null}', BatchError("Http409", "", {})),
        (b'{"code": "X", "message": {}}', BatchError("X", "", {})),
        (b"<html>busy</html>", BatchError("Http409", "<html>busy</html>", {})),
        (b"[1, 2]", BatchError("Http409", "[1, 2]", {})),
        (b"x" * 300, BatchError("Http409", "x" * 200, {})),
        (b"\xff\xfe", BatchError("Http409", "\ufffd\ufffd", {})),
    ],
)
def test_an_odd_error_body_still_reads(body: bytes, expected: BatchError) -> None:
    assert BatchError.parse(body, 409) == expected


def test_reply_json_is_an_object_or_nothing() -> None:
    assert BatchReply(200, body=b'{"id": "j"}').json() == {"id": "j"}
    for body in (b"", b"[1]", b"<html>", b'"s"'):
        assert BatchReply(200, body=body).json() is None


def test_reply_from_reads_headers_in_any_case() -> None:
    reply = reply_from(
        200,
        [
            (b"ETag", b"0x8D1"),
            (b"Last-Modified", b"Thu, 01 Jan 2026 12:00:00 GMT"),
            (b"request-id", b"r-1"),
            (b"Client-Request-Id", b"c-1"),
            (b"Retry-After", b"7"),
        ],
        b"{}",
    )
    assert reply == BatchReply(200, "0x8D1", "Thu, 01 Jan 2026 12:00:00 GMT", "r-1", "c-1", 7.0, b"{}")
    assert reply_from(503, [], b"") == BatchReply(503)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("60", 60.0),
        ("61", MAX_RETRY_AFTER_SECONDS),
        ("nan", None),
        ("soon", None),
        ("Thu, 01 Jan 2026 12:00:10 GMT", 10.0),
        ("Thu, 01 Jan 2026 11:59:00 GMT", 0.0),
        ("Thu, 01 Jan 2026 13:00:00 GMT", MAX_RETRY_AFTER_SECONDS),
    ],
)
def test_retry_after_is_seconds_or_a_date_capped(value: str | None, seconds: float | None) -> None:
    assert MAX_RETRY_AFTER_SECONDS == 60.0
    assert parse_retry_after(value, now=WHEN.timestamp()) == seconds


def test_the_wire_records_are_frozen() -> None:
    import dataclasses

    from handlers.wire import Sent

    for record in (BatchRequest("GET", "u", {}), BatchError("c", "m"), BatchReply(200), Sent(None, 1)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.__setattr__(dataclasses.fields(record)[0].name, None)


@pytest.mark.parametrize("body", [b'{"code": "X", "values": 5}', b"[" * 100_000])
def test_error_bodies_that_break_the_reader_fall_back_to_the_status(body: bytes) -> None:
    error = BatchError.parse(body, 500)
    assert error.code == "Http500" and error.values == {}
    assert BatchReply(200, body=body).json() is None or body.startswith(b"{")


def test_a_deep_reply_body_is_no_job() -> None:
    assert BatchReply(200, body=b"[" * 100_000).json() is None


def test_errors_join_their_problems() -> None:
    from handlers.errors import InvalidMessage, Problem

    invalid = InvalidMessage([Problem("$.a", "c", "one"), Problem("$.b", "d", "two")])
    assert str(invalid) == "$.a: one; $.b: two"
    assert invalid.problems[1].as_dict() == {"path": "$.b", "code": "d", "message": "two"}


def test_the_wire_constants() -> None:
    assert CONTENT_TYPE == "application/json; odata=minimalmetadata"
    assert USER_AGENT.startswith("batch-job-update/")
    assert [c.value for c in StatusClass] == ["ok", "precondition-failed", "transient", "refused"]
