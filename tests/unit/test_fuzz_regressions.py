"""Bugs the fuzz suite (tests/fuzz) found in handlers/, each pinned by its smallest case."""

from __future__ import annotations

import json

import pytest

from handlers.events import MAX_EVENT_BYTES, build_event
from handlers.outcomes import Outcome
from handlers.plan import Done, Exchange, Inbound, admit, next_step
from handlers.wire import BatchError, BatchReply, Sent
from tests.fuzz import properties as props
from tests.fuzz.strategies import NOW, Case, Reply

SERVICE_BUS_MAX_BYTES = 256 * 1024


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b'{"code": "E", "message": {"value": null}}', ""),
        (b'{"code": "E", "message": {"value": 5}}', "5"),
        (b'{"code": "E", "message": {"value": ["x"]}}', "['x']"),
        (b'{"code": "E", "message": 7}', "7"),
    ],
)
def test_an_error_body_whose_message_is_not_text_is_a_failed_outcome(body: bytes, text: str) -> None:
    # Found: `"message": {"value": null}` on a 400 made the echo scrub slice None, so the
    # message took the InternalError road (redelivered, then given-up) instead of `failed`.
    assert BatchError.parse(body, 400).message == text
    message = b'{"schemaVersion": "1.0", "jobId": "j", "update": {"priority": 1}}'
    job = admit(Inbound(message, "m-1"), props.FUNCTION_POLICY, NOW)
    assert not isinstance(job, Done)
    patch = next_step(job)
    assert not isinstance(patch, Done)
    done = next_step(job, (Exchange(patch, Sent(BatchReply(400, body=body), 1)),))
    assert isinstance(done, Done)
    assert (done.result.outcome, done.result.error) == (Outcome.failed, BatchError("E", text, {}))


def test_the_same_through_the_handler() -> None:
    case = Case(b'{"schemaVersion": "1.0", "jobId": "j", "update": {"priority": 1}}', "regression")
    case = Case(case.body, "regression", replies=(Reply("error-odd", 5),))  # {"message": {"value": null}}
    assert not props.handler_property(case)
    assert not props.plan_property(case)


@pytest.mark.parametrize(
    ("char", "length", "count"), [("é", 1000, 120), ("\x01", 1000, 40), ("😀", 500, 120)]
)
def test_a_rejection_naming_many_long_fields_still_fits_a_service_bus_message(
    char: str, length: int, count: int
) -> None:
    # Found: 120 unknown names of 1,000 "é" (a 240 KB body, under the 256 KiB limit) came
    # back as 50 problem paths of 6,000 escaped bytes each: a 300 KB event that the topic
    # refuses, so the message would be redelivered until dead-lettered with no outcome.
    names = {char * length + str(n): n for n in range(count)}
    body = json.dumps(
        {"schemaVersion": "1.0", "jobId": "j", "update": {"priority": 1}, **names}, ensure_ascii=False
    )
    raw = body.encode()
    assert len(raw) <= 256 * 1024
    done = admit(Inbound(raw, "m-1"), props.FUNCTION_POLICY, NOW)
    assert isinstance(done, Done) and done.result.outcome is Outcome.rejected
    assert len(done.result.problems) == count
    event = build_event(done.result, "m-1", now=NOW)
    assert len(event.body) <= MAX_EVENT_BYTES < SERVICE_BUS_MAX_BYTES
    data = json.loads(event.body)["data"]
    assert data["truncated"] is True
    assert len(data["problems"]) == min(count, 50)
    assert all(p["path"].startswith("$.") and p["code"] == "extra_forbidden" for p in data["problems"])


def test_repeated_long_astral_names_still_fit() -> None:
    # The worst case per character: a repeated name is in the path and the message,
    # each astral character written as a 12-byte surrogate-pair escape.
    pairs = ",".join(f'"{"😀" * 500}{n % 60}": {n}' for n in range(120))
    raw = ('{"schemaVersion": "1.0", "jobId": "j", "update": {"priority": 1}, ' + pairs + "}").encode()
    assert len(raw) <= 256 * 1024
    done = admit(Inbound(raw, "m-1"), props.FUNCTION_POLICY, NOW)
    assert isinstance(done, Done)
    assert {p.code for p in done.result.problems} == {"duplicate_key", "extra_forbidden"}
    event = build_event(done.result, "m-1", now=NOW)
    assert len(event.body) <= MAX_EVENT_BYTES


def test_short_problems_are_not_cut() -> None:
    done = admit(
        Inbound(b'{"schemaVersion": "1.0", "jobId": "j", "update": {"priorty": 1}}', "m"),
        props.FUNCTION_POLICY,
        NOW,
    )
    assert isinstance(done, Done)
    data = json.loads(build_event(done.result, "m", now=NOW).body)["data"]
    assert data["problems"][0]["path"] == "$.update.priorty"
    assert "truncated" not in data
